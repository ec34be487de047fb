"""VGGT sizes: the VGGT-1B defaults, the `tiny` preset, and parsing of a reference constructor dump.

Only sizes vary; the structural choices of the public model (frame/global alternation one block at a
time, q/k norm, biases, DINOv2-with-registers patch embed, 9-D pose encoding, exp / inv_log depth and
point activations) are fixed, and a dump that asks for anything else is rejected rather than ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rocket_core.errors import RocketError


@dataclass(frozen=True)
class DinoConfig:
    """The DINOv2 ViT with registers used as patch embed (ViT-L/14 for VGGT-1B)."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    eps: float = 1e-6


@dataclass(frozen=True)
class DPTConfig:
    """One dense head (depth or point)."""

    features: int = 256
    out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    layers: tuple[int, int, int, int] = (4, 11, 17, 23)


@dataclass(frozen=True)
class VGGTConfig:
    """Aggregator sizes plus head sizes; `depth` is the number of frame/global block pairs (= feature layers)."""

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    rope_freq: float = 100.0
    init_values: float = 0.01
    dino: DinoConfig = field(default_factory=DinoConfig)
    camera_trunk_depth: int = 4
    camera_num_heads: int = 16
    camera_mlp_ratio: float = 4.0
    camera_iterations: int = 4
    dpt: DPTConfig = field(default_factory=DPTConfig)

    @property
    def patch_start_idx(self) -> int:
        """Tokens per frame before the patches: one camera token plus the registers."""
        return 1 + self.num_register_tokens

    @property
    def feature_dim(self) -> int:
        """Width of one feature layer: frame and global streams concatenated."""
        return 2 * self.embed_dim

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


VGGT_1B = VGGTConfig()

# The real architecture at a size where a CPU step takes a fraction of a second: 8x8 patches of 14 px.
TINY = VGGTConfig(
    img_size=112,
    embed_dim=64,
    depth=4,
    num_heads=4,
    dino=DinoConfig(embed_dim=64, depth=2, num_heads=4),
    camera_trunk_depth=1,
    camera_num_heads=4,
    dpt=DPTConfig(features=16, out_channels=(8, 16, 32, 32), layers=(0, 1, 2, 3)),
)

# benchmarks/align_step.py: embed 256, depth 12 at the real 518 px (37x37 patches).
BENCH = VGGTConfig(
    embed_dim=256,
    depth=12,
    num_heads=4,
    dino=DinoConfig(embed_dim=256, depth=4, num_heads=4),
    camera_trunk_depth=1,
    camera_num_heads=4,
    dpt=DPTConfig(features=32, out_channels=(32, 64, 128, 128), layers=(2, 5, 8, 11)),
)

PRESETS: dict[str, VGGTConfig] = {"tiny": TINY, "bench": BENCH}


def _expect(section: dict[str, Any], key: str, value: Any, where: str) -> None:
    got = section.get(key, value)
    if got != value:
        raise RocketError(f"VGGT config {where}.{key} = {got!r} is not supported (this implementation needs {value!r})")


def config_from_reference(cfg: dict[str, Any]) -> VGGTConfig:
    """Sizes from a reference constructor dump (sections vggt, aggregator, patch_embed, *_head)."""
    try:
        agg, dino, cam, depth = cfg["aggregator"], cfg["patch_embed"], cfg["camera_head"], cfg["depth_head"]
        for key, value in (("aa_order", ["frame", "global"]), ("aa_block_size", 1), ("qk_norm", True)):
            _expect(agg, key, value, "aggregator")
        for key, value in (("activation", "exp"), ("conf_activation", "expp1")):
            _expect(depth, key, value, "depth_head")
        _expect(cfg.get("point_head", {}), "activation", "inv_log", "point_head")
        _expect(cam, "pose_encoding_type", "absT_quaR_FoV", "camera_head")
        _expect(dino, "num_register_tokens", agg["num_register_tokens"], "patch_embed")
        if cam.get("dim_in", 2 * agg["embed_dim"]) != 2 * agg["embed_dim"]:
            raise RocketError("VGGT config camera_head.dim_in must be 2 * aggregator.embed_dim")
        return VGGTConfig(
            img_size=agg["img_size"],
            patch_size=agg["patch_size"],
            embed_dim=agg["embed_dim"],
            depth=agg["depth"],
            num_heads=agg["num_heads"],
            mlp_ratio=agg["mlp_ratio"],
            num_register_tokens=agg["num_register_tokens"],
            rope_freq=agg["rope_freq"],
            init_values=agg["init_values"],
            dino=DinoConfig(
                embed_dim=dino["embed_dim"], depth=dino["depth"], num_heads=dino["num_heads"], mlp_ratio=dino["mlp_ratio"]
            ),
            camera_trunk_depth=cam["trunk_depth"],
            camera_num_heads=cam["num_heads"],
            camera_mlp_ratio=cam["mlp_ratio"],
            camera_iterations=cam.get("forward_num_iterations", 4),
            dpt=DPTConfig(
                features=depth["features"],
                out_channels=tuple(depth["out_channels"]),
                layers=tuple(depth["intermediate_layer_idx"]),
            ),
        )
    except KeyError as exc:
        raise RocketError(f"VGGT config is missing {exc}; expected a reference constructor dump") from None

