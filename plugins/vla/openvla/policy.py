"""The built openvla model: OpenVLA with the OFT heads, ROCKET's `forward_align`, LoRA and inference.

Sequence (OFT): `[BOS, patches of every camera, proprio, prompt..., "▁", chunk*action_dim zeroed action
slots, stop]`. The L1 head reads the final-norm state one position before each action slot (the
reference's causal-shift convention), reshaped to (B, chunk, action_dim*D).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import LlamaForCausalLM

from rocket_core.contracts import Batch, VLAOutput
from rocket_core.errors import RocketError
from rocket_core.specs import TrainingSpec
from rocket_plugins.vla.openvla import processor as proc
from rocket_plugins.vla.openvla.adapter import OpenVLAAdapter
from rocket_plugins.vla.openvla.modeling import (
    IGNORE_INDEX,
    L1RegressionActionHead,
    OpenVLA,
    OpenVLAConfig,
    ProprioProjector,
)
from rocket_plugins.vla.openvla.options import ALL_LINEAR, LLM_LINEAR, LORA_DIR, OpenVLAOptions
from rocket_plugins.vla.openvla.weights import save_lora_adapter, save_parts

# transformers renamed the KV-cache argument `past_key_values` -> `cache` (the old name warns until 5.40).
_CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def vision_slice(num_vision_tokens: int, shift: bool = True) -> slice:
    """Where the vision tokens sit in OpenVLA's sequence `[BOS, vision..., proprio?, text...]`.

    `shift=True` reproduces the reference (`gain_feat_1move`): each patch's *next* position, so the
    last one lands on the proprio token.
    """
    start = 1 + int(shift)
    return slice(start, start + num_vision_tokens)


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
        return self.language_model.get_input_embeddings().weight.device  # type: ignore[return-value]  # an Embedding's

    @property
    def lora_target_modules(self) -> str:
        """peft `target_modules` regex (full match on module names)."""
        return LLM_LINEAR if self.opts.lora_scope == "llm" else ALL_LINEAR

    def add_oft_parts(self) -> None:
        """Fresh proprio projector and L1 head (same dtype/device as the LLM)."""
        like: torch.Tensor = self.language_model.get_input_embeddings().weight  # type: ignore[assignment]  # as above
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
            r=rank, lora_alpha=alpha, lora_dropout=dropout,  # type: ignore[arg-type]  # peft takes a float alpha
            target_modules=self.lora_target_modules, init_lora_weights="gaussian"
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
        vision = vision_slice(self.info.num_vision_tokens, self.opts.shift_vision_tokens)
        states = {k: hidden[k][:, vision] for k in layers}  # type: ignore[index]  # keep=True: hidden states
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
    def predict_action(self, batch: Batch) -> torch.Tensor:
        """The contract's inference: (B, chunk, action_dim) normalised actions ((B, 1, action_dim) discrete)."""
        if self.opts.head == "l1":
            return self._chunk_forward(batch["images"], batch["task"], batch.get("state"), keep=False)[1]
        return torch.stack([self.actions.decode(self.generate_action_tokens(images[None], task))[None]
                            for images, task in zip(batch["images"], batch["task"])]).to(self._device)

    @torch.no_grad()
    def predict_observation(
        self,
        images: torch.Tensor | Sequence[Image.Image],
        task: str,
        proprio: torch.Tensor | None = None,
        unnormalize: bool = True,
    ) -> np.ndarray:
        """The reference's single-observation call: (chunk, action_dim) with the L1 head, (1, action_dim) discrete.

        Takes PIL images (the reference's resize) or (n_cam, 3, H, W) in [0, 1]; `proprio` is the
        normalised state (see `processor.normalize`). Actions are un-normalised with the checkpoint's
        norm_stats unless `unnormalize=False`.
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


