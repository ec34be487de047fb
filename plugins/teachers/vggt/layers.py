"""Transformer building blocks of VGGT: one pre-norm block type serves the DINOv2 patch embed, the
aggregator (with q/k LayerNorm and 2-D RoPE) and the camera-head trunk.

Module and parameter names match the public checkpoint (`attn.qkv`, `ls1.gamma`, `mlp.fc1`, ...).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RotaryPositions2D(nn.Module):
    """2-D rotary embedding: the first half of each head is rotated by the row, the second by the column.

    Each half uses rotate-half pairing with inverse frequencies base^(-2j/half).
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = base

    def _cos_sin(self, half: int, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables (max_pos+1, half) gathered by position: cheaper than computing per token."""
        inv_freq = 1.0 / self.base ** (torch.arange(0, half, 2, device=positions.device).float() / half)
        steps = torch.arange(int(positions.max()) + 1, device=positions.device, dtype=inv_freq.dtype)
        angles = torch.outer(steps, inv_freq).to(dtype)
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()

    @staticmethod
    def _rotate(x: torch.Tensor, pos: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        cos, sin = F.embedding(pos, cos)[:, None], F.embedding(pos, sin)[:, None]
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x: (B, heads, N, head_dim); positions: (B, N, 2) integer (row, col)."""
        rows, cols = x.chunk(2, dim=-1)
        cos, sin = self._cos_sin(rows.shape[-1], positions, x.dtype)
        return torch.cat(
            (self._rotate(rows, positions[..., 0], cos, sin), self._rotate(cols, positions[..., 1], cos, sin)), dim=-1
        )


class Attention(nn.Module):
    """Multi-head self-attention with optional q/k LayerNorm (over head_dim) and RoPE after the norm."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float, rope: RotaryPositions2D | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(head_dim, eps=eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim, eps=eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale: x + ls1(attn(norm1 x)), then x + ls2(mlp(norm2 x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        init_values: float,
        eps: float = 1e-5,
        qk_norm: bool = False,
        rope: RotaryPositions2D | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qk_norm, eps, rope)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos))
        return x + self.ls2(self.mlp(self.norm2(x)))
