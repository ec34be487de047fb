"""Built-in projector strategies."""
