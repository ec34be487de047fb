"""The shared pi0 / pi0.5 model: prefix embedding, flow-matching forward and sampling, the rocket contract, LoRA."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rocket_core.contracts import Batch, VLAInfo, VLAOutput
from rocket_core.errors import RocketError
from rocket_core.specs import TrainingSpec
from rocket_plugins.vla.paligemma.config import LORA_LEAVES, PALIGEMMA_TOKENIZER, Arch, PolicyOptions, blocks_applied
from rocket_plugins.vla.paligemma.layers import apply_norm, attention_mask, run_stack, sample_time
from rocket_plugins.vla.paligemma.preprocess import align_mask, downsample_padding_mask, pad_last, preprocess_images
from rocket_plugins.vla.paligemma.tokenizer import load_tokenizer, tokenize


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
    def vlm(self) -> Any:  # transformers PaliGemmaModel (its parts are dynamic attributes)
        raise NotImplementedError

    @property
    def expert_layers(self) -> nn.ModuleList:
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
        token_mask_out = align_mask(masks, downsample_padding_mask(valid, self.arch.token_grid))
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
            r=rank, lora_alpha=alpha, target_modules=self.lora_target_modules, rank_pattern=expert,  # type: ignore[arg-type]  # peft: float ok
            alpha_pattern=expert, lora_dropout=dropout,
        )
        inject_adapter_in_model(config, self)
        for name, param in self.named_parameters():
            if "lora_" in name and param.dtype in (torch.bfloat16, torch.float16):
                param.data = param.data.float()  # as peft's get_peft_model: float32 adapters on a half model
            param.requires_grad = "lora_" in name or name.startswith(self.fully_trained_modules)
