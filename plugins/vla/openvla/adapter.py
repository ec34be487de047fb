"""The `openvla` VLA plugin: OpenVLA-7B in the OpenVLA-OFT setting ROCKET trains, natively.

Layer indices (VLAInfo): index k is transformers' `hidden_states[k]`: 0 = embeddings, k = the output of
decoder layer k-1 (0-based), L = the final-RMSNorm output (L = 32 for the 7B). `-1` means L-1 (the
output of the second-to-last layer, not the final norm), as the reference resolves it.

This module is import-light (no torch): `info` reads sizes from config.json alone; the model loads in `build`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rocket_core.contracts import VLAAdapter, VLAInfo
from rocket_plugins.vla.openvla.options import (
    ALLOW_PATTERNS,
    DEFAULT_CHECKPOINT,
    OpenVLAOptions,
    paper_layers,
    parse_options,
)
from rocket_plugins.vla.openvla.shapes import OpenVLASizes, hf_config

if TYPE_CHECKING:
    from rocket_core.conventions import Conventions
    from rocket_core.specs import VLASpec
    from rocket_plugins.vla.openvla.modeling import OpenVLAConfig
    from rocket_plugins.vla.openvla.policy import OpenVLAPolicy


class OpenVLAAdapter(VLAAdapter):
    """OpenVLA-7B (Prismatic: DINOv2+SigLIP, Llama-2) with OFT heads, trained by ROCKET through LoRA."""

    name = "openvla"
    description = "OpenVLA-7B native (no remote code): OFT L1 head, proprio token, 2 cameras; presets 'tiny', 'bench'"
    options_model = OpenVLAOptions
    default_checkpoint: ClassVar[str] = DEFAULT_CHECKPOINT
    weight_patterns: ClassVar[tuple[str, ...]] = ALLOW_PATTERNS  # what `rocket pull openvla` downloads
    profile_params: ClassVar[tuple[str, ...]] = ("language_model.model.layers.0.",)

    @classmethod
    def describe(cls, cfg: OpenVLASizes | OpenVLAConfig, opts: OpenVLAOptions) -> VLAInfo:
        layers = cfg.num_layers
        pairs = paper_layers(layers)
        return VLAInfo(
            num_blocks=layers,
            hidden_size=cfg.hidden_size,
            num_vision_tokens=cfg.patches_per_image * opts.num_images,
            max_layer_index=layers,
            layer_offset=1,
            minus_one=layers - 1,
            num_images=opts.num_images,
            default_layers=(pairs, pairs),
            chunk_size=opts.chunk if opts.head == "l1" else 1,
            action_dim=opts.action_dim,
            state_dim=opts.proprio_dim if opts.uses_proprio else None,
            normalization="quantile",
            eval_family="openvla-oft",
        )

    @classmethod
    def info(cls, spec: VLASpec) -> VLAInfo:
        return cls.describe(OpenVLASizes.from_hf(hf_config(spec)), parse_options(spec))

    @classmethod
    def build(cls, spec: VLASpec) -> OpenVLAPolicy:
        """The model, every parameter with `requires_grad` as created; `configure_training` decides what trains."""
        from rocket_plugins.vla.openvla.loading import build

        return build(spec, parse_options(spec))

    @classmethod
    def read_foreign(cls, path: Path, device: str | None = None) -> tuple[VLASpec, Conventions] | None:
        """An OpenVLA-OFT folder (the reference's published checkpoints, ours after `rocket export`)."""
        from rocket_plugins.vla.openvla.oft import read_oft_folder

        return read_oft_folder(path, cls.name, device)
