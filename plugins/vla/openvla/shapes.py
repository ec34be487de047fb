"""OpenVLA sizes from a `config.json` mapping, without torch or transformers.

`info()` (and so `rocket align --dry-run`) needs only the layer count, the LLM width and the patches per
image; the model code (`modeling`, `vit`) builds its configs from the same functions, so both agree.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from rocket_core.errors import RocketError
from rocket_plugins.vla.openvla.options import DEFAULT_CHECKPOINT, OPENVLA_7B_CONFIG, PRESETS

if TYPE_CHECKING:
    from rocket_core.specs import VLASpec

# transformers.LlamaConfig's defaults (Llama-2-7B's), which OpenVLA's text_config leaves implicit.
LLAMA_DEFAULTS: dict[str, int] = {"hidden_size": 4096, "num_hidden_layers": 32}


@dataclass(frozen=True)
class ViTConfig:
    """Shape of one timm-layout ViT; `mlp_hidden` truncates like timm (`int(dim * ratio)`)."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    image_size: int = 224
    patch_size: int = 14
    class_token: bool = False
    reg_tokens: int = 0
    layer_scale: bool = False
    map_head: bool = False
    eps: float = 1e-6

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.reg_tokens

    @property
    def feature_block(self) -> int:
        """OpenVLA reads the second-to-last block (timm `get_intermediate_layers(n={depth - 2})`)."""
        return self.depth - 2


# The two timm ids an OpenVLA config.json can name, as OpenVLA creates them (num_classes=0, act_layer=None).
TIMM_VITS: dict[str, ViTConfig] = {
    "vit_large_patch14_reg4_dinov2.lvd142m": ViTConfig(
        1024, 24, 16, 4.0, class_token=True, reg_tokens=4, layer_scale=True
    ),
    "vit_so400m_patch14_siglip_224": ViTConfig(1152, 27, 16, 3.7362, map_head=True),
}

# timm.create_model kwargs that only restate what the ids above already mean.
_NEUTRAL_KWARGS = {"pretrained": False, "num_classes": 0, "act_layer": None}
_SIZE_KWARGS = {"embed_dim": "embed_dim", "depth": "depth", "num_heads": "num_heads", "img_size": "image_size"}


def vit_config(timm_id: str, image_size: int, create_kwargs: Mapping[str, Any] | None = None) -> ViTConfig:
    """The ViT for a timm id at `image_size`, with optional timm.create_model size overrides (tiny fixtures)."""
    if timm_id not in TIMM_VITS:
        raise RocketError(f"unsupported OpenVLA vision backbone '{timm_id}'; supported: {', '.join(TIMM_VITS)}")
    changes: dict[str, Any] = {"image_size": image_size}
    for key, value in (create_kwargs or {}).items():
        if key in _SIZE_KWARGS:
            changes[_SIZE_KWARGS[key]] = value
        elif _NEUTRAL_KWARGS.get(key, object()) != value:
            raise RocketError(f"unsupported timm.create_model argument {key}={value!r} for '{timm_id}'")
    cfg = replace(TIMM_VITS[timm_id], **changes)
    if cfg.image_size % cfg.patch_size:
        raise RocketError(f"image size {cfg.image_size} is not a multiple of the patch size {cfg.patch_size}")
    return cfg


def fused_vits(config: Mapping[str, Any], timm_kwargs: Mapping[str, Mapping[str, Any]] | None = None
               ) -> tuple[ViTConfig, ViTConfig]:
    """The featurizer and fused featurizer of a fused DINOv2+SigLIP config (the only supported layout)."""
    if not config.get("use_fused_vision_backbone", False) or "fused-gelu-mlp" not in config.get("arch_specifier", ""):
        raise RocketError(
            "only the fused DINOv2+SigLIP OpenVLA ('use_fused_vision_backbone', 'fused-gelu-mlp') is supported; "
            "check the checkpoint's config.json"
        )
    if any(act is not None for act in config.get("timm_override_act_layers", [None, None])):
        raise RocketError("timm_override_act_layers must be null: only exact-GELU ViTs are supported")
    kwargs = timm_kwargs if timm_kwargs is not None else config.get("timm_create_model_kwargs", {})
    first, second = (vit_config(i, s, kwargs.get(i)) for i, s in zip(config["timm_model_ids"], config["image_sizes"]))
    return first, second


@dataclass(frozen=True)
class OpenVLASizes:
    """What `OpenVLAAdapter.describe` reads; `modeling.OpenVLAConfig` has the same three properties."""

    num_layers: int
    hidden_size: int
    patches_per_image: int

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> OpenVLASizes:
        text = {**LLAMA_DEFAULTS, **config["text_config"]}
        return cls(text["num_hidden_layers"], text["hidden_size"], fused_vits(config)[0].num_patches)


def cached_config(spec: VLASpec) -> dict[str, Any]:
    """config.json of the checkpoint if it is on disk (local folder or HF cache), else the 7B's.

    Every OpenVLA fine-tune shares the 7B architecture, so `info()` needs no download.
    """
    from rocket_core.hub import local_path

    checkpoint = spec.checkpoint or DEFAULT_CHECKPOINT
    folder = local_path(checkpoint)
    if folder is not None:
        path: Path | None = folder / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(checkpoint, "config.json", revision=spec.revision)
        path = Path(cached) if isinstance(cached, str) else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else OPENVLA_7B_CONFIG


def hf_config(spec: VLASpec) -> dict[str, Any]:
    """The config.json mapping a spec stands for: its preset's, or its checkpoint's."""
    if spec.preset is None:
        return cached_config(spec)
    if spec.preset not in PRESETS:
        raise RocketError(f"unknown openvla preset '{spec.preset}'; available: {', '.join(PRESETS)}")
    if spec.checkpoint is not None:
        raise RocketError(f"the '{spec.preset}' preset is randomly initialised; drop the checkpoint or the preset")
    return PRESETS[spec.preset]
