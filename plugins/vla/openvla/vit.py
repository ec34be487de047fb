"""The two ViTs of OpenVLA's fused backbone, in our own code, with the checkpoint's (timm-style) key names.

OpenVLA stores `vision_backbone.featurizer.*` (DINOv2 ViT-L/14 with 4 registers) and
`vision_backbone.fused_featurizer.*` (SigLIP So400m/14) exactly as timm names them, except LayerScale,
which the checkpoint calls `ls{1,2}.scale_factor` (timm: `gamma`). Building these modules here keeps timm
(and the torchvision it imports) out of the project; only the features OpenVLA reads are computed: the
output of block `depth - 2`, prefix tokens dropped, no final norm.

VGGT's DINOv2 is deliberately not reused: it names and lays out its tokens differently (`register_tokens`,
a `pos_embed` that includes the class position, `ls1.gamma`, `mask_token`), so sharing would need a
renaming layer on both sides for two small modules.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rocket_plugins.vla.openvla.shapes import ViTConfig


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """fc1, exact GELU, fc2 (timm's default ViT MLP)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel scale; `scale_factor` is the checkpoint's name for timm's `gamma`."""

    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.eps)
        self.attn = Attention(dim, cfg.num_heads)
        self.ls1 = LayerScale(dim) if cfg.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.eps)
        self.mlp = Mlp(dim, cfg.mlp_hidden)
        self.ls2 = LayerScale(dim) if cfg.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class MapHeadWeights(nn.Module):
    """SigLIP's attention-pooling head, kept as parameters only.

    The checkpoint stores it, but OpenVLA's features never use it, so it has no forward: it exists so the
    state dict loads key for key.
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=cfg.eps)
        self.mlp = Mlp(dim, cfg.mlp_hidden)


class VisionTransformer(nn.Module):
    """timm-layout ViT: patch positions only in `pos_embed` (prefix tokens carry none), pre-norm blocks."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cfg.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, dim)) if cfg.reg_tokens else None
        self.pos_embed = nn.Parameter(torch.randn(1, cfg.num_patches, dim) * 0.02)
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim, eps=cfg.eps)
        self.attn_pool = MapHeadWeights(cfg) if cfg.map_head else None
        self.gradient_checkpointing = False  # recompute each block in backward (training only)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised pixels -> (N, patches, dim): block `depth-2`, prefix dropped, no final norm.

        Later blocks are skipped: they cannot change that output.
        """
        x = self.patch_embed(images) + self.pos_embed
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        x = torch.cat([*prefix, x], dim=1)
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks[: self.cfg.feature_block + 1]:
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
        return x[:, self.cfg.num_prefix_tokens :]
