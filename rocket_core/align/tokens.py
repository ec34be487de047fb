"""Where the vision tokens sit in a VLA's sequence, and which of them count.

Kept in the core because both the adapters and the parity tests need the same answer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def openvla_vision_slice(num_vision_tokens: int, shift: bool = True) -> slice:
    """OpenVLA layout `[BOS, vision..., proprio?, text...]`.

    `shift=True` reproduces the reference (`gain_feat_1move`): each patch's *next* position, so the
    last one lands on the proprio token.
    """
    start = 1 + int(shift)
    return slice(start, start + num_vision_tokens)


def pi0_vision_slice(num_images: int, tokens_per_image: int) -> slice:
    """pi0 / pi0.5 prefix: images first, contiguous per camera, no shift."""
    return slice(0, num_images * tokens_per_image)


def downsample_padding_mask(pixel_mask: torch.Tensor, token_grid: tuple[int, int]) -> torch.Tensor:
    """(B, n_img, H, W) pixel validity -> (B, n_img*gh*gw) token validity, nearest neighbour."""
    b, n, h, w = pixel_mask.shape
    small = F.interpolate(pixel_mask.reshape(b * n, 1, h, w).float(), size=token_grid, mode="nearest")
    return small.reshape(b, n * token_grid[0] * token_grid[1]) > 0.5


def pi0_align_mask(image_masks: torch.Tensor, token_padding_mask: torch.Tensor) -> torch.Tensor:
    """Each image's validity (B, n_img) repeated per token, AND the (B, n_img*tokens) padding mask."""
    n_img = image_masks.shape[1]
    per_image = token_padding_mask.shape[1] // n_img
    return image_masks.bool().repeat_interleave(per_image, dim=1) & token_padding_mask.bool()
