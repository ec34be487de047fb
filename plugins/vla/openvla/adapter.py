"""The `openvla` VLA plugin: OpenVLA-7B in the OpenVLA-OFT setting ROCKET trains, natively.

Layer indices (VLAInfo): index k is transformers' `hidden_states[k]`: 0 = embeddings, k = the output of
decoder layer k-1 (0-based), L = the final-RMSNorm output (L = 32 for the 7B). `-1` means L-1 (the
output of the second-to-last layer, not the final norm), as the reference resolves it.

Sequence (OFT): `[BOS, patches of every camera, proprio, prompt..., "▁", chunk*action_dim zeroed action
slots, stop]`. The L1 head reads the final-norm state one position before each action slot (the
reference's causal-shift convention), reshaped to (B, chunk, action_dim*D).
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import LlamaForCausalLM
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plugins.vla.openvla import processor as proc
from plugins.vla.openvla.modeling import (
    IGNORE_INDEX,
    OPENVLA_7B_CONFIG,
    L1RegressionActionHead,
    OpenVLA,
    OpenVLAConfig,
    ProprioProjector,
)
from plugins.vla.openvla.weights import (
    LORA_DIR,
    find_part_file,
    load_lora_adapter,
    load_openvla_weights,
    load_part,
    read_part,
    save_lora_adapter,
    save_parts,
    shard_files,
)
from rocket_core.align.tokens import openvla_vision_slice
from rocket_core.contracts import Batch, VLAAdapter, VLAInfo, VLAOutput
from rocket_core.errors import RocketError
from rocket_core.hub import local_path, resolve_weights
from rocket_core.specs import TrainingSpec, VLASpec, format_validation_error

DEFAULT_CHECKPOINT = "openvla/openvla-7b"
ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.model", "*checkpoint.pt", f"{LORA_DIR}/*")
LLM_LINEAR = r"language_model\.model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
ALL_LINEAR = r"(vision_backbone\..*\.(qkv|proj|fc1|fc2|q|kv)|projector\.fc[123]|" + LLM_LINEAR + ")"

# The tiny preset: the real architecture, shrunk (2 cameras of 56 px = 2 x 16 patches, 4 Llama layers).
# ViT sizes travel as `timm_create_model_kwargs`, as in the reference fixtures, so a saved tiny
# config.json rebuilds the same model.
TINY_CONFIG: dict[str, Any] = {
    **OPENVLA_7B_CONFIG,
    "image_sizes": [56, 56],
    "pad_token_id": proc.ByteTokenizer.pad_token_id,
    "text_config": {
        "pad_token_id": proc.ByteTokenizer.pad_token_id,
        "vocab_size": proc.ByteTokenizer.base_vocab + 64,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "rms_norm_eps": 1e-6,
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
                    "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 16},
    "timm_create_model_kwargs": {
        "vit_large_patch14_reg4_dinov2.lvd142m": {"embed_dim": 256, "depth": 4, "num_heads": 4},
        "vit_so400m_patch14_siglip_224": {"embed_dim": 256, "depth": 4, "num_heads": 4},
    },
}
PRESETS: dict[str, dict[str, Any]] = {"tiny": TINY_CONFIG, "bench": BENCH_CONFIG}
# transformers renamed the KV-cache argument `past_key_values` -> `cache` (the old name warns until 5.40).
_CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


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
        raise RocketError(format_validation_error(exc, "openvla options")) from None
    if opts.head == "discrete" and opts.num_images != 1:
        raise RocketError("the discrete-token OpenVLA takes one image; set options.num_images=1 with head='discrete'")
    return opts


def _cached_config(spec: VLASpec) -> dict[str, Any]:
    """config.json of the checkpoint if it is on disk (local folder or HF cache), else the 7B's.

    Every OpenVLA fine-tune shares the 7B architecture, so `info()` needs no download.
    """
    checkpoint = spec.checkpoint or DEFAULT_CHECKPOINT
    folder = local_path(checkpoint)
    if folder is not None:
        path: Path | None = folder / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(checkpoint, "config.json", revision=spec.revision)
        path = Path(cached) if isinstance(cached, str) else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else OPENVLA_7B_CONFIG


def model_config(spec: VLASpec, opts: OpenVLAOptions, hf_config: dict[str, Any] | None = None) -> OpenVLAConfig:
    if spec.preset is not None:
        if spec.preset not in PRESETS:
            raise RocketError(f"unknown openvla preset '{spec.preset}'; available: {', '.join(PRESETS)}")
        if spec.checkpoint is not None:
            raise RocketError(f"the '{spec.preset}' preset is randomly initialised; drop the checkpoint or the preset")
        return OpenVLAConfig.from_hf(PRESETS[spec.preset], attn_implementation=opts.attn_implementation)
    return OpenVLAConfig.from_hf(hf_config or _cached_config(spec), attn_implementation=opts.attn_implementation)


def paper_layers(num_layers: int) -> tuple[int, ...]:
    """ROCKET's pairs: 2, 4, ..., 18 (capped below the last layer) and -1."""
    return (*range(2, min(19, num_layers - 1), 2), -1)


class OpenVLAPolicy(OpenVLA):
    """A built OpenVLA: `forward_align` for ROCKET training, `predict_action` for evaluation.

    Training facts: `configure_training(TrainingSpec)` sets what trains. LoRA goes on
    `lora_target_modules` (all linear layers of the LLM by default; the reference's `all-linear` also
    covers the ViTs and projector) and `fully_trained_modules` train in full; `finetune="full"` trains
    every parameter. Either way the vision backbone stays frozen unless `options.train_vision_backbone`.
    """

    fully_trained_modules: ClassVar[tuple[str, ...]] = ("action_head", "proprio_projector")
    lora_defaults: ClassVar[dict[str, Any]] = {"rank": 32, "alpha": 16, "dropout": 0.0}

    def __init__(self, cfg: OpenVLAConfig, opts: OpenVLAOptions, tokenizer: proc.ByteTokenizer | proc.HFTokenizer) -> None:
        super().__init__(cfg)
        self.opts = opts
        self.tokenizer = tokenizer
        self.actions = proc.ActionTokenizer(cfg.action_vocab_size, cfg.n_action_bins)
        self.info = OpenVLAAdapter.describe(cfg, opts)
        self.lora: dict[str, Any] | None = None
        # A reference checkpoint's `align_projectors--*` state dict (names `{pool}.{ensemble}.fc1.weight`,
        # as rocket_core's ProjectorBank), for the engine to load into its bank; None when absent.
        self.align_projectors_state: dict[str, torch.Tensor] | None = None

    @property
    def _device(self) -> torch.device:
        return self.language_model.get_input_embeddings().weight.device

    @property
    def lora_target_modules(self) -> str:
        """peft `target_modules` regex (full match on module names)."""
        return LLM_LINEAR if self.opts.lora_scope == "llm" else ALL_LINEAR

    def add_oft_parts(self) -> None:
        """Fresh proprio projector and L1 head (same dtype/device as the LLM)."""
        like = self.language_model.get_input_embeddings().weight
        d = self.config.hidden_size
        if self.opts.uses_proprio:
            dtype = torch.float32 if self.opts.proprio_fp32 else like.dtype
            self.proprio_projector = ProprioProjector(d, self.opts.proprio_dim).to(like.device, dtype)
        if self.opts.head == "l1":
            self.action_head = L1RegressionActionHead(d, self.opts.action_dim).to(like.device, like.dtype)

    def set_trainable(self, full: bool = False) -> None:
        """Set `requires_grad`: the vision backbone only if `options.train_vision_backbone`; everything else
        if `full`; otherwise only the LoRA weights and the fully trained parts."""
        for name, p in self.named_parameters():
            top = name.split(".", 1)[0]
            if top == "vision_backbone" and ".lora_" not in name:
                p.requires_grad = self.opts.train_vision_backbone
            else:
                p.requires_grad = full or ".lora_" in name or top in self.fully_trained_modules

    def add_lora(self, rank: int = 32, alpha: float = 16, dropout: float = 0.0) -> None:
        """Inject LoRA (peft, gaussian init as the reference) into `lora_target_modules`, then `set_trainable`.

        As peft's `get_peft_model` (which the reference uses) does, adapter weights of a bf16/fp16 model
        are kept in float32.
        """
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(
            r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=self.lora_target_modules, init_lora_weights="gaussian"
        )
        inject_adapter_in_model(config, self)
        self.lora = {"rank": rank, "alpha": alpha, "dropout": dropout}
        upcast_lora(self)
        self.set_trainable()

    def configure_training(self, training: TrainingSpec) -> None:
        """The contract's training switch: `training.finetune`, `training.lora`, `training.gradient_checkpointing`.

        `lora`: LoRA (peft, gaussian init) on `lora_target_modules` plus the fully trained parts. A model
        built from a LoRA-only folder keeps training its loaded adapter (whose rank and alpha must then
        equal `training.lora`'s). `full`: every parameter. Either way the vision backbone trains only
        with `options.train_vision_backbone`.
        """
        if training.finetune == "lora":
            lora = training.lora
            if self.lora is None:
                self.add_lora(lora.rank, lora.alpha, lora.dropout)
            elif (self.lora["rank"], float(self.lora["alpha"])) != (lora.rank, float(lora.alpha)):
                raise RocketError(
                    f"the checkpoint's LoRA adapter has rank {self.lora['rank']}, alpha {self.lora['alpha']:g} but "
                    f"training.lora asks for rank {lora.rank}, alpha {lora.alpha:g}; set training.lora to match "
                    "(the adapter keeps training) or use training.finetune=full"
                )
            else:
                self.set_trainable()
        else:
            self.set_trainable(full=True)
        self.set_gradient_checkpointing(training.gradient_checkpointing)

    def set_gradient_checkpointing(self, enable: bool) -> None:
        """Recompute every Llama layer (non-reentrant) and, when they train, every ViT block in backward."""
        hf_checkpointing(self.language_model, enable)
        for vit in (self.vision_backbone.featurizer, self.vision_backbone.fused_featurizer):
            vit.gradient_checkpointing = enable

    def save_trained(self, folder: str | Path) -> None:
        """The trained parts: `<part>.safetensors` for the OFT heads, and `lora_adapter/` if LoRA is on."""
        folder = Path(folder)
        save_parts(self, folder)
        if self.lora is not None:
            save_lora_adapter(self, folder / LORA_DIR, **self.lora)

    # ---- inputs ---------------------------------------------------------------------------------
    def _sequence(self, tasks: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded ids, mask and labels of `prompt + action slots + stop`, and where the slots start."""
        n_act = self.opts.chunk * self.opts.action_dim
        prompts = [proc.prompt_ids(self.tokenizer, t) for t in tasks]
        length = max(len(p) for p in prompts) + n_act + 1
        device = self._device
        ids = torch.full((len(tasks), length), self.tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full_like(ids, IGNORE_INDEX)
        mask = torch.zeros_like(ids)
        for b, p in enumerate(prompts):
            n = len(p)
            ids[b, :n] = torch.tensor(p)
            ids[b, n : n + n_act] = labels[b, n : n + n_act] = self.actions.begin + 1
            ids[b, n + n_act] = labels[b, n + n_act] = proc.STOP_TOKEN
            mask[b, : n + n_act + 1] = 1
        starts = torch.tensor([len(p) for p in prompts])
        return ids.to(device), mask.to(device), labels.to(device), starts.to(device)

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.opts.num_images:
            raise RocketError(f"OpenVLA is configured for {self.opts.num_images} cameras but the batch has {images.shape[1]}; set options.num_images")
        return proc.pixel_values(images.to(self._device), self.config.image_size)

    def _proprio(self, state: torch.Tensor | None) -> torch.Tensor | None:
        if not self.opts.uses_proprio:
            return None
        if state is None or state.shape[-1] != self.opts.proprio_dim:
            got = None if state is None else state.shape[-1]
            raise RocketError(f"OpenVLA expects a proprio state of {self.opts.proprio_dim} dims, got {got}; set options.proprio_dim")
        return state.to(self._device)

    def _chunk_forward(
        self, images: torch.Tensor, tasks: Sequence[str], state: torch.Tensor | None, keep: bool
    ) -> tuple[tuple[torch.Tensor, ...] | None, torch.Tensor]:
        """One OFT pass -> (hidden states if `keep`, predicted normalised chunk (B, chunk, action_dim))."""
        if self.action_head is None:
            raise RocketError("this OpenVLA has no L1 action head; build it with options.head='l1'")
        ids, mask, labels, starts = self._sequence(tasks)
        out = self(self._pixels(images), ids, mask, labels, self._proprio(state), self.opts.bidirectional, with_logits=False)
        prefix = self.config.patches_per_image * self.opts.num_images + int(self.opts.uses_proprio)
        n_act = self.opts.chunk * self.opts.action_dim
        index = (starts[:, None] + prefix - 1 + torch.arange(n_act, device=starts.device))[..., None]
        final = out.hidden_states[-1]
        action_hidden = final.gather(1, index.expand(-1, -1, final.shape[-1]))
        return (out.hidden_states if keep else None), self.action_head(action_hidden, self.opts.chunk)

    # ---- training -------------------------------------------------------------------------------
    def forward_align(self, batch: Batch, layers: Sequence[int]) -> VLAOutput:
        """L1 action loss and `{layer: (B, V, D)}` vision states of `layers` (resolved indices), one pass."""
        hidden, pred = self._chunk_forward(batch["images"], batch["task"], batch.get("state"), keep=True)
        target = batch["actions"].to(pred.device, pred.dtype)
        if target.shape != pred.shape:
            raise RocketError(f"actions have shape {tuple(target.shape)}, expected {tuple(pred.shape)}; set options.chunk / action_dim")
        err = (pred - target).abs()
        if "action_is_pad" in batch:
            valid = (~batch["action_is_pad"].to(err.device).bool()).to(err.dtype)[..., None].expand_as(err)
            loss = (err * valid).sum() / valid.sum().clamp(min=1)
        else:
            loss = err.mean()
        vision = openvla_vision_slice(self.info.num_vision_tokens, self.opts.shift_vision_tokens)
        states = {k: hidden[k][:, vision] for k in layers}
        token_mask = None
        masks = batch.get("image_masks")
        if masks is not None and not bool(masks.all()):
            token_mask = masks.to(err.device).bool().repeat_interleave(self.config.patches_per_image, dim=1)
        return VLAOutput(loss, states, token_mask)

    # ---- inference ------------------------------------------------------------------------------
    def _as_images(self, images: torch.Tensor | Sequence[Image.Image]) -> torch.Tensor:
        """(n_cam, 3, H, W) in [0, 1] or a list of PIL images (reference resize) -> (1, n_cam, 3, S, S)."""
        if isinstance(images, torch.Tensor):
            return images[None].float()
        return torch.stack([proc.pil_to_tensor(im, self.config.image_size) for im in images])[None]

    def _unnormalize(self, actions: torch.Tensor, unnormalize: bool) -> np.ndarray:
        if not unnormalize:
            return actions.detach().float().cpu().numpy()
        stats = proc.dataset_stats(self.config.norm_stats, self.opts.unnorm_key)["action"]
        return proc.unnormalize(actions.float(), stats, self.opts.normalization)

    @torch.no_grad()
    def predict_action(
        self,
        images: torch.Tensor | Sequence[Image.Image],
        task: str,
        proprio: torch.Tensor | None = None,
        unnormalize: bool = True,
    ) -> np.ndarray:
        """One observation -> actions: (chunk, action_dim) with the L1 head, (1, action_dim) for discrete tokens.

        `proprio` is the normalised state (see `processor.normalize`). Actions are un-normalised with the
        checkpoint's norm_stats unless `unnormalize=False`.
        """
        pixels = self._as_images(images)
        if self.opts.head == "l1":
            state = None if proprio is None else proprio.reshape(1, -1).float()
            return self._unnormalize(self._chunk_forward(pixels, [task], state, keep=False)[1][0], unnormalize)
        tokens = self.generate_action_tokens(pixels, task)
        return self._unnormalize(self.actions.decode(tokens)[None], unnormalize)

    def generate_action_tokens(self, images: torch.Tensor, task: str) -> torch.Tensor:
        """Greedy decoding of `action_dim` tokens (causal LM with a KV cache), the original OpenVLA way."""
        from transformers import DynamicCache

        ids = torch.tensor([proc.prompt_ids(self.tokenizer, task)], device=self._device)
        seq, mask, _, _ = self.embed(self._pixels(images), ids, torch.ones_like(ids))
        cache = {_CACHE_ARG: DynamicCache(config=self.config.text)}  # filled in place by every call
        out = self.language_model(inputs_embeds=seq, attention_mask=mask, use_cache=True, **cache)
        tokens = []
        for step in range(self.opts.action_dim):
            nxt = out.logits[:, -1].argmax(-1)
            tokens.append(nxt)
            if step + 1 < self.opts.action_dim:
                mask = F.pad(mask, (0, 1), value=1)
                out = self.language_model(input_ids=nxt[:, None], attention_mask=mask, use_cache=True, **cache)
        return torch.stack(tokens, dim=1)[0]


def hf_checkpointing(model: Any, enable: bool) -> None:
    """Switch a transformers model's activation checkpointing (non-reentrant); the pre-5 names as fallback."""
    if enable:
        on = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        on({"use_reentrant": False})
    elif any(getattr(m, "gradient_checkpointing", False) for m in model.modules()):
        off = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
        off()


def upcast_lora(model: nn.Module) -> None:
    """LoRA weights of a half-precision model to float32 (peft casts each layer's input to them)."""
    for name, p in model.named_parameters():
        if ".lora_" in name and p.dtype in (torch.bfloat16, torch.float16):
            p.data = p.data.float()


def _dtype(opts: OpenVLAOptions, preset: bool) -> torch.dtype:
    name = opts.dtype or ("float32" if preset else "bfloat16")
    return getattr(torch, name)


def _tokenizer(folders: Sequence[Path], cfg: OpenVLAConfig) -> proc.HFTokenizer | proc.ByteTokenizer:
    """The checkpoint's tokenizer; a saved tiny model (byte vocabulary, no tokenizer files) gets the byte one."""
    from transformers import AutoTokenizer

    for folder in folders:
        if (folder / "tokenizer_config.json").is_file():
            return proc.HFTokenizer(AutoTokenizer.from_pretrained(str(folder)), cfg.text.pad_token_id)
    if cfg.action_vocab_size == proc.ByteTokenizer.base_vocab and cfg.text.pad_token_id == proc.ByteTokenizer.pad_token_id:
        return proc.ByteTokenizer()
    raise RocketError(f"no tokenizer files (tokenizer_config.json) in {', '.join(map(str, folders))}; use a full OpenVLA checkpoint folder")


def _has_model_weights(folder: Path) -> bool:
    try:
        return bool(shard_files(folder))
    except RocketError:
        return False


def _load_from(spec: VLASpec, opts: OpenVLAOptions) -> OpenVLAPolicy:
    """Base weights (this folder, or options.base_checkpoint under a LoRA-only folder), then LoRA and heads."""
    folder = resolve_weights(spec.checkpoint or DEFAULT_CHECKPOINT, spec.revision, ALLOW_PATTERNS, "openvla")
    if not folder.is_dir():
        raise RocketError(f"OpenVLA checkpoint '{folder}' must be a folder (config.json + safetensors)")
    base = folder
    if not _has_model_weights(folder):
        if not (folder / LORA_DIR).is_dir():
            raise RocketError(f"'{folder}' holds neither OpenVLA weights nor a {LORA_DIR}/ folder")
        base = resolve_weights(opts.base_checkpoint, None, ALLOW_PATTERNS, "openvla")
    if not (base / "config.json").is_file():
        raise RocketError(f"'{base}' has no config.json; point the checkpoint at a full OpenVLA folder")
    hf_config = json.loads((base / "config.json").read_text())
    cfg = model_config(spec, opts, hf_config)
    stats = folder / "dataset_statistics.json"
    if stats.is_file():
        cfg.norm_stats = {**cfg.norm_stats, **json.loads(stats.read_text())}
    dtype = _dtype(opts, preset=False)
    with torch.device("meta"):
        model = OpenVLAPolicy(cfg, opts, _tokenizer([folder, base], cfg))
    load_openvla_weights(model, base, dtype)
    rotary = type(model.language_model.model.rotary_emb)
    model.language_model.model.rotary_emb = rotary(cfg.text)  # non-persistent buffers: rebuilt, never loaded
    if base != folder:
        model.lora = load_lora_adapter(model, folder / LORA_DIR)
        upcast_lora(model)
    model.add_oft_parts()
    for part in model.fully_trained_modules:
        module = getattr(model, part)
        path = find_part_file(folder, part, opts.checkpoint_step)
        if module is not None and path is not None:
            load_part(module, path)
    align = find_part_file(folder, "align_projectors", opts.checkpoint_step)
    if align is not None:
        model.align_projectors_state = read_part(align)
    meta = [n for n, t in model.state_dict().items() if t.is_meta]
    if meta:
        raise RocketError(f"OpenVLA weights left unset: {', '.join(meta[:5])}")
    return model


class OpenVLAAdapter(VLAAdapter):
    """OpenVLA-7B (Prismatic: DINOv2+SigLIP, Llama-2) with OFT heads, trained by ROCKET through LoRA."""

    name = "openvla"
    description = "OpenVLA-7B native (no remote code): OFT L1 head, proprio token, 2 cameras; presets 'tiny', 'bench'"
    default_checkpoint: ClassVar[str] = DEFAULT_CHECKPOINT
    weight_patterns: ClassVar[tuple[str, ...]] = ALLOW_PATTERNS  # what `rocket pull openvla` downloads

    @classmethod
    def describe(cls, cfg: OpenVLAConfig, opts: OpenVLAOptions) -> VLAInfo:
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
        )

    @classmethod
    def info(cls, spec: VLASpec) -> VLAInfo:
        opts = parse_options(spec)
        return cls.describe(model_config(spec, opts), opts)

    @classmethod
    def build(cls, spec: VLASpec) -> OpenVLAPolicy:
        """The model, every parameter with `requires_grad` as created; `configure_training` decides what trains."""
        opts = parse_options(spec)
        if spec.preset is not None:
            model = OpenVLAPolicy(model_config(spec, opts), opts, proc.ByteTokenizer())
            model.add_oft_parts()
            model = model.to(_dtype(opts, preset=True))
            if model.proprio_projector is not None and opts.proprio_fp32:
                model.proprio_projector.float()
        else:
            model = _load_from(spec, opts)
        return model
