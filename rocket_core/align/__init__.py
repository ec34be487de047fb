"""The ROCKET alignment math: projector, pooling, loss, token layouts and the alignment head."""
