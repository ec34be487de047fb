"""Training augmentation in plain torch (no torchvision): random resized crop, then colour jitter.

All randomness comes from the `torch.Generator` passed in, which the dataset seeds per (seed, epoch,
sample index), so an augmented sample can be reproduced exactly after a resume. The crop is kept apart
from the colour jitter so the teacher can see the same geometry without the jitter.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rocket_core.data.spec import AugmentSpec


def _uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    return lo + (hi - lo) * torch.rand((), generator=generator).item()


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 3, *size), bilinear with antialiasing (as torchvision resizes tensors)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp(0, 1).reshape(*lead, 3, *size)


def crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator
) -> tuple[int, int, int, int]:
    """`(top, left, crop_h, crop_w)` in pixels of a random box of `scale` x area and aspect `ratio` (w/h)."""
    area = height * width * _uniform(*scale, generator)
    aspect = math.exp(_uniform(math.log(ratio[0]), math.log(ratio[1]), generator))
    crop_w = min(width, max(1, round(math.sqrt(area * aspect))))
    crop_h = min(height, max(1, round(math.sqrt(area / aspect))))
    top = int(torch.randint(0, height - crop_h + 1, (), generator=generator))
    left = int(torch.randint(0, width - crop_w + 1, (), generator=generator))
    return top, left, crop_h, crop_w


def random_resized_crop(
    image: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """Crop a random box of `scale` x area and aspect `ratio` (w/h), resized back to the input size."""
    height, width = image.shape[-2:]
    top, left, crop_h, crop_w = crop_box(height, width, scale, ratio, generator)
    return resize(image[..., top : top + crop_h, left : left + crop_w], (height, width))


def center_crop_box(height: int, width: int, scale: float) -> tuple[int, int, int, int]:
    """`(top, left, crop_h, crop_w)` in pixels of `center_crop`'s box."""
    crop_h, crop_w = max(1, round(height * math.sqrt(scale))), max(1, round(width * math.sqrt(scale)))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def center_crop(images: torch.Tensor, scale: float) -> torch.Tensor:
    """The centred square-ish crop of `scale` x area, resized back: OpenVLA-OFT's evaluation view of a
    policy trained with random crops, so train and test see objects at the same size."""
    height, width = images.shape[-2:]
    top, left, crop_h, crop_w = center_crop_box(height, width, scale)
    return resize(images[..., top : top + crop_h, left : left + crop_w], (height, width))


def normalized_box(box: tuple[int, int, int, int], height: int, width: int) -> torch.Tensor:
    """A pixel box `(top, left, h, w)` as float32 `(top, left, h, w)` fractions of the image (what `crop_box` holds)."""
    top, left, crop_h, crop_w = box
    return torch.tensor([top / height, left / width, crop_h / height, crop_w / width], dtype=torch.float32)


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> HSV with hue in [0, 1) turns."""
    r, g, b = image.unbind(-3)
    value, _ = image.max(-3)
    delta = value - image.min(-3).values
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        value == r, ((g - b) / safe) % 6, torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue)) % 1.0
    lit = value > 0
    saturation = torch.where(lit, delta / torch.where(lit, value, torch.ones_like(value)), torch.zeros_like(value))
    return torch.stack([hue, saturation, value], -3)


def hsv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hsv`."""
    hue, saturation, value = image.unbind(-3)
    sector = torch.floor(hue * 6)
    frac = hue * 6 - sector
    p = value * (1 - saturation)
    q = value * (1 - saturation * frac)
    t = value * (1 - saturation * (1 - frac))
    sector = sector.long() % 6
    # RGB of each of the 6 hue sectors, selected per pixel.
    options = torch.stack(
        [
            torch.stack([value, t, p], -3),
            torch.stack([q, value, p], -3),
            torch.stack([p, value, t], -3),
            torch.stack([p, q, value], -3),
            torch.stack([t, p, value], -3),
            torch.stack([value, p, q], -3),
        ]
    )
    index = sector.unsqueeze(-3).expand_as(options[0]).unsqueeze(0)
    return options.gather(0, index).squeeze(0)


def color_jitter(image: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation, hue (OpenVLA-OFT's order), clipped to [0, 1] after each step."""
    image = (image + _uniform(-spec.brightness, spec.brightness, generator)).clamp(0, 1)
    mean = image.mean(dim=(-2, -1), keepdim=True)
    image = ((image - mean) * _uniform(*spec.contrast, generator) + mean).clamp(0, 1)
    hsv = rgb_to_hsv(image)
    saturation = (hsv[..., 1, :, :] * _uniform(*spec.saturation, generator)).clamp(0, 1)
    hue = (hsv[..., 0, :, :] + _uniform(-spec.hue, spec.hue, generator)) % 1.0
    return hsv_to_rgb(torch.stack([hue, saturation, hsv[..., 2, :, :]], -3)).clamp(0, 1)


def augment_with_boxes(
    images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n_cam, 3, H, W) -> (augmented, cropped only, crop boxes (n_cam, 4)); each camera draws its own crop
    and jitter. A box is `(top, left, height, width)` as fractions of the image (`normalized_box`)."""
    height, width = images.shape[-2:]
    boxes = [crop_box(height, width, spec.crop_scale, spec.crop_ratio, generator) for _ in images]
    cropped = torch.stack([resize(img[..., t : t + h, l : l + w], (height, width))
                           for img, (t, l, h, w) in zip(images, boxes)])  # noqa: E741 (top, left, height, width)
    jittered = torch.stack([color_jitter(img, spec, generator) for img in cropped])
    return jittered, cropped, torch.stack([normalized_box(b, height, width) for b in boxes]).reshape(-1, 4)


def augment(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_cam, 3, H, W) -> (augmented, cropped only); each camera draws its own crop and jitter."""
    jittered, cropped, _ = augment_with_boxes(images, spec, generator)
    return jittered, cropped
