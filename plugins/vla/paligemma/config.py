"""pi0 / pi0.5 configuration: sizes, options and the layer-index conventions (no torch; `info()` reads only this)."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rocket_core.contracts import VLAInfo
from rocket_core.errors import RocketError

if TYPE_CHECKING:
    import torch
    from transformers import GemmaConfig, PaliGemmaConfig

    from rocket_core.specs import VLASpec

PALIGEMMA_TOKENIZER = "google/paligemma-3b-pt-224"
MAX_CAMERAS = 3
LORA_LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Options that became TrainingSpec fields (the trainer passes them to `configure_training`).
MOVED_OPTIONS = {"finetune": "training.finetune", "lora_rank_vlm": "training.lora.rank",
                 "gradient_checkpointing": "training.gradient_checkpointing"}
# The paper's pairs (ROCKET-ALGORITHM.md section 7), valid for the 18-block Gemma-2B.
PAPER_LAYERS = ((2, 3, 4, 5, 6, 7, 8, 9, 10, -1), (2, 4, 6, 8, 10, 12, 14, 16, 18, -1))




@dataclass(frozen=True)
class GemmaSize:
    """One Gemma stack. The expert must share depth, heads, KV heads and head_dim with the VLM (joint attention)."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class Arch:
    """Every size and setting needed to rebuild a pi0 / pi0.5 policy."""

    vlm: GemmaSize
    expert: GemmaSize
    vision: dict[str, int]  # hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, patch_size, image_size
    vocab_size: int = 257152
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    chunk_size: int = 50
    max_state_dim: int = 32
    max_action_dim: int = 32
    num_steps: int = 10
    min_period: float = 4e-3
    max_period: float = 4.0
    beta_alpha: float = 1.5
    beta_beta: float = 1.0
    time_scale: float = 0.999
    time_offset: float = 0.001

    @property
    def tokens_per_image(self) -> int:
        return (self.vision["image_size"] // self.vision["patch_size"]) ** 2

    @property
    def token_grid(self) -> tuple[int, int]:
        side = self.vision["image_size"] // self.vision["patch_size"]
        return side, side

    def check(self) -> None:
        v, e = self.vlm, self.expert
        if (v.depth, v.num_heads, v.num_kv_heads, v.head_dim) != (e.depth, e.num_heads, e.num_kv_heads, e.head_dim):
            raise RocketError(
                f"the action expert ({e}) must match the VLM ({v}) in depth, heads, KV heads and head_dim; fix the config"
            )

    def paligemma_config(self) -> PaliGemmaConfig:
        from transformers import PaliGemmaConfig

        v, s = self.vlm, self.vision
        return PaliGemmaConfig(  # type: ignore[call-arg]  # image_token_id: transformers' alias of image_token_index
            text_config=dict(
                model_type="gemma", hidden_size=v.width, num_hidden_layers=v.depth, intermediate_size=v.mlp_dim,
                num_attention_heads=v.num_heads, num_key_value_heads=v.num_kv_heads, head_dim=v.head_dim,
                vocab_size=self.vocab_size, rms_norm_eps=self.rms_norm_eps, hidden_activation="gelu_pytorch_tanh",
                rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
                use_bidirectional_attention=True,
            ),
            vision_config=dict(model_type="siglip_vision_model", vision_use_head=False, **s),
            projection_dim=v.width,
            image_token_id=self.vocab_size,
            vocab_size=self.vocab_size,
        )

    def expert_config(self) -> GemmaConfig:
        from transformers import GemmaConfig

        e = self.expert
        return GemmaConfig(  # type: ignore[call-arg]  # hidden_activation: Gemma's key, kept on the config
            hidden_size=e.width, num_hidden_layers=e.depth, intermediate_size=e.mlp_dim, num_attention_heads=e.num_heads,
            num_key_value_heads=e.num_kv_heads, head_dim=e.head_dim, vocab_size=self.vocab_size,
            rms_norm_eps=self.rms_norm_eps, hidden_activation="gelu_pytorch_tanh",
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
        )


GEMMA_2B = GemmaSize(2048, 18, 16384, 8, 1, 256)
GEMMA_300M = GemmaSize(1024, 18, 4096, 8, 1, 256)
SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                     patch_size=14, image_size=224)
VARIANTS = {"gemma_2b": GEMMA_2B, "gemma_300m": GEMMA_300M}
BASE_ARCH = Arch(vlm=GEMMA_2B, expert=GEMMA_300M, vision=SIGLIP_SO400M)
# `preset="tiny"`: the real architecture at toy sizes (the shape of the shared tiny fixtures); heads stay 8.
TINY_ARCH = Arch(
    vlm=GemmaSize(64, 2, 128, 8, 1, 16),
    expert=GemmaSize(32, 2, 64, 8, 1, 16),
    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14,
                image_size=56),
    vocab_size=512, chunk_size=10, max_state_dim=16, max_action_dim=16, num_steps=4,
)


def arch_from_config(data: dict[str, Any]) -> Arch:
    """Sizes from a checkpoint's config.json: our fixture description (explicit sizes) or LeRobot's (variant names)."""
    if "paligemma_text" in data:  # fixture description
        vis = data["vision_siglip"]
        flow = data.get(data.get("policy_type", ""), {})
        return Arch(
            vlm=GemmaSize(**data["paligemma_text"]), expert=GemmaSize(**data["action_expert"]),
            vision={k: vis[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                        "num_attention_heads", "patch_size", "image_size")},
            vocab_size=data["vocab_size"], rms_norm_eps=data["rms_norm_eps"], rope_theta=data["rope_theta"],
            chunk_size=data["chunk_size"], max_state_dim=data["max_state_dim"], max_action_dim=data["max_action_dim"],
            num_steps=data["num_inference_steps"], min_period=flow.get("min_period", 4e-3),
            max_period=flow.get("max_period", 4.0),
        )
    if data.get("type") in ("pi0", "pi05"):  # LeRobot PI0Config / PI05Config
        try:
            vlm, expert = VARIANTS[data["paligemma_variant"]], VARIANTS[data["action_expert_variant"]]
        except KeyError as exc:
            raise RocketError(f"unknown Gemma variant {exc} in the checkpoint config; known: {sorted(VARIANTS)}") from None
        return replace(
            BASE_ARCH, vlm=vlm, expert=expert, chunk_size=data.get("chunk_size", 50),
            max_state_dim=data.get("max_state_dim", 32), max_action_dim=data.get("max_action_dim", 32),
            num_steps=data.get("num_inference_steps", 10), min_period=data.get("min_period", 4e-3),
            max_period=data.get("max_period", 4.0),
            beta_alpha=data.get("time_sampling_beta_alpha", 1.5), beta_beta=data.get("time_sampling_beta_beta", 1.0),
            time_scale=data.get("time_sampling_scale", 0.999), time_offset=data.get("time_sampling_offset", 0.001),
        )
    raise RocketError("the checkpoint's config.json is neither a LeRobot pi0/pi0.5 config nor a rocket fixture config")




class PolicyOptions(BaseModel):
    """Validated `VLASpec.options` shared by both plugins (see docs/pi0.md for the table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cameras: int = Field(MAX_CAMERAS, ge=1, le=MAX_CAMERAS)
    index_convention: Literal["pytorch", "jax"] = "pytorch"
    chunk_size: int | None = Field(None, ge=1)
    num_steps: int | None = Field(None, ge=1)
    action_dim: int | None = Field(None, ge=1)
    tokenizer: str | None = None
    max_token_len: int | None = Field(None, ge=1)
    lora_rank_expert: int = Field(32, ge=1, description="LoRA rank (= alpha) of the action expert")
    discrete_state_input: bool = Field(True, description="pi0.5: the discretised state in the prompt "
                                       "(openpi pi05_libero: False, no state input)")
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"

    @classmethod
    def parse(cls, spec: VLASpec) -> PolicyOptions:
        moved = [f"{key} -> {MOVED_OPTIONS[key]}" for key in spec.options if key in MOVED_OPTIONS]
        if moved:
            raise RocketError(f"{spec.name} options moved to the training spec: {', '.join(moved)}")
        try:
            return cls.model_validate(spec.options)
        except ValidationError as exc:
            from rocket_core.specs import format_validation_error

            raise RocketError(format_validation_error(exc, f"{spec.name} options")) from None

    def torch_dtype(self) -> torch.dtype:
        import torch

        if self.dtype == "auto":
            return torch.bfloat16 if torch.cuda.is_available() else torch.float32
        return getattr(torch, self.dtype)


def arch_for(spec: VLASpec, default_checkpoint: str) -> Arch:
    """The architecture `spec` describes, from configuration only (no weights are read)."""
    if spec.preset == "tiny":
        arch = TINY_ARCH
    elif spec.preset is not None:
        raise RocketError(f"unknown {spec.name} preset {spec.preset!r}; use 'tiny' or no preset (the real checkpoint)")
    else:
        local = Path(spec.checkpoint or default_checkpoint)
        arch = arch_from_config(json.loads((local / "config.json").read_text())) if (local / "config.json").is_file() \
            else BASE_ARCH
    opts = PolicyOptions.parse(spec)
    arch = replace(arch, chunk_size=opts.chunk_size or arch.chunk_size, num_steps=opts.num_steps or arch.num_steps)
    arch.check()
    return arch


def vla_info(arch: Arch, opts: PolicyOptions, normalization: str = "mean_std") -> VLAInfo:
    """Index convention, written once here.

    Our index space per convention (L = VLM blocks):
    * `pytorch` (default; reference PyTorch `all_hidden_states[k]`, the pi0.5 LIBERO runs): k in 0..L-1 is
      the INPUT of block k (0 = prefix embeddings), k = L (and -1) is the final-norm output. This equals
      transformers' `output_hidden_states` tuple, whose last entry is already final-normed.
    * `jax` (reference JAX, the pi0 RoboTwin runs): k in 0..L-1 is the OUTPUT of block k, before the final
      norm; -1 = L-1, the raw last block. The same numbers therefore select states one block later.
    `layer_offset` is what a block number needs added to become an index (balanced layer selection).

    Data facts: the chunk is the model's; state and actions are zero-padded to the max dims, so any dataset
    dims up to them are accepted (`state_dim` None; `action_dim` only when the option pins it).
    """
    depth = arch.vlm.depth
    top = depth if opts.index_convention == "pytorch" else depth - 1
    paper = depth == GEMMA_2B.depth
    defaults = PAPER_LAYERS if paper else ((1, -1), (1, -1))
    return VLAInfo(
        num_blocks=depth, hidden_size=arch.vlm.width, num_vision_tokens=opts.num_cameras * arch.tokens_per_image,
        max_layer_index=top, layer_offset=1 if opts.index_convention == "pytorch" else 0, minus_one=top,
        num_images=opts.num_cameras, default_layers=defaults, chunk_size=arch.chunk_size, action_dim=opts.action_dim,
        state_dim=None, normalization=normalization, eval_family="openpi",
    )


def blocks_applied(index: int, depth: int, convention: str) -> int | None:
    """How many VLM blocks a resolved index has passed (None = the final-norm output)."""
    if convention == "jax":
        return index + 1
    return None if index == depth else index


