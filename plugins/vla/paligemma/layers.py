"""The joint VLM + action-expert layer loop of pi0 / pi0.5, adaptive RMSNorm and the flow-matching time."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.models.gemma.modeling_gemma import apply_rotary_pos_emb

from rocket_plugins.vla.paligemma.config import Arch

# openpi/LeRobot's additive mask value: far below any score, yet leaves bf16 headroom (finfo.min would overflow).
MASK_VALUE = -2.3819763e38



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
    layers: Sequence[Any],  # HF decoder layers: their parts are dynamic attributes
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
        qs.append(q)
        ks.append(k)
        vs.append(v)
        gates.append(gate)
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

    hiddens: Sequence[torch.Tensor]
    captured: dict[int, torch.Tensor]
    kv: list[tuple[torch.Tensor, torch.Tensor]]


def run_stack(
    stacks: Sequence[Sequence[nn.Module] | nn.ModuleList],
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
