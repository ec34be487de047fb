"""Resampling teacher patch tokens to the student's vision-token count (reference `custom_pooling`)."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from rocket_core.align.layout import pooled_grid


def sincos_2d_table(dim: int, ph: int, pw: int, img_h: int, img_w: int,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Build the (dim, ph, pw) float32 table (float64 maths) on `device`; `sincos_2d` caches it per device."""
    aspect = img_w / img_h
    diag = (aspect**2 + 1) ** 0.5
    span_x, span_y = aspect / diag, 1 / diag
    xs = torch.linspace(-span_x * (pw - 1) / pw, span_x * (pw - 1) / pw, pw, dtype=torch.float64, device=device)
    ys = torch.linspace(-span_y * (ph - 1) / ph, span_y * (ph - 1) / ph, ph, dtype=torch.float64, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    quarter = dim // 4
    omega = 1.0 / 100.0 ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter)

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
    pooled = 0.1 * F.interpolate(pe, size=out_hw, mode="bilinear", align_corners=True)
    return pooled[0].permute(1, 2, 0).contiguous()  # token-major like the pooled targets it is added to


def bilinear_pool(
    tokens: torch.Tensor,
    patch_grid: tuple[int, int],
    ref_len: int,
    image_hw: tuple[int, int],
    add_pe: bool = True,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, S, P, D) patch tokens -> (N, S*oh*ow, D), frame-major then row-major; written into `out` if given.

    `N` may stack several layers and the batch. Bilinear resampling is linear, so
    `interp(x + 0.1*pe) = interp(x) + 0.1*interp(pe)`: the embedding is pooled once and cached, instead of
    being added to every full-resolution frame (equal up to float rounding, ~1e-7, inside the reference
    tolerance). Channels-last input keeps `interpolate` on its fast path, and channels-last is exactly
    the token-major layout of `out`, so the kernel writes the result in place.
    """
    n, frames, _, dim = tokens.shape
    ph, pw = patch_grid
    oh, ow = pooled_grid(frames, patch_grid, ref_len)
    if out is None:
        out = tokens.new_empty(n, frames * oh * ow, dim)
    x = tokens.reshape(n * frames, ph, pw, dim).permute(0, 3, 1, 2)
    y = out.view(n * frames, oh, ow, dim)
    dst = y.permute(0, 3, 1, 2)
    if not x[:1].is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    if x.is_contiguous(memory_format=torch.channels_last):
        torch.ops.aten.upsample_bilinear2d.out(x, [oh, ow], True, None, None, out=dst)
    else:
        # Patches sliced after special tokens: each frame is channels-last, the batch stride is not.
        # Frame by frame avoids copying every full-resolution layer (the bulk of pooling's time).
        for i in range(n * frames):
            torch.ops.aten.upsample_bilinear2d.out(x[i : i + 1], [oh, ow], True, None, None, out=dst[i : i + 1])
    if add_pe:
        y.add_(_pooled_pe(dim, tuple(patch_grid), tuple(image_hw), (oh, ow), y.device, y.dtype))
    return out


def random_indices(total: int, ref_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`ref_len` sorted token indices of `total`, with replacement only when upsampling."""
    idx = torch.randperm(total, generator=generator)[:ref_len] if ref_len <= total else \
        torch.randint(total, (ref_len,), generator=generator)
    return idx.sort().values


def take_tokens(tokens: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(N, S, P, D) -> (N, len(idx), D): the tokens at `idx` over all frames, into `out` when given."""
    n, frames, p, dim = tokens.shape
    return torch.index_select(tokens.reshape(n, frames * p, dim), 1, idx.to(tokens.device), out=out)

