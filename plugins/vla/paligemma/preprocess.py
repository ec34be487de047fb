"""pi0 / pi0.5 image preprocessing and the token layout: where the vision tokens sit and which count.

Images come first in the prefix, contiguous per camera (frame-major), without a shift.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rocket_core.errors import RocketError


def resize_with_pad(images: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, h, w) in [0, 1] -> (N, 3, size, size): aspect kept, bilinear, clamped to [0, 1], centred 0 padding.

    LeRobot's (openpi's) `resize_with_pad_torch` on float input, applied before the `*2-1` scaling, so the
    padding ends up at -1. Also returns the (N, size, size) bool mask of real pixels for the alignment mask.
    """
    n, _, h, w = images.shape
    valid = torch.ones(n, size, size, dtype=torch.bool, device=images.device)
    if (h, w) == (size, size):
        return images, valid
    ratio = max(w / size, h / size)
    rh, rw = max(1, int(h / ratio)), max(1, int(w / ratio))
    resized = F.interpolate(images, size=(rh, rw), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    top, left = (size - rh) // 2, (size - rw) // 2
    out = images.new_zeros(n, 3, size, size)
    out[:, :, top : top + rh, left : left + rw] = resized
    valid.zero_()
    valid[:, top : top + rh, left : left + rw] = True
    return out, valid


def preprocess_images(
    images: torch.Tensor, image_masks: torch.Tensor, num_slots: int, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch images (B, n, 3, H, W) in [0, 1] -> pixel values (B, slots, 3, S, S) in [-1, 1], slot masks, pixel masks.

    Slots beyond the batch's cameras are absent (all -1, mask False), as LeRobot feeds missing cameras.
    """
    b, n = images.shape[:2]
    if n > num_slots:
        raise RocketError(f"the batch has {n} cameras but the VLA has {num_slots} image slots; set option num_cameras")
    if images.ndim != 5 or images.shape[2] != 3:
        raise RocketError(f"images must be (B, n_cam, 3, H, W) in [0, 1], got {tuple(images.shape)}")
    pixels, valid = resize_with_pad(images.flatten(0, 1), size)
    pixels = pixels.view(b, n, 3, size, size) * 2.0 - 1.0
    valid = valid.view(b, n, size, size)
    masks = image_masks.bool()
    if n < num_slots:
        pad = num_slots - n
        pixels = torch.cat([pixels, pixels.new_full((b, pad, 3, size, size), -1.0)], 1)
        valid = torch.cat([valid, valid.new_zeros(b, pad, size, size)], 1)
        masks = torch.cat([masks, masks.new_zeros(b, pad)], 1)
    pixels = torch.where(masks[:, :, None, None, None], pixels, torch.full_like(pixels, -1.0))
    return pixels, masks, valid


def pad_last(x: torch.Tensor, dim: int, what: str) -> torch.Tensor:
    """Zero-pad the last dimension to the model's max dim (state / action)."""
    if x.shape[-1] > dim:
        raise RocketError(f"{what} has {x.shape[-1]} dims but the model takes at most {dim}; check the dataset")
    return F.pad(x, (0, dim - x.shape[-1]))


def vision_slice(num_images: int, tokens_per_image: int) -> slice:
    """The prefix positions of the vision tokens: every camera's image tokens, first."""
    return slice(0, num_images * tokens_per_image)


def downsample_padding_mask(pixel_mask: torch.Tensor, token_grid: tuple[int, int]) -> torch.Tensor:
    """(B, n_img, H, W) pixel validity -> (B, n_img*gh*gw) token validity, nearest neighbour."""
    b, n, h, w = pixel_mask.shape
    small = F.interpolate(pixel_mask.reshape(b * n, 1, h, w).float(), size=token_grid, mode="nearest")
    return small.reshape(b, n * token_grid[0] * token_grid[1]) > 0.5


def align_mask(image_masks: torch.Tensor, token_padding_mask: torch.Tensor) -> torch.Tensor:
    """Each image's validity (B, n_img) repeated per token, AND the (B, n_img*tokens) padding mask."""
    n_img = image_masks.shape[1]
    per_image = token_padding_mask.shape[1] // n_img
    return image_masks.bool().repeat_interleave(per_image, dim=1) & token_padding_mask.bool()
