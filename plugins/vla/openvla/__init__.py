"""OpenVLA-7B, native: our Prismatic code on stock transformers (no remote code, no fork)."""
