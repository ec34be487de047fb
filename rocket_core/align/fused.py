"""Projection and cosine loss of every (pair, ensemble member) as one autograd node.

Why (benchmarks/align_head.py measures it against the per-pair autograd loop): through autograd, each
pair's prefix slice of a shared projector gets a full-size zero-filled weight gradient that is then
summed, the predictions, their unit vectors and the normalised targets stay alive for backward, and
under autocast every weight slice is cast again. Here, instead:

- the loss ends the chain, so the gradient with respect to each prediction is formed in the forward and
  the prediction is dropped: per member only the pre-activation, the activation and that gradient are
  kept (the normalised input is recomputed in backward, a cheap elementwise pass), which keeps peak
  memory below the loop's although this node frees its saved tensors only when its backward ends;
- each pair's target is unit-normalised once, without gradient, and cos = <p, t_hat> / |p|;
- weight gradients are accumulated in place into the pair's prefix of one buffer per weight;
- weights are cast to the autocast dtype once per call.

Gradients equal autograd's through the per-pair loop up to float rounding (tests/unit/test_align_fused.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from rocket_core.align.loss import cosine_weights, loss_from_cosine, unit
from rocket_core.align.projector import AlignProjector, ProjectorBank

FIELDS = 6  # per projector: norm weight, norm bias, fc1 weight, fc1 bias, fc2 weight, fc2 bias
NORM_W, NORM_B, W1, B1, W2, B2 = range(FIELDS)
RECORD = 3  # per member: pre-activation, activation, gradient of the loss w.r.t. the projector output


@dataclass(frozen=True)
class Member:
    pair: int
    slot: int  # ensemble member
    proj: int  # index into Layout.projectors
    width: int


@dataclass(frozen=True)
class Layout:
    """Which projector prefix each (pair, member) uses; everything a call needs besides tensors."""

    num_pairs: int
    ensemble: int
    members: tuple[Member, ...]
    norm_eps: tuple[float | None, ...]  # per projector; None without LayerNorm
    approximate: tuple[str, ...]  # per projector: GELU variant
    cosine_eps: float | None
    autocast_dtype: torch.dtype | None

    @classmethod
    def of(cls, bank: ProjectorBank, cosine_eps: float | None, autocast_dtype: torch.dtype | None) -> Layout:
        projectors: list[AlignProjector] = [p for pool in bank for p in pool]
        index = {id(p): k for k, p in enumerate(projectors)}
        members = tuple(
            Member(pair, slot, index[id(proj)], proj.width(bank.layer_index(pair)))
            for pair in range(bank.num_pairs)
            for slot, proj in enumerate(bank.pool(pair))
        )
        return cls(bank.num_pairs, bank.ensemble_size, members,
                   tuple(None if p.vlm_norm is None else p.vlm_norm.eps for p in projectors),
                   tuple(p.approximate for p in projectors), cosine_eps, autocast_dtype)

    @staticmethod
    def params(bank: ProjectorBank) -> list[torch.Tensor | None]:
        out: list[torch.Tensor | None] = []
        for pool in bank:
            for p in pool:
                norm = p.vlm_norm
                out += [None if norm is None else norm.weight, None if norm is None else norm.bias,
                        p.fc1.weight, p.fc1.bias, p.fc2.weight, p.fc2.bias]
        return out


def _projector_input(layout: Layout, x: torch.Tensor, params: Sequence[torch.Tensor | None], proj: int,
                     dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(LayerNorm input, fc1 input (rows, dim) in the compute dtype, (mean, rstd) or None).

    The LayerNorm runs in float32 under autocast (its autocast policy), else in the weights' dtype.
    """
    base, eps = proj * FIELDS, layout.norm_eps[proj]
    norm_in = x.float() if layout.autocast_dtype is not None else x.to(params[W1].dtype)  # type: ignore[union-attr]
    stats = None
    xn = norm_in
    if eps is not None:
        xn, mean, rstd = torch.native_layer_norm(norm_in, (x.shape[-1],), params[base + NORM_W],
                                                 params[base + NORM_B], eps)
        stats = (mean, rstd)
    return norm_in, xn.reshape(-1, x.shape[-1]).to(dtype), stats


def _forward(
    layout: Layout, states: Sequence[torch.Tensor], params: Sequence[torch.Tensor | None],
    targets: Sequence[torch.Tensor] | torch.Tensor, mask: torch.Tensor | None, keep: bool,
) -> tuple[torch.Tensor, list[torch.Tensor | None], list[tuple[torch.Tensor | None, ...]]]:
    """(L, E) losses; with `keep`, also the cast weights and each member's saved tensors for backward."""
    dtype = layout.autocast_dtype or params[W1].dtype  # type: ignore[union-attr]
    casts = [None if p is None or i % FIELDS in (NORM_W, NORM_B) else p.to(dtype) for i, p in enumerate(params)]
    device = states[0].device
    losses = torch.empty(layout.num_pairs, layout.ensemble, device=device)
    records: list[tuple[torch.Tensor | None, ...]] = []
    weights = None
    for pair in range(layout.num_pairs):
        x = states[pair]
        batch, tokens, dim = x.shape
        target = targets[pair]
        if tuple(target.shape[:2]) != (batch, tokens):
            raise ValueError(f"pair {pair}: {tuple(target.shape[:2])} target tokens for {(batch, tokens)} "
                             "vision tokens; the pooled grid does not match the VLA's vision tokens")
        t_hat = unit(target.detach().reshape(batch * tokens, -1).float(), layout.cosine_eps)
        if keep and weights is None:
            weights = cosine_weights((batch, tokens), mask, device).reshape(-1)
        for member in (m for m in layout.members if m.pair == pair):
            base, w = member.proj * FIELDS, member.width
            xc = _projector_input(layout, x, params, member.proj, dtype)[1]
            h = torch.addmm(casts[base + B1][:w], xc, casts[base + W1][:w].t())  # type: ignore[index]
            a = F.gelu(h, approximate=layout.approximate[member.proj])
            p = torch.addmm(casts[base + B2], a, casts[base + W2][:, :w].t()).float()  # type: ignore[index, arg-type]
            norm = torch.linalg.vector_norm(p, dim=-1)
            denom = norm.clamp_min(1e-12) if layout.cosine_eps is None else norm + layout.cosine_eps
            cos = (p * t_hat).sum(-1) / denom
            losses[pair, member.slot] = loss_from_cosine(cos.view(batch, tokens), mask)
            if keep:
                # d(-cos)/dp = (cos * p/|p| - t_hat) / denom; the norm's gradient is 0 where it is clamped (or 0)
                live = norm >= 1e-12 if layout.cosine_eps is None else norm > 0
                coef = torch.where(live, cos / norm.clamp_min(1e-30), 0.0)
                grad_p = p.mul_(coef[:, None]).sub_(t_hat).mul_((weights / denom)[:, None])  # type: ignore[operator]
                records.append((h, a, grad_p.to(dtype)))
    return losses, casts, records


class _Grads:
    """One full-size buffer per parameter that each member adds its prefix into, in place.

    Members come widest first, so a buffer's first write overwrites its prefix and only the part no
    member reaches is zero-filled.
    """

    def __init__(self, params: Sequence[torch.Tensor | None], need: Sequence[bool]) -> None:
        self.params, self.need = params, need
        self.bufs: list[torch.Tensor | None] = [None] * len(params)

    def _view(self, i: int, dim: int, width: int) -> tuple[torch.Tensor, bool]:
        buf, fresh = self.bufs[i], self.bufs[i] is None
        if buf is None:
            buf = self.bufs[i] = torch.empty_like(self.params[i])  # type: ignore[arg-type]
            buf.narrow(dim, width, buf.shape[dim] - width).zero_()
        return buf.narrow(dim, 0, width), fresh

    def add(self, i: int, dim: int, width: int, value: torch.Tensor) -> None:
        view, fresh = self._view(i, dim, width)
        view.copy_(value) if fresh else view.add_(value)

    def addmm(self, i: int, dim: int, width: int, m1: torch.Tensor, m2: torch.Tensor) -> None:
        view, fresh = self._view(i, dim, width)
        if m1.dtype == view.dtype:
            view.addmm_(m1, m2, beta=0 if fresh else 1)
        else:  # autocast: a product in the compute dtype (prefix-sized), accumulated in the weights' dtype
            self.add(i, dim, width, m1 @ m2)


class FusedAlignLoss(torch.autograd.Function):
    """(layout, targets, mask, *states, *params) -> (L, E) ensemble losses; see the module docstring."""

    @staticmethod
    def forward(ctx: Any, layout: Layout, targets: Any, mask: torch.Tensor | None,  # type: ignore[override]
                *tensors: torch.Tensor | None) -> torch.Tensor:
        states, params = tensors[: layout.num_pairs], tensors[layout.num_pairs :]
        with torch.autocast(states[0].device.type, enabled=False):  # dtypes are chosen explicitly
            losses, casts, records = _forward(layout, states, params, targets, mask, keep=True)  # type: ignore[arg-type]
        ctx.layout = layout
        ctx.save_for_backward(*tensors, *casts, *(t for record in records for t in record))
        return losses

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_losses: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        layout: Layout = ctx.layout
        saved = ctx.saved_tensors
        pairs = layout.num_pairs
        nparams = (len(saved) - pairs - RECORD * len(layout.members)) // 2
        states, params = saved[:pairs], saved[pairs : pairs + nparams]
        casts = saved[pairs + nparams : pairs + 2 * nparams]
        records = saved[pairs + 2 * nparams :]
        need = ctx.needs_input_grad[3:]
        need_x, grads = need[:pairs], _Grads(params, need[pairs:])
        dx: list[torch.Tensor | None] = [None] * pairs
        scales = grad_losses.float().tolist()  # one host sync, not one per member
        dtype = layout.autocast_dtype or params[W1].dtype
        order = sorted(range(len(layout.members)), key=lambda k: -layout.members[k].width)
        with torch.autocast(states[0].device.type, enabled=False):
            for k in order:
                member = layout.members[k]
                scale, base, w = scales[member.pair][member.slot], member.proj * FIELDS, member.width
                if scale == 0:
                    continue
                h, a, grad_p = records[k * RECORD : (k + 1) * RECORD]
                g = grad_p if scale == 1 else grad_p * scale
                if need[pairs + base + B2]:
                    grads.add(base + B2, 0, g.shape[1], g.sum(0))
                if need[pairs + base + W2]:
                    grads.addmm(base + W2, 1, w, g.t(), a)
                norm = layout.norm_eps[member.proj] is not None
                want_x = need_x[member.pair] or (norm and (need[pairs + base + NORM_W] or need[pairs + base + NORM_B]))
                if not (want_x or need[pairs + base + W1] or need[pairs + base + B1]):
                    continue
                dh = torch.ops.aten.gelu_backward(g @ casts[base + W2][:, :w], h,
                                                  approximate=layout.approximate[member.proj])
                if need[pairs + base + B1]:
                    grads.add(base + B1, 0, w, dh.sum(0))
                x = states[member.pair]
                norm_in, xc, stats = _projector_input(layout, x, params, member.proj, dtype)
                if need[pairs + base + W1]:
                    grads.addmm(base + W1, 0, w, dh.t(), xc)
                del xc
                if not want_x:
                    continue
                dxn = (dh @ casts[base + W1][:w]).view(x.shape)
                if stats is not None:
                    mean, rstd = stats
                    outputs = [need_x[member.pair], need[pairs + base + NORM_W], need[pairs + base + NORM_B]]
                    dxn, dgamma, dbeta = torch.ops.aten.native_layer_norm_backward(
                        dxn.to(norm_in.dtype), norm_in, [x.shape[-1]], mean, rstd, params[base + NORM_W],
                        params[base + NORM_B], outputs)
                    for field, value in ((NORM_W, dgamma), (NORM_B, dbeta)):
                        if value is not None:
                            grads.add(base + field, 0, value.shape[0], value)
                if need_x[member.pair]:
                    prev = dx[member.pair]
                    dx[member.pair] = dxn.to(x.dtype) if prev is None else prev.add_(dxn)
        return (None, None, None, *dx, *grads.bufs)


def fused_ensemble_losses(
    bank: ProjectorBank,
    states: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor] | torch.Tensor,
    mask: torch.Tensor | None,
    cosine_eps: float | None,
) -> torch.Tensor:
    """(L, E) loss of each pair and ensemble member; targets are constants (the teacher is frozen)."""
    device = states[0].device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    layout = Layout.of(bank, cosine_eps, dtype)
    params = Layout.params(bank)
    mask = None if mask is None else mask.detach()
    tensors = [*states, *params]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return FusedAlignLoss.apply(layout, targets, mask, *tensors)
    with torch.autocast(device, enabled=False):
        return _forward(layout, states, params, targets, mask, keep=False)[0]
