"""pi0 over transformers' native `PI0ForConditionalGeneration` (config, modules and LeRobot key conversion).

The weights live in transformers' PI0 modules and load through its own `from_pretrained`, which maps
LeRobot's pi0 key names. The forward is the shared joint VLM+expert loop of `rocket_plugins.vla.paligemma`, so the
per-layer prefix states come from the same pass as the action loss (docs/pi0.md explains why).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PaliGemmaModel, PI0Config, PI0ForConditionalGeneration

from rocket_core.contracts import Batch, VLAInfo
from rocket_core.errors import RocketError
from rocket_plugins.vla.paligemma.config import Arch, PolicyOptions
from rocket_plugins.vla.paligemma.layers import time_embedding
from rocket_plugins.vla.paligemma.policy import PaliGemmaFlowPolicy


def pi0_config(arch: Arch) -> PI0Config:
    """transformers' PI0Config for our sizes; the loss is reduced by us (per element from the model)."""
    return PI0Config(
        vlm_config=arch.paligemma_config().to_dict(), dit_config=arch.expert_config().to_dict(),
        chunk_size=arch.chunk_size, max_state_dim=arch.max_state_dim, max_action_dim=arch.max_action_dim,
        num_inference_steps=arch.num_steps, min_period=arch.min_period, max_period=arch.max_period,
        time_sampling_beta_alpha=arch.beta_alpha, time_sampling_beta_beta=arch.beta_beta,
        time_sampling_scale=arch.time_scale, time_sampling_offset=arch.time_offset, loss_reduction="none",
    )


class Pi0Policy(PaliGemmaFlowPolicy):
    """pi0: PaliGemma prefix with the task text, suffix [state token, action+time tokens], plain Gemma expert."""

    default_max_token_len: ClassVar[int] = 48

    def __init__(self, arch: Arch, opts: PolicyOptions, info: VLAInfo) -> None:
        super().__init__(arch, opts, info)
        self.pi0 = PI0ForConditionalGeneration(pi0_config(arch))

    @property
    def vlm(self) -> PaliGemmaModel:
        return self.pi0.model.vlm

    @property
    def expert_layers(self) -> nn.ModuleList:
        return self.pi0.model.dit.layers

    @property
    def expert_norm(self) -> nn.Module:
        return self.pi0.model.dit.norm

    @property
    def action_out_proj(self) -> nn.Linear:  # type: ignore[override]  # read-only: the pi0 model owns it
        return self.pi0.action_out_proj

    @property
    def fully_trained_modules(self) -> tuple[str, ...]:
        return ("pi0.model.vlm.vision_tower.", "pi0.model.vlm.multi_modal_projector.", "pi0.embed_action_time.",
                "pi0.action_out_proj.")

    def lora_scopes(self) -> tuple[str, str]:
        return r"pi0\.model\.vlm\.language_model", r"pi0\.model\.dit"

    def embed_suffix(
        self, state: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """[state token, chunk action tokens]; blocks [1, 1, 0, ...]: the state sees only the prefix and itself.

        Uses PI0's `embed_action_time` weights with our float64 time sinusoid (LeRobot's; transformers' is float32).
        """
        emb = self.pi0.embed_action_time
        actions = emb.action_in_proj(x_t)
        times = time_embedding(t, self.arch.expert.width, self.arch.min_period, self.arch.max_period)
        times = times.to(actions.dtype)[:, None, :].expand_as(actions)
        tokens = emb.action_time_mlp_out(F.silu(emb.action_time_mlp_in(torch.cat([actions, times], -1))))
        state_token = emb.state_proj(state.to(actions.dtype))[:, None, :]
        starts = torch.zeros(1 + x_t.shape[1], dtype=torch.long, device=x_t.device)
        starts[:2] = 1
        return torch.cat([state_token, tokens], 1), starts, None

    def prompts(self, batch: Batch) -> list[str]:
        """LeRobot's pi0 prompt: the task, ending with a newline."""
        return [task if task.endswith("\n") else task + "\n" for task in batch["task"]]

    def load(self, folder: Path) -> None:
        """transformers' own PI0 loading (LeRobot key conversion included); every key must match."""
        pair: Any = PI0ForConditionalGeneration.from_pretrained(  # with loading info: (model, report)
            folder, config=self.pi0.config, output_loading_info=True
        )
        loaded, report = pair
        bad = {k: v for k, v in report.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if bad:
            raise RocketError(f"'{folder}' is not a pi0 checkpoint of this size: {bad}")
        self.pi0 = loaded
