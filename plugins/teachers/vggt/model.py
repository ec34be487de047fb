"""VGGT in plain torch: DINOv2 patch embed, alternating frame/global aggregator, camera and dense heads.

Module names mirror the public checkpoint so its state dict loads key for key. The aggregator can stop
after any block (`layers`), which is all a teacher needs; the heads are only built on request.
"""
from __future__ import annotations

from typing import Any, Collection, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from rocket_core.vision import normalize
from rocket_plugins.teachers.vggt.config import DPTConfig, VGGTConfig
from rocket_plugins.teachers.vggt.layers import Block, Mlp, RotaryPositions2D

POSE_DIM = 9  # translation (3), quaternion (4), field of view (2)


class _PatchProjection(nn.Module):
    """Holds the stride-p convolution under the checkpoint's name `patch_embed.proj`."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)


class DinoPatchEmbed(nn.Module):
    """DINOv2 ViT with register tokens; returns the final-normed patch tokens (cls and registers dropped)."""

    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        d, dim = config.dino, config.dino.embed_dim
        self.patch_size = config.patch_size
        self.num_registers = config.num_register_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid**2, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # in the checkpoint; unused at inference
        self.patch_embed = _PatchProjection(config.patch_size, dim)
        self.blocks = nn.ModuleList(Block(dim, d.num_heads, d.mlp_ratio, init_values=1.0, eps=d.eps) for _ in range(d.depth))
        self.norm = nn.LayerNorm(dim, eps=d.eps)

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        """(1, 1 + gh*gw, dim): the learned square grid, resized bicubically with antialias to the input grid."""
        grid = int((self.pos_embed.shape[1] - 1) ** 0.5)
        gh, gw = height // self.patch_size, width // self.patch_size
        if gh * gw == grid * grid and height == width:
            return self.pos_embed
        pos = self.pos_embed.float()
        patch_pos = pos[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(gh, gw), mode="bicubic", antialias=True)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(self.pos_embed.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(n, -1, -1), x), dim=1) + self.position_embedding(h, w)
        x = torch.cat((x[:, :1], self.register_tokens.expand(n, -1, -1), x[:, 1:]), dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 1 + self.num_registers :])  # the norm is per token: skipping cls/registers is exact


def patch_positions(frames: int, gh: int, gw: int, num_special: int, device: torch.device) -> torch.Tensor:
    """(frames, num_special + gh*gw, 2) RoPE positions: special tokens at (0, 0), patch (r, c) at (r+1, c+1)."""
    rows, cols = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    grid = torch.stack((rows, cols), dim=-1).reshape(-1, 2) + 1
    pos = torch.cat((torch.zeros(num_special, 2, dtype=grid.dtype, device=device), grid))
    return pos.expand(frames, -1, -1)


class Aggregator(nn.Module):
    """Per frame: [camera, registers, patches]; then `depth` pairs of frame attention (within each frame)
    and global attention (across all frames of a sample). Layer i = cat(frame-block-i out, global-block-i out).
    """

    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.config = config
        # Slot 0 is used by the first frame of each sample, slot 1 by every later frame.
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, config.num_register_tokens, dim))
        self.patch_embed = DinoPatchEmbed(config)
        rope = RotaryPositions2D(config.rope_freq)

        def make() -> nn.ModuleList:
            return nn.ModuleList(
                Block(dim, config.num_heads, config.mlp_ratio, config.init_values, qk_norm=True, rope=rope)
                for _ in range(config.depth)
            )

        self.frame_blocks = make()
        self.global_blocks = make()

    @staticmethod
    def _per_frame(token: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        slots = torch.ones(frames, dtype=torch.long, device=token.device)
        slots[0] = 0
        return token[0, slots].unsqueeze(0).expand(batch, -1, -1, -1).reshape(batch * frames, *token.shape[2:])

    def forward(self, images: torch.Tensor, layers: Collection[int] | None = None) -> dict[int, torch.Tensor]:
        """{layer: (B, S, P, 2E)} for `layers` (all if None) from (B, S, 3, H, W) in [0, 1].

        Stops after the deepest requested block, and keeps only the requested layers' tensors.
        """
        b, s, _, h, w = images.shape
        wanted = set(range(self.config.depth) if layers is None else layers)
        if not wanted or not all(0 <= i < self.config.depth for i in wanted):
            raise ValueError(f"layers must be a non-empty subset of 0..{self.config.depth - 1}, got {sorted(wanted)}")
        patches = self.patch_embed(normalize(images).reshape(b * s, 3, h, w))
        tokens = torch.cat(
            (self._per_frame(self.camera_token, b, s), self._per_frame(self.register_token, b, s), patches), dim=1
        )
        n, dim = tokens.shape[1:]
        ps = self.config.patch_size
        pos = patch_positions(b * s, h // ps, w // ps, self.config.patch_start_idx, images.device)
        pos_global = pos.reshape(b, s * n, 2)
        out: dict[int, torch.Tensor] = {}
        for i in range(max(wanted) + 1):
            tokens = self.frame_blocks[i](tokens.reshape(b * s, n, dim), pos)
            frame_out = tokens.reshape(b, s, n, dim)
            tokens = self.global_blocks[i](tokens.reshape(b, s * n, dim), pos_global)
            if i in wanted:
                out[i] = torch.cat((frame_out, tokens.reshape(b, s, n, dim)), dim=-1)
        return out


class CameraHead(nn.Module):
    """Iterative pose refinement from the camera token of the last layer (adaLN-modulated trunk)."""

    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        dim = config.feature_dim
        self.iterations = config.camera_iterations
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.trunk = nn.Sequential(
            *(Block(dim, config.camera_num_heads, config.camera_mlp_ratio, config.init_values) for _ in range(config.camera_trunk_depth))
        )
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.embed_pose = nn.Linear(POSE_DIM, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, POSE_DIM)

    def forward(self, last_layer: torch.Tensor) -> list[torch.Tensor]:
        """Pose encodings (B, S, 9) after each iteration: [T, quaternion, relu(FoV)]."""
        tokens = self.token_norm(last_layer[:, :, 0])
        normed = self.adaln_norm(tokens)
        pred: torch.Tensor | None = None
        outputs = []
        for _ in range(self.iterations):
            # The previous estimate is fed back without gradient, as in the reference.
            prev = self.empty_pose_tokens.expand(*tokens.shape[:2], -1) if pred is None else pred.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(prev)).chunk(3, dim=-1)
            x = self.trunk(gate * (normed * (1 + scale) + shift) + tokens)
            delta = self.pose_branch(self.trunk_norm(x))
            pred = delta if pred is None else pred + delta
            outputs.append(torch.cat((pred[..., :7], F.relu(pred[..., 7:])), dim=-1))
        return outputs


def _sincos(channels: int, pos: torch.Tensor, omega0: float = 100.0) -> torch.Tensor:
    """(M, channels) sin|cos embedding of 1-D positions, computed in float64 like the reference."""
    omega = 1.0 / omega0 ** (torch.arange(channels // 2, dtype=torch.float64, device=pos.device) / (channels / 2))
    angles = torch.outer(pos.reshape(-1).double(), omega)
    return torch.cat((angles.sin(), angles.cos()), dim=1).float()


def uv_embedding(x: torch.Tensor, width: int, height: int, ratio: float = 0.1) -> torch.Tensor:
    """x plus ratio * a sin/cos embedding of the image-plane uv grid (spans set by the image aspect)."""
    c, gh, gw = x.shape[1:]
    aspect = width / height
    diag = (aspect**2 + 1) ** 0.5
    span_x, span_y = aspect / diag, 1 / diag
    u = torch.linspace(-span_x * (gw - 1) / gw, span_x * (gw - 1) / gw, gw, dtype=x.dtype, device=x.device)
    v = torch.linspace(-span_y * (gh - 1) / gh, span_y * (gh - 1) / gh, gh, dtype=x.dtype, device=x.device)
    uu, vv = torch.meshgrid(u, v, indexing="xy")
    emb = torch.cat((_sincos(c // 2, uu), _sincos(c // 2, vv)), dim=-1).view(gh, gw, c)
    return x + (emb * ratio).permute(2, 0, 1)[None].to(x.dtype)


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The reference's in-place ReLU also rectifies the skip path, so the residual adds relu(x).
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FusionBlock(nn.Module):
    """Add the refined skip (if any), refine, upsample (bilinear, align_corners=True), 1x1 conv."""

    def __init__(self, features: int, has_skip: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_skip:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, size=size or (2 * x.shape[-2], 2 * x.shape[-1]), mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """Dense prediction from four aggregator layers: per-pixel values plus a confidence (1 + exp)."""

    HEAD_HIDDEN = 32

    def __init__(self, config: VGGTConfig, dpt: DPTConfig, output_dim: int, activation: str) -> None:
        super().__init__()
        dim, oc, f = config.feature_dim, dpt.out_channels, dpt.features
        self.patch_size = config.patch_size
        self.layers = dpt.layers
        self.activation = activation
        self.norm = nn.LayerNorm(dim)
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        scratch = nn.Module()
        for i, c in enumerate(oc, start=1):
            setattr(scratch, f"layer{i}_rn", nn.Conv2d(c, f, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(scratch, f"refinenet{i}", FusionBlock(f, has_skip=i < 4))
        scratch.output_conv1 = nn.Conv2d(f, f // 2, 3, padding=1)
        scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(f // 2, self.HEAD_HIDDEN, 3, padding=1), nn.ReLU(), nn.Conv2d(self.HEAD_HIDDEN, output_dim, 1)
        )
        self.scratch = scratch

    def _fuse(self, feats: list[torch.Tensor]) -> torch.Tensor:
        sc: Any = self.scratch  # its submodules are set by name
        l1, l2, l3, l4 = (getattr(sc, f"layer{i}_rn")(x) for i, x in enumerate(feats, start=1))
        x = sc.refinenet4(l4, size=l3.shape[2:])
        x = sc.refinenet3(x, l3, size=l2.shape[2:])
        x = sc.refinenet2(x, l2, size=l1.shape[2:])
        return sc.output_conv1(sc.refinenet1(x, l1))

    def forward(
        self, layers: Mapping[int, torch.Tensor], image_hw: tuple[int, int], patch_start_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, H, W, C-1) values and (B, S, H, W) confidence."""
        h, w = image_hw
        gh, gw = h // self.patch_size, w // self.patch_size
        feats = []
        for i, layer in enumerate(self.layers):
            x = layers[layer][:, :, patch_start_idx:]
            b, s = x.shape[:2]
            x = self.norm(x.reshape(b * s, gh * gw, -1)).permute(0, 2, 1).reshape(b * s, -1, gh, gw)
            feats.append(self.resize_layers[i](uv_embedding(self.projects[i](x), w, h)))
        x = F.interpolate(self._fuse(feats), size=(gh * self.patch_size, gw * self.patch_size), mode="bilinear", align_corners=True)
        x = self.scratch.output_conv2(uv_embedding(x, w, h)).permute(0, 2, 3, 1)  # type: ignore[operator]  # a submodule
        values, conf = x[..., :-1], 1 + x[..., -1].exp()
        if self.activation == "exp":
            values = values.exp()
        else:  # inv_log: sign(y) * (exp(|y|) - 1)
            values = torch.sign(values) * torch.expm1(values.abs())
        return values.reshape(b, s, *values.shape[1:]), conf.reshape(b, s, *conf.shape[1:])


class VGGT(nn.Module):
    """Aggregator plus optional heads; `heads=False` builds the feature-only model a teacher needs."""

    def __init__(self, config: VGGTConfig, heads: bool = True) -> None:
        super().__init__()
        self.config = config
        self.aggregator = Aggregator(config)
        self.camera_head = CameraHead(config) if heads else None
        self.point_head = DPTHead(config, config.dpt, output_dim=4, activation="inv_log") if heads else None
        self.depth_head = DPTHead(config, config.dpt, output_dim=2, activation="exp") if heads else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """All layers' features and, with heads, pose encodings, depth and world points."""
        features = self.aggregator(images)
        out: dict[str, torch.Tensor | list[torch.Tensor]] = {"features": [features[i] for i in sorted(features)]}
        if self.camera_head is None or self.depth_head is None or self.point_head is None:
            return out
        hw, psi = images.shape[-2:], self.config.patch_start_idx
        poses = self.camera_head(features[self.config.depth - 1])
        out.update(pose_enc=poses[-1], pose_enc_list=poses)
        out["depth"], out["depth_conf"] = self.depth_head(features, hw, psi)
        out["world_points"], out["world_points_conf"] = self.point_head(features, hw, psi)
        return out
