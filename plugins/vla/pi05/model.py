"""pi0.5 in our own code over transformers' PaliGemma / Gemma modules (transformers has no pi0.5).

What differs from pi0 (see docs/pi0.md): the state is discretised into 256 bins and written into the prompt,
the suffix is only the action tokens, and the flow time drives adaptive RMSNorm in every expert norm.
Weights load from LeRobot's key names (`lerobot/pi05_base`) directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PaliGemmaModel
from transformers.models.gemma.modeling_gemma import GemmaAttention, GemmaMLP

from rocket_core.contracts import Batch, VLAInfo
from rocket_core.errors import RocketError
from rocket_plugins.vla.paligemma.config import Arch, PolicyOptions
from rocket_plugins.vla.paligemma.layers import AdaptiveRMSNorm, time_embedding
from rocket_plugins.vla.paligemma.policy import PaliGemmaFlowPolicy, load_safetensors

STATE_BINS = 256
# LeRobot key prefix -> our module path.
_KEY_MAP = (
    ("model.paligemma_with_expert.paligemma.model.vision_tower.vision_model.", "paligemma.vision_tower."),
    ("model.paligemma_with_expert.paligemma.model.", "paligemma."),
    ("model.paligemma_with_expert.gemma_expert.model.", "expert."),
    ("model.", ""),
)
_VLM_LM_HEAD = "model.paligemma_with_expert.paligemma.lm_head.weight"
_EXPERT_LM_HEAD = "model.paligemma_with_expert.gemma_expert.lm_head.weight"


def discretize_state(state: torch.Tensor) -> torch.Tensor:
    """Normalised state in [-1, 1] -> bin indices 0..255 (np.digitize over 256 left edges, minus one)."""
    edges = torch.linspace(-1.0, 1.0, STATE_BINS + 1, dtype=torch.float64, device=state.device)[:-1]
    return torch.bucketize(state.double(), edges, right=True) - 1


def pi05_prompt(task: str, bins: Sequence[int]) -> str:
    """LeRobot's pi0.5 prompt: the cleaned task and the discretised state as text."""
    clean = task.replace("_", " ").replace("\n", " ").strip()
    return f"Task: {clean}, State: {' '.join(str(int(b)) for b in bins)};\nAction: "


class Pi05ExpertLayer(nn.Module):
    """A Gemma block whose norms are adaptive (time-conditioned) and whose residuals are gated."""

    def __init__(self, config, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = GemmaAttention(config, layer_idx)
        self.mlp = GemmaMLP(config)
        self.input_layernorm = AdaptiveRMSNorm(config.hidden_size, config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = AdaptiveRMSNorm(config.hidden_size, config.hidden_size, config.rms_norm_eps)


class Pi05Expert(nn.Module):
    """The action expert stack (LeRobot's `gemma_expert.model`, without its unused embedding)."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        config = arch.expert_config()
        self.layers = nn.ModuleList(Pi05ExpertLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = AdaptiveRMSNorm(config.hidden_size, config.hidden_size, config.rms_norm_eps)


class Pi05Policy(PaliGemmaFlowPolicy):
    """pi0.5: PaliGemma prefix with the state as text, action-only suffix, adaRMS time conditioning."""

    default_max_token_len: ClassVar[int] = 200

    def __init__(self, arch: Arch, opts: PolicyOptions, info: VLAInfo) -> None:
        super().__init__(arch, opts, info)
        width = arch.expert.width
        self.paligemma = PaliGemmaModel(arch.paligemma_config())
        self.expert = Pi05Expert(arch)
        self.action_in_proj = nn.Linear(arch.max_action_dim, width)
        self.action_out_proj = nn.Linear(width, arch.max_action_dim)
        self.time_mlp_in = nn.Linear(width, width)
        self.time_mlp_out = nn.Linear(width, width)

    @property
    def vlm(self) -> PaliGemmaModel:
        return self.paligemma

    @property
    def expert_layers(self) -> nn.ModuleList:
        return self.expert.layers

    @property
    def expert_norm(self) -> nn.Module:
        return self.expert.norm

    @property
    def fully_trained_modules(self) -> tuple[str, ...]:
        return ("paligemma.vision_tower.", "paligemma.multi_modal_projector.", "action_in_proj.", "action_out_proj.",
                "time_mlp_in.", "time_mlp_out.")

    def lora_scopes(self) -> tuple[str, str]:
        return r"paligemma\.language_model", "expert"

    def embed_suffix(
        self, state: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Action tokens only (one block: they see the prefix and each other); time becomes the adaRMS condition."""
        emb = time_embedding(t, self.arch.expert.width, self.arch.min_period, self.arch.max_period).to(x_t.dtype)
        cond = F.silu(self.time_mlp_out(F.silu(self.time_mlp_in(emb))))
        starts = torch.zeros(x_t.shape[1], dtype=torch.long, device=x_t.device)
        starts[0] = 1
        return self.action_in_proj(x_t), starts, cond

    def prompts(self, batch: Batch) -> list[str]:
        if not self.opts.discrete_state_input:  # openpi's format without state: the task, then a newline
            return [task.replace("_", " ").replace("\n", " ").strip() + "\n" for task in batch["task"]]
        bins = discretize_state(batch["state"])
        return [pi05_prompt(task, row.tolist()) for task, row in zip(batch["task"], bins)]

    def load(self, folder: Path) -> None:
        """LeRobot names; the text embedding is taken from `lm_head` when present, as LeRobot's own loader does."""
        source = load_safetensors(folder)
        state = {}
        for key, value in source.items():
            if key in (_VLM_LM_HEAD, _EXPERT_LM_HEAD):
                continue
            for old, new in _KEY_MAP:
                if key.startswith(old):
                    state[new + key[len(old):]] = value
                    break
            else:
                state[key] = value
        if _VLM_LM_HEAD in source:
            state["paligemma.language_model.embed_tokens.weight"] = source[_VLM_LM_HEAD]
        result = self.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise RocketError(
                f"'{folder}' is not a LeRobot pi0.5 checkpoint of this size: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
