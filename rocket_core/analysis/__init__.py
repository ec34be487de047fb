"""Analyses behind the paper's claims: gradient conflict between pairs and projector similarity."""
