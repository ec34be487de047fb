"""What pi0 and pi0.5 share: PaliGemma prefix, joint VLM+expert layers, flow matching, indices, loading.

Both policies are PaliGemma (SigLIP + Gemma-2B) plus a smaller Gemma "action expert" that attends jointly
with the VLM layer by layer. They differ only in the suffix (pi0: state token + action/time MLP; pi0.5:
action tokens, time through adaptive RMSNorm, state as text in the prefix). Everything else lives here once.

Why our own joint layer loop instead of transformers' cache-based PI0 forward: the loop gives the per-layer
prefix states of the very forward that computes the action loss (the ROCKET alignment needs them), and it
stays correct under gradient checkpointing, where transformers drops the KV cache that the expert reads.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import GemmaConfig, PaliGemmaConfig
from transformers.models.gemma.modeling_gemma import apply_rotary_pos_emb

from rocket_core.align.tokens import downsample_padding_mask, pi0_align_mask
from rocket_core.contracts import Batch, VLAAdapter, VLAInfo, VLAOutput
from rocket_core.errors import RocketError
from rocket_core.hub import resolve_weights
from rocket_core.specs import TrainingSpec, VLASpec, format_validation_error

# openpi/LeRobot's additive mask value: far below any score, yet leaves bf16 headroom (finfo.min would overflow).
MASK_VALUE = -2.3819763e38
PALIGEMMA_TOKENIZER = "google/paligemma-3b-pt-224"
MAX_CAMERAS = 3
LORA_LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Options that became TrainingSpec fields (the trainer passes them to `configure_training`).
MOVED_OPTIONS = {"finetune": "training.finetune", "lora_rank_vlm": "training.lora.rank",
                 "gradient_checkpointing": "training.gradient_checkpointing"}
# The paper's pairs (ROCKET-ALGORITHM.md section 7), valid for the 18-block Gemma-2B.
PAPER_LAYERS = ((2, 3, 4, 5, 6, 7, 8, 9, 10, -1), (2, 4, 6, 8, 10, 12, 14, 16, 18, -1))


# ----------------------------------------------------------------------------------------------- sizes


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
        v, s = self.vlm, self.vision
        return PaliGemmaConfig(
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
        e = self.expert
        return GemmaConfig(
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


# ------------------------------------------------------------------------------------------- spec options


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
            raise RocketError(format_validation_error(exc, f"{spec.name} options")) from None

    def torch_dtype(self) -> torch.dtype:
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
        state_dim=None, normalization=normalization,
    )


def blocks_applied(index: int, depth: int, convention: str) -> int | None:
    """How many VLM blocks a resolved index has passed (None = the final-norm output)."""
    if convention == "jax":
        return index + 1
    return None if index == depth else index


# ----------------------------------------------------------------------------------------------- weights


def load_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """All `*.safetensors` shards of a folder."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise RocketError(f"no .safetensors weights in '{folder}'; point checkpoint at a LeRobot pi0/pi0.5 folder")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


# ---------------------------------------------------------------------------------------------- tokenizer


class ByteTokenizer:
    """Offline stand-in for the tiny preset: UTF-8 bytes + 2 (0 = pad, 1 = BOS). Needs vocab >= 258."""

    padding_side = "right"

    def __call__(self, texts: list[str], max_length: int, **_: Any) -> dict[str, torch.Tensor]:
        ids = torch.zeros(len(texts), max_length, dtype=torch.long)
        mask = torch.zeros(len(texts), max_length, dtype=torch.bool)
        for row, text in enumerate(texts):
            seq = [1, *(b + 2 for b in text.encode())][:max_length]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = True
        return {"input_ids": ids, "attention_mask": mask}


def load_tokenizer(name: str) -> Any:
    """The PaliGemma tokenizer (right padding), `bytes` for the built-in one, or a clear line saying what to do."""
    if name == "bytes":
        return ByteTokenizer()
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except OSError as exc:
        gated = "gated" in str(exc).lower() or "401" in str(exc) or "403" in str(exc)
        why = "it is gated: accept its licence on huggingface.co and run `hf auth login`" if gated else \
            "it is not cached locally (HF_HUB_OFFLINE?): accept its licence on huggingface.co, run " \
            "`hf auth login`, and run once online"
        raise RocketError(
            f"cannot load tokenizer '{name}': {why}; or set the VLA option tokenizer=<local folder>"
        ) from None
    tok.padding_side = "right"
    return tok


def tokenize(tokenizer: Any, texts: list[str], max_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    out = tokenizer(texts, max_length=max_len, padding="max_length", truncation=True, return_tensors="pt")
    return out["input_ids"].to(device), out["attention_mask"].to(device).bool()


# ----------------------------------------------------------------------------------------- preprocessing


def resize_with_pad(images: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, h, w) in [0, 1] -> (N, 3, size, size): aspect kept, bilinear, clamped to [0, 1], centred 0 padding.

    LeRobot's (openpi's) `resize_with_pad_torch` on float input, applied before the `*2-1` scaling, so the
    padding ends up at -1. Also returns the (N, size, size) bool mask of real pixels for the alignment mask.
    """
    n, _, h, w = images.shape
    valid = torch.ones(n, size, size, dtype=torch.bool, device=images.device)
    if (h, w) == (size, size):
        return images, valid
    ratio = max(w / size, h / size)
    rh, rw = max(1, int(h / ratio)), max(1, int(w / ratio))
    resized = F.interpolate(images, size=(rh, rw), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    top, left = (size - rh) // 2, (size - rw) // 2
    out = images.new_zeros(n, 3, size, size)
    out[:, :, top : top + rh, left : left + rw] = resized
    valid.zero_()
    valid[:, top : top + rh, left : left + rw] = True
    return out, valid


def preprocess_images(
    images: torch.Tensor, image_masks: torch.Tensor, num_slots: int, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch images (B, n, 3, H, W) in [0, 1] -> pixel values (B, slots, 3, S, S) in [-1, 1], slot masks, pixel masks.

    Slots beyond the batch's cameras are absent (all -1, mask False), as LeRobot feeds missing cameras.
    """
    b, n = images.shape[:2]
    if n > num_slots:
        raise RocketError(f"the batch has {n} cameras but the VLA has {num_slots} image slots; set option num_cameras")
    if images.ndim != 5 or images.shape[2] != 3:
        raise RocketError(f"images must be (B, n_cam, 3, H, W) in [0, 1], got {tuple(images.shape)}")
    pixels, valid = resize_with_pad(images.flatten(0, 1), size)
    pixels = pixels.view(b, n, 3, size, size) * 2.0 - 1.0
    valid = valid.view(b, n, size, size)
    masks = image_masks.bool()
    if n < num_slots:
        pad = num_slots - n
        pixels = torch.cat([pixels, pixels.new_full((b, pad, 3, size, size), -1.0)], 1)
        valid = torch.cat([valid, valid.new_zeros(b, pad, size, size)], 1)
        masks = torch.cat([masks, masks.new_zeros(b, pad)], 1)
    pixels = torch.where(masks[:, :, None, None, None], pixels, torch.full_like(pixels, -1.0))
    return pixels, masks, valid


def pad_last(x: torch.Tensor, dim: int, what: str) -> torch.Tensor:
    """Zero-pad the last dimension to the model's max dim (state / action)."""
    if x.shape[-1] > dim:
        raise RocketError(f"{what} has {x.shape[-1]} dims but the model takes at most {dim}; check the dataset")
    return F.pad(x, (0, dim - x.shape[-1]))


# ------------------------------------------------------------------------------------------ flow matching


def time_embedding(t: torch.Tensor, dim: int, min_period: float, max_period: float) -> torch.Tensor:
    """Sin/cos embedding of the flow time; float64 (float32 on MPS-like devices) for LeRobot parity."""
    dtype = torch.float64 if t.device.type in ("cpu", "cuda") else torch.float32
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=dtype, device=t.device)
    period = min_period * (max_period / min_period) ** fraction
    angle = (2 * math.pi / period)[None, :] * t.to(dtype)[:, None]
    return torch.cat([angle.sin(), angle.cos()], dim=1).float()


def sample_time(arch: Arch, batch: int, device: torch.device) -> torch.Tensor:
    beta = torch.distributions.Beta(torch.tensor(arch.beta_alpha), torch.tensor(arch.beta_beta))
    return (beta.sample((batch,)) * arch.time_scale + arch.time_offset).to(device)


# ---------------------------------------------------------------------------------- attention / layers


def attention_mask(pad: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """(B, N) validity and block ids -> (B, N, N) bool: query i sees key j iff both valid and block_j <= block_i.

    A block starts wherever the openpi `att_masks` entry is 1 (cumsum), so earlier blocks never see later ones.
    """
    return (blocks[:, None, :] <= blocks[:, :, None]) & pad[:, None, :] & pad[:, :, None]


class AdaptiveRMSNorm(nn.Module):
    """pi0.5 expert norm: RMSNorm modulated by the time condition; returns (y, gate) for a gated residual."""

    def __init__(self, dim: int, cond_dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.dense = nn.Linear(cond_dim, 3 * dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift, gate = self.dense(cond)[:, None, :].chunk(3, dim=-1)
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * (1 + scale.float()) + shift.float()).to(x.dtype), gate


def apply_norm(norm: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Plain Gemma RMSNorm (no gate) or the adaptive one."""
    return norm(x, cond) if isinstance(norm, AdaptiveRMSNorm) else (norm(x), None)


def _gated(x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
    return x + update if gate is None else x + update * gate


def joint_layer(
    layers: Sequence[nn.Module],
    hiddens: Sequence[torch.Tensor],
    ropes: Sequence[tuple[torch.Tensor, torch.Tensor]],
    conds: Sequence[torch.Tensor | None],
    mask: torch.Tensor,
    past: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """One Gemma block over several streams (VLM prefix, expert suffix) attending jointly.

    Each stream uses its own block's weights; queries of all streams attend over the keys of `past` (cached
    prefix) followed by every stream's keys, under `mask` (B, Q, K) bool. Returns the new states and this
    call's (K, V) for caching.
    """
    qs, ks, vs, gates = [], [], [], []
    for layer, h, (cos, sin), cond in zip(layers, hiddens, ropes, conds):
        y, gate = apply_norm(layer.input_layernorm, h, cond)
        attn = layer.self_attn
        shape = (*h.shape[:-1], -1, attn.head_dim)
        q = attn.q_proj(y).view(shape).transpose(1, 2)
        k = attn.k_proj(y).view(shape).transpose(1, 2)
        v = attn.v_proj(y).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        qs.append(q), ks.append(k), vs.append(v), gates.append(gate)
    new_kv = torch.cat(ks, 2), torch.cat(vs, 2)
    k, v = new_kv if past is None else (torch.cat([past[0], new_kv[0]], 2), torch.cat([past[1], new_kv[1]], 2))
    q = torch.cat(qs, 2)
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    v = v.repeat_interleave(groups, dim=1)
    bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, MASK_VALUE)[:, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=layers[0].self_attn.scaling)
    out = out.transpose(1, 2).flatten(2)
    outs = []
    for layer, h, cond, gate, o in zip(layers, hiddens, conds, gates, out.split([x.shape[1] for x in hiddens], 1)):
        h = _gated(h, layer.self_attn.o_proj(o), gate)
        y, gate = apply_norm(layer.post_attention_layernorm, h, cond)
        outs.append(_gated(h, layer.mlp(y), gate))
    return outs, new_kv


@dataclass
class StackOutput:
    """Per-stream final (un-normed) states, captured prefix states {blocks applied: (B, V, D)}, per-layer KV."""

    hiddens: list[torch.Tensor]
    captured: dict[int, torch.Tensor]
    kv: list[tuple[torch.Tensor, torch.Tensor]]


def run_stack(
    stacks: Sequence[Sequence[nn.Module]],
    hiddens: Sequence[torch.Tensor],
    ropes: Sequence[tuple[torch.Tensor, torch.Tensor]],
    conds: Sequence[torch.Tensor | None],
    mask: torch.Tensor,
    past: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    capture: Sequence[int] = (),
    capture_tokens: int = 0,
    use_checkpoint: bool = False,
) -> StackOutput:
    """All blocks; stream 0's first `capture_tokens` states are kept after every block count in `capture`."""
    hiddens = list(hiddens)
    captured = {0: hiddens[0][:, :capture_tokens]} if 0 in capture else {}
    kvs = []
    for i in range(len(stacks[0])):
        layers = [stack[i] for stack in stacks]
        past_i = None if past is None else past[i]
        if use_checkpoint and torch.is_grad_enabled():
            hiddens, kv = checkpoint(joint_layer, layers, hiddens, ropes, conds, mask, past_i, use_reentrant=False)
        else:
            hiddens, kv = joint_layer(layers, hiddens, ropes, conds, mask, past_i)
        kvs.append(kv)
        if i + 1 in capture:
            captured[i + 1] = hiddens[0][:, :capture_tokens]
    return StackOutput(hiddens, captured, kvs)


# ------------------------------------------------------------------------------------------------ policy


@dataclass
class FlowResult:
    """One training forward at given noise and time (parity tests read every field)."""

    loss_per_element: torch.Tensor  # (B, chunk, max_action_dim)
    velocity: torch.Tensor
    vision_states: dict[int, torch.Tensor]  # {resolved index: (B, V, D)}
    prefix_pad: torch.Tensor


class PaliGemmaFlowPolicy(nn.Module):
    """The shared pi0 / pi0.5 body. Subclasses define the VLM/expert modules, the suffix and the prompt.

    A subclass also provides `action_out_proj` (expert width -> max_action_dim) and `load(folder)`.
    """

    action_out_proj: nn.Linear
    arch: Arch
    opts: PolicyOptions
    info: VLAInfo
    default_max_token_len: ClassVar[int]

    def __init__(self, arch: Arch, opts: PolicyOptions, info: VLAInfo) -> None:
        super().__init__()
        self.arch, self.opts, self.info = arch, opts, info
        self._tokenizer: Any = None
        self.tokenizer_name = opts.tokenizer or PALIGEMMA_TOKENIZER
        self.use_checkpoint = False

    # -- what a subclass provides
    @property
    def vlm(self) -> nn.Module:  # transformers PaliGemmaModel
        raise NotImplementedError

    @property
    def expert_layers(self) -> Sequence[nn.Module]:
        raise NotImplementedError

    @property
    def expert_norm(self) -> nn.Module:
        raise NotImplementedError

    def embed_suffix(
        self, state: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(suffix embeddings, block-start flags (S,), expert condition or None)."""
        raise NotImplementedError

    def prompts(self, batch: Batch) -> list[str]:
        raise NotImplementedError

    # -- training facts
    @property
    def lora_target_modules(self) -> str:
        """peft `target_modules` regex (full match): attention and MLP projections of both Gemma stacks."""
        vlm_scope, expert_scope = self.lora_scopes()
        return rf"^({vlm_scope}|{expert_scope})\.layers\.\d+\.(self_attn|mlp)\.({'|'.join(LORA_LEAVES)})$"

    @property
    def fully_trained_modules(self) -> tuple[str, ...]:
        """Modules trained in full under LoRA (openpi freezes only the two Gemma stacks): vision, projections."""
        raise NotImplementedError

    def load(self, folder: Path) -> None:
        """Load a LeRobot-format checkpoint folder; any missing or unexpected key is an error."""
        raise NotImplementedError

    def lora_scopes(self) -> tuple[str, str]:
        """Module-name prefixes of the VLM language model and of the expert (where LoRA goes)."""
        raise NotImplementedError

    # -- tokenizer
    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_name)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value: Any) -> None:
        self._tokenizer = value

    # -- prefix
    def embed_prefix(
        self, pixel_values: torch.Tensor, image_masks: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[image tokens of every slot (contiguous per camera), text tokens] and their validity.

        Written here rather than transformers' `PI0Model.embed_prefix`, which re-packs present cameras into
        the first slots: a missing first camera would put the present camera's tokens under a False mask.
        """
        b, n = image_masks.shape
        feats = self.vlm.get_image_features(pixel_values.flatten(0, 1).to(self.dtype)).pooler_output
        feats = feats.reshape(b, n * feats.shape[1], feats.shape[2])
        text = self.vlm.language_model.embed_tokens(tokens)
        img_pad = image_masks.bool().repeat_interleave(feats.shape[1] // n, dim=1)
        return torch.cat([feats, text.to(feats.dtype)], 1), torch.cat([img_pad, token_mask.bool()], 1)

    @property
    def dtype(self) -> torch.dtype:
        return self.action_out_proj.weight.dtype

    @staticmethod
    def _layout(prefix_pad: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention mask (B, N, N) and positions over [prefix, suffix]; padding does not advance positions."""
        b, n_suffix = prefix_pad.shape[0], starts.shape[0]
        pad = torch.cat([prefix_pad, prefix_pad.new_ones(b, n_suffix)], 1)
        blocks = torch.cat([starts.new_zeros(prefix_pad.shape[1]), starts]).cumsum(0)[None].expand(b, -1)
        return attention_mask(pad, blocks), pad.long().cumsum(1) - 1

    def _velocity(self, suffix_out: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        final = apply_norm(self.expert_norm, suffix_out, cond)[0]
        return self.action_out_proj(final[:, -self.arch.chunk_size :]).float()

    def _rope(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vlm.language_model.rotary_emb(x, position_ids=positions)

    # -- forward at fixed noise / time
    def flow_forward(
        self,
        pixel_values: torch.Tensor,
        image_masks: torch.Tensor,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
        state: torch.Tensor,
        actions: torch.Tensor,
        layers: Sequence[int] = (),
        noise: torch.Tensor | None = None,
        time: torch.Tensor | None = None,
    ) -> FlowResult:
        """One joint VLM+expert pass: flow-matching loss and the prefix vision states of `layers`.

        `state`/`actions` are normalised and already padded to the max dims; `layers` are resolved indices.
        """
        b, device = actions.shape[0], actions.device
        noise = torch.randn_like(actions) if noise is None else noise
        time = sample_time(self.arch, b, device) if time is None else time
        t = time[:, None, None].to(actions.dtype)
        x_t = t * noise + (1 - t) * actions
        prefix, prefix_pad = self.embed_prefix(pixel_values, image_masks, tokens, token_mask)
        suffix, starts, cond = self.embed_suffix(state, x_t.to(self.dtype), time)
        mask, positions = self._layout(prefix_pad, starts)
        n_prefix = prefix.shape[1]
        ropes = [self._rope(prefix, positions[:, :n_prefix]), self._rope(suffix, positions[:, n_prefix:])]
        depth = self.arch.vlm.depth
        wanted = {idx: blocks_applied(idx, depth, self.opts.index_convention) for idx in layers}
        v = self.info.num_vision_tokens
        out = run_stack(
            [self.vlm.language_model.layers, self.expert_layers], [prefix, suffix], ropes, [None, cond], mask,
            capture=[n for n in wanted.values() if n is not None], capture_tokens=v, use_checkpoint=self.use_checkpoint,
        )
        velocity = self._velocity(out.hiddens[1], cond)
        states = {
            idx: out.captured[n] if n is not None else self.vlm.language_model.norm(out.hiddens[0][:, :v])
            for idx, n in wanted.items()
        }
        loss = F.mse_loss(velocity, (noise - actions).float(), reduction="none")
        return FlowResult(loss, velocity, states, prefix_pad)

    @torch.no_grad()
    def sample(
        self,
        pixel_values: torch.Tensor,
        image_masks: torch.Tensor,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
        state: torch.Tensor,
        noise: torch.Tensor | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """Euler integration from t = 1 to 0; the prefix runs once and its K/V are reused every step."""
        b = state.shape[0]
        steps = num_steps or self.arch.num_steps
        shape = (b, self.arch.chunk_size, self.arch.max_action_dim)
        x = torch.randn(shape, device=state.device) if noise is None else noise.float()
        prefix, prefix_pad = self.embed_prefix(pixel_values, image_masks, tokens, token_mask)
        n_prefix = prefix.shape[1]
        mask, positions = self._layout(prefix_pad, prefix_pad.new_zeros(0, dtype=torch.long))
        pre = run_stack([self.vlm.language_model.layers], [prefix], [self._rope(prefix, positions)], [None], mask)
        dt = -1.0 / steps
        for k in range(steps):
            time = torch.full((b,), 1.0 + k * dt, device=state.device)
            suffix, starts, cond = self.embed_suffix(state, x.to(self.dtype), time)
            mask, positions = self._layout(prefix_pad, starts)
            rope = self._rope(suffix, positions[:, n_prefix:])
            out = run_stack([self.expert_layers], [suffix], [rope], [cond], mask[:, n_prefix:], past=pre.kv)
            x = x + dt * self._velocity(out.hiddens[0], cond)
        return x

    # -- the rocket contract
    def _prepare(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        device = self.action_out_proj.weight.device
        size = self.arch.vision["image_size"]
        pixels, masks, valid = preprocess_images(
            batch["images"].to(device).float(), batch["image_masks"].to(device), self.opts.num_cameras, size
        )
        tokens, token_mask = tokenize(
            self.tokenizer, self.prompts(batch), self.opts.max_token_len or self.default_max_token_len, device
        )
        state = pad_last(batch["state"].to(device).float(), self.arch.max_state_dim, "state")
        return pixels, masks, valid, tokens, token_mask, state

    def forward_align(self, batch: Batch, layers: Sequence[int]) -> VLAOutput:
        """Action loss (mean over batch, steps and the real action dims, as LeRobot) and the vision states.

        The token mask is each camera's validity per token AND the resize padding downsampled to the token grid.
        """
        pixels, masks, valid, tokens, token_mask, state = self._prepare(batch)
        actions = batch["actions"].to(state.device).float()
        if actions.shape[1] != self.arch.chunk_size:
            raise RocketError(
                f"the batch has action chunks of {actions.shape[1]} steps but the VLA predicts {self.arch.chunk_size}; "
                "set the VLA option chunk_size or the dataset's chunk length"
            )
        result = self.flow_forward(
            pixels, masks, tokens, token_mask, state, pad_last(actions, self.arch.max_action_dim, "actions"), layers
        )
        action_loss = result.loss_per_element[..., : actions.shape[-1]].mean()
        token_mask_out = pi0_align_mask(masks, downsample_padding_mask(valid, self.arch.token_grid))
        return VLAOutput(action_loss, result.vision_states, token_mask_out)

    def forward(self, batch: Batch, layers: Sequence[int] = ()) -> VLAOutput:
        return self.forward_align(batch, layers)

    def predict_action(self, batch: Batch, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(B, chunk, action_dim) normalised actions by flow sampling (`action_dim` option; default all dims)."""
        pixels, masks, _, tokens, token_mask, state = self._prepare(batch)
        x = self.sample(pixels, masks, tokens, token_mask, state, noise)
        return x[..., : self.opts.action_dim or self.arch.max_action_dim]

    # -- training modes
    def configure_training(self, training: TrainingSpec) -> None:
        """The contract's training switch (the trainer calls it once, right after `build`).

        `training.finetune="lora"`: LoRA on `lora_target_modules`, the VLM's with `training.lora` (rank, alpha,
        dropout), the expert's with rank = alpha = option `lora_rank_expert` (openpi's gemma_300m_lora);
        `fully_trained_modules` train in full, the two Gemma stacks stay frozen. `"full"`: every parameter.
        `training.gradient_checkpointing`: every joint layer and SigLIP layer is recomputed in backward.
        """
        self.use_checkpoint = training.gradient_checkpointing
        tower = self.vlm.vision_tower
        if training.gradient_checkpointing:
            tower.activation_checkpointing_enable({"use_reentrant": False})
        elif tower.is_activation_checkpointing:
            tower.activation_checkpointing_disable()
        if training.finetune == "full":
            self.requires_grad_(True)
            return
        if any("lora_" in name for name, _ in self.named_parameters()):
            raise RocketError("LoRA is already applied to this model; call configure_training once per built model")
        self._inject_lora(training.lora.rank, training.lora.alpha, training.lora.dropout)

    def _inject_lora(self, rank: int, alpha: float, dropout: float) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        expert = {rf"^{self.lora_scopes()[1]}\..*": self.opts.lora_rank_expert}
        config = LoraConfig(
            r=rank, lora_alpha=alpha, target_modules=self.lora_target_modules, rank_pattern=expert,
            alpha_pattern=expert, lora_dropout=dropout,
        )
        inject_adapter_in_model(config, self)
        for name, param in self.named_parameters():
            if "lora_" in name and param.dtype in (torch.bfloat16, torch.float16):
                param.data = param.data.float()  # as peft's get_peft_model: float32 adapters on a half model
            param.requires_grad = "lora_" in name or name.startswith(self.fully_trained_modules)


class PaliGemmaFlowAdapter(VLAAdapter):
    """`info` / `build` for both plugins; a subclass names its policy class, default checkpoint and tokenizer length."""

    policy_cls: ClassVar[type[PaliGemmaFlowPolicy]]
    default_checkpoint: ClassVar[str]
    normalization: ClassVar[str]  # the data normalisation the policy was trained with (openpi / LeRobot)

    @classmethod
    def info(cls, spec: VLASpec) -> VLAInfo:
        return vla_info(arch_for(spec, cls.default_checkpoint), PolicyOptions.parse(spec), cls.normalization)

    @classmethod
    def build(cls, spec: VLASpec) -> PaliGemmaFlowPolicy:
        """`preset="tiny"`: random init (seeded by the caller); else the checkpoint, downloaded if needed.

        Every parameter keeps `requires_grad`; `configure_training` decides what trains.
        """
        opts = PolicyOptions.parse(spec)
        folder = None
        if spec.preset is None:
            folder = resolve_weights(spec.checkpoint or cls.default_checkpoint, spec.revision,
                                     ("*.json", "model*.safetensors"), pull_name=cls.name)
            spec = spec.model_copy(update={"checkpoint": str(folder)})
        arch = arch_for(spec, cls.default_checkpoint)
        model = cls.policy_cls(arch, opts, vla_info(arch, opts, cls.normalization))
        model.tokenizer_name = opts.tokenizer or ("bytes" if spec.preset == "tiny" else PALIGEMMA_TOKENIZER)
        if folder is not None:
            model.load(folder)
        model.to(opts.torch_dtype())
        return model
