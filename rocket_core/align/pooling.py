"""Resampling teacher patch tokens to the student's vision-token count (reference `custom_pooling`)."""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F


def pooled_grid(frames: int, patch_grid: tuple[int, int], ref_len: int) -> tuple[int, int]:
    """Output grid per frame: `int(ph*r), int(pw*r)` with `r = 1/sqrt(S*P/ref_len)` in float64.

    The truncation means the token count can differ from `ref_len`; we reproduce that, not fix it.
    """
    ph, pw = patch_grid
    r = 1 / np.sqrt(frames * ph * pw / ref_len)
    return int(ph * r), int(pw * r)


def sincos_2d_table(dim: int, ph: int, pw: int, img_h: int, img_w: int) -> torch.Tensor:
    """Build the (dim, ph, pw) float32 table (float64 maths); `sincos_2d` caches it per device."""
    aspect = img_w / img_h
    diag = (aspect**2 + 1) ** 0.5
    span_x, span_y = aspect / diag, 1 / diag
    xs = torch.linspace(-span_x * (pw - 1) / pw, span_x * (pw - 1) / pw, pw, dtype=torch.float64)
    ys = torch.linspace(-span_y * (ph - 1) / ph, span_y * (ph - 1) / ph, ph, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    quarter = dim // 4
    omega = 1.0 / 100.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)

    def embed(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    emb = torch.cat([embed(gx), embed(gy)], dim=1).float()  # (ph*pw, dim)
    return emb.reshape(ph, pw, dim).permute(2, 0, 1).contiguous()


@functools.lru_cache(maxsize=32)
def _sincos_2d_on(
    dim: int, ph: int, pw: int, img_h: int, img_w: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    return sincos_2d_table(dim, ph, pw, img_h, img_w).to(device=device, dtype=dtype)


def sincos_2d(
    dim: int,
    patch_grid: tuple[int, int],
    image_hw: tuple[int, int],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(dim, ph, pw) fixed 2-D sin-cos embedding: x channels then y, each [sin, cos], omega 100^(-k/(dim/4)).

    Cached per device and dtype: the table is constant, so building it (or copying it to the GPU) every
    step, as the reference does, is pure overhead.
    """
    return _sincos_2d_on(dim, *patch_grid, *image_hw, torch.device(device), dtype)


@functools.lru_cache(maxsize=32)
def _pooled_pe(
    dim: int, grid: tuple[int, int], image_hw: tuple[int, int], out_hw: tuple[int, int], device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    pe = sincos_2d(dim, grid, image_hw, device, dtype)[None]
    return (0.1 * F.interpolate(pe, size=out_hw, mode="bilinear", align_corners=True))[0].permute(1, 2, 0)


def bilinear_pool(
    tokens: torch.Tensor,
    patch_grid: tuple[int, int],
    ref_len: int,
    image_hw: tuple[int, int],
    add_pe: bool = True,
) -> torch.Tensor:
    """(N, S, P, D) patch tokens -> (N, S*oh*ow, D), frame-major then row-major.

    `N` may stack several layers and the batch (pool every selected layer in one call). Bilinear
    resampling is linear, so `interp(x + 0.1*pe) = interp(x) + 0.1*interp(pe)`: the embedding is pooled
    once and cached, instead of being added to every full-resolution frame (equal up to float rounding,
    ~1e-7, inside the reference tolerance). Channels-last input keeps `interpolate` on its fast path.
    """
    n, frames, _, dim = tokens.shape
    ph, pw = patch_grid
    out_hw = pooled_grid(frames, patch_grid, ref_len)
    x = tokens.contiguous().reshape(n * frames, ph, pw, dim).permute(0, 3, 1, 2)
    y = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
    if add_pe:
        y = y + _pooled_pe(dim, tuple(patch_grid), tuple(image_hw), out_hw, y.device, y.dtype)
    return y.reshape(n, frames * out_hw[0] * out_hw[1], dim)


def random_pool(tokens: torch.Tensor, ref_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, S, P, D) -> (N, ref_len, D): sorted random tokens, with replacement only when upsampling."""
    n, frames, p, dim = tokens.shape
    flat = tokens.reshape(n, frames * p, dim)
    total = frames * p
    if ref_len <= total:
        idx = torch.randperm(total, generator=generator)[:ref_len]
    else:
        idx = torch.randint(total, (ref_len,), generator=generator)
    return flat[:, idx.sort().values.to(flat.device)]
