"""The reference teacher-cache key, kept for compatibility with caches it wrote.

It hashes augmented pixels, so it almost never hits during training; our own cache keys on content
(dataset, episode, frame, camera, teacher config) instead.
"""
from __future__ import annotations

import hashlib

import torch


def reference_cache_keys(pixel_values: torch.Tensor) -> list[str]:
    """md5 of each sample's float32 bytes (C order), as `<key>.pt` file stems."""
    return [
        hashlib.md5(sample.detach().cpu().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()
        for sample in pixel_values
    ]
