"""The openvla plugin's options, presets and layer defaults: configuration only, no torch.

`rocket plugins` and `info()` callers read these without loading any model code.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rocket_core.errors import RocketError

if TYPE_CHECKING:
    from rocket_core.specs import VLASpec

DEFAULT_CHECKPOINT = "openvla/openvla-7b"
LORA_DIR = "lora_adapter"
ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.model", "*checkpoint.pt", f"{LORA_DIR}/*")
LLM_LINEAR = r"language_model\.model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
ALL_LINEAR = r"(vision_backbone\..*\.(qkv|proj|fc1|fc2|q|kv)|projector\.fc[123]|" + LLM_LINEAR + ")"
# The byte tokenizer of the tiny preset (`processor.ByteTokenizer`): 512 base ids, padding id 512.
BYTE_BASE_VOCAB = 512
BYTE_PAD_ID = 512

# The public openvla/openvla-7b config.json without its norm_stats; everything else about the 7B model
# follows from it (the Llama sizes are LlamaConfig's defaults, which are Llama-2-7B's).
OPENVLA_7B_CONFIG: dict[str, Any] = {
    "arch_specifier": "no-align+fused-gelu-mlp",
    "use_fused_vision_backbone": True,
    "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
    "timm_override_act_layers": [None, None],
    "image_sizes": [224, 224],
    "image_resize_strategy": "resize-naive",
    "n_action_bins": 256,
    "pad_to_multiple_of": 64,
    "pad_token_id": 32000,
    "text_config": {"model_type": "llama", "pad_token_id": 32000, "vocab_size": 32064},
}
# The tiny preset: the real architecture, shrunk (2 cameras of 56 px = 2 x 16 patches, 4 Llama layers).
# ViT sizes travel as `timm_create_model_kwargs`, as in the reference fixtures, so a saved tiny
# config.json rebuilds the same model.
TINY_CONFIG: dict[str, Any] = {
    **OPENVLA_7B_CONFIG,
    "image_sizes": [56, 56],
    "pad_token_id": BYTE_PAD_ID,
    "text_config": {
        "pad_token_id": BYTE_PAD_ID,
        "vocab_size": BYTE_BASE_VOCAB + 64,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "rms_norm_eps": 1e-6,
        # Random-init std 1/sqrt(width), not Llama's 0.02 (tuned for width 4096): at width 64, 0.02 leaves
        # attention near uniform, so frame-specific tokens (proprio, patches) barely reach the action slots.
        "initializer_range": 64**-0.5,
    },
    "timm_create_model_kwargs": {
        "vit_large_patch14_reg4_dinov2.lvd142m": {"embed_dim": 32, "depth": 3, "num_heads": 2},
        "vit_so400m_patch14_siglip_224": {"embed_dim": 48, "depth": 3, "num_heads": 3},
    },
}
# The benchmark preset (benchmarks/align_step.py): Llama 1024 x 12 layers x 16 heads, ViTs of depth 4 and
# width 256 at 224 px, so two cameras give 512 vision tokens as at paper scale.
BENCH_CONFIG: dict[str, Any] = {
    **TINY_CONFIG,
    "image_sizes": [224, 224],
    "text_config": {**TINY_CONFIG["text_config"], "hidden_size": 1024, "intermediate_size": 2816,
                    "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 16,
                    "initializer_range": 1024**-0.5},
    "timm_create_model_kwargs": {
        "vit_large_patch14_reg4_dinov2.lvd142m": {"embed_dim": 256, "depth": 4, "num_heads": 4},
        "vit_so400m_patch14_siglip_224": {"embed_dim": 256, "depth": 4, "num_heads": 4},
    },
}
PRESETS: dict[str, dict[str, Any]] = {"tiny": TINY_CONFIG, "bench": BENCH_CONFIG}

class OpenVLAOptions(BaseModel):
    """`VLASpec.options` of the openvla plugin (LIBERO / ROCKET defaults)."""

    model_config = ConfigDict(extra="forbid")

    head: Literal["l1", "discrete"] = Field("l1", description="l1: OFT parallel decoding; discrete: original 256-bin tokens")
    num_images: int = Field(2, ge=1, description="cameras per sample (third-person + wrist)")
    chunk: int = Field(8, ge=1, description="actions per chunk (NUM_ACTIONS_CHUNK)")
    action_dim: int = Field(7, ge=1)
    proprio_dim: int = Field(8, ge=1)
    use_proprio: bool = True
    shift_vision_tokens: bool = Field(True, description="reference gain_feat_1move: read each patch's next position")
    bidirectional: bool = Field(True, description="OFT fork attention (every token sees every non-pad token)")
    lora_scope: Literal["llm", "all-linear"] = Field("llm", description="all-linear = the reference (ViTs + projector too)")
    proprio_fp32: bool = Field(False, description="keep the proprio projector in float32 (the reference) in a bf16 model")
    train_vision_backbone: bool = False
    dtype: Literal["float32", "bfloat16"] | None = Field(None, description="None: float32 for presets, bfloat16 for weights")
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    unnorm_key: str | None = None
    normalization: Literal["bounds_q99", "bounds"] = "bounds_q99"
    checkpoint_step: int | None = Field(None, description="which action_head--<step>_checkpoint.pt when several")
    base_checkpoint: str = Field(DEFAULT_CHECKPOINT, description="base weights for a folder holding only a LoRA adapter")

    @property
    def uses_proprio(self) -> bool:
        return self.use_proprio and self.head == "l1"


def parse_options(spec: VLASpec) -> OpenVLAOptions:
    try:
        opts = OpenVLAOptions.model_validate(spec.options)
    except ValidationError as exc:
        from rocket_core.specs import format_validation_error

        raise RocketError(format_validation_error(exc, "openvla options")) from None
    if opts.head == "discrete" and opts.num_images != 1:
        raise RocketError("the discrete-token OpenVLA takes one image; set options.num_images=1 with head='discrete'")
    return opts


def paper_layers(num_layers: int) -> tuple[int, ...]:
    """ROCKET's pairs: 2, 4, ..., 18 (capped below the last layer) and -1."""
    return (*range(2, min(19, num_layers - 1), 2), -1)
