"""Image preprocessing shared by teachers (and by VLA adapters that hand their pixels to a teacher).

Teachers receive (B, S, 3, H, W) RGB in [0, 1] at any size and bring it to their own input size here.
The geometry follows the VGGT reference preprocessing: resize with `F.interpolate(mode="bicubic",
align_corners=False)` (no antialias, no clamp, so values may overshoot [0, 1] slightly as in the
reference), sides rounded to a multiple of the patch size, then a centre crop or a white pad.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from rocket_core.errors import RocketError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

ResizeMode = Literal["crop", "pad"]
RESIZE_MODES: tuple[str, ...] = ("crop", "pad")


def _channel_view(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-channel constants shaped to broadcast over (..., C, H, W)."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def normalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """(x - mean) / std over the channel axis (-3)."""
    return (images - _channel_view(mean, images)) / _channel_view(std, images)


def unnormalize(pixels: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Back to [0, 1] RGB from a VLA's normalised pixels.

    A VLA that stacks several normalised copies along the channel axis (OpenVLA: DINOv2 + SigLIP, 6
    channels) keeps the ImageNet-normalised copy first; only those first `len(mean)` channels are used.
    """
    c = len(mean)
    if pixels.shape[-3] < c:
        raise RocketError(f"expected at least {c} image channels, got shape {tuple(pixels.shape)}")
    return pixels[..., :c, :, :] * _channel_view(std, pixels) + _channel_view(mean, pixels)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def resize_for_teacher(images: torch.Tensor, size: int, patch_size: int, mode: ResizeMode = "crop") -> torch.Tensor:
    """Bring (..., 3, H, W) images to a teacher's input, as the VGGT reference does.

    crop: width -> `size`, height -> round(H*size/W / patch)*patch; if taller than `size`, keep the centre
    `size` rows (rows (new_h - size)//2 onward). A wide image stays wide (fewer rows), as in the reference.
    pad: the longer side -> `size`, the other rounded to the patch; pad with white (1.0) to size x size,
    the extra split as evenly as possible (top/left get the smaller half).
    """
    if mode not in RESIZE_MODES:
        raise RocketError(f"unknown resize mode '{mode}'; use one of: {', '.join(RESIZE_MODES)}")
    if images.ndim < 4 or images.shape[-3] != 3:
        raise RocketError(f"expected images shaped (..., 3, H, W), got {tuple(images.shape)}")
    lead, (h, w) = images.shape[:-3], images.shape[-2:]
    flat = images.reshape(-1, 3, h, w)
    if mode == "crop" or w >= h:
        new_w, new_h = size, _round_to(h * size / w, patch_size)
    else:
        new_w, new_h = _round_to(w * size / h, patch_size), size
    if (new_h, new_w) != (h, w):
        flat = F.interpolate(flat, size=(new_h, new_w), mode="bicubic", align_corners=False)
    if mode == "crop" and new_h > size:
        top = (new_h - size) // 2
        flat = flat[:, :, top : top + size, :]
    elif mode == "pad":
        dh, dw = size - new_h, size - new_w
        flat = F.pad(flat, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), value=1.0)
    return flat.reshape(*lead, 3, *flat.shape[-2:])
