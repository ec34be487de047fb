"""Projection and cosine loss of every (pair, ensemble member), with fused backward nodes.

Why (benchmarks/align_head.py measures it against the per-pair autograd loop): through autograd, each
pair's prefix slice of a shared projector gets a full-size zero-filled weight gradient that is then
summed, the predictions, their unit vectors and the normalised targets stay alive for backward, and
under autocast every weight slice is cast again. Here, instead:

- the loss ends the chain, so the gradient with respect to each prediction is formed in the forward and
  the prediction is dropped: per member only the projector input, the pre-activation, the activation and
  that gradient are kept;
- each pair's target is unit-normalised once, without gradient, and cos = <p, t_hat> / |p|;
- weights are cast to the autocast dtype once per call;
- weight gradients are accumulated in place into each pair's prefix of one buffer per weight.

The graph: a collector node takes the projector parameters and hands a token to one node per pair. A
pair node's backward adds its weight gradients into the shared buffers and its saved tensors are freed
right after, as the loop's are (one node for all pairs would hold every pair's until the end, which
costs more peak memory than the loop). The collector runs after every pair node and returns the
buffers as the parameters' gradients. Gradients equal autograd's through the per-pair loop up to float
rounding (tests/unit/test_align_fused.py).

The nodes read the built-in projector's tensors and bypass its methods, so they serve only the banks
`fusable` accepts; the head sends every other bank through plain autograd.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules import module as torch_module

from rocket_core.align.loss import cosine_weights, loss_from_cosine
from rocket_core.align.projector import AlignProjector, ProjectorBank

FIELDS = 6  # per projector: norm weight, norm bias, fc1 weight, fc1 bias, fc2 weight, fc2 bias
NORM_W, NORM_B, W1, B1, W2, B2 = range(FIELDS)
RECORD = 7  # per member: fc1 input, norm mean, norm rstd, pre-activation, activation, grad of the output, its column sum
CHUNK_BYTES = 1 << 19  # CPU row blocks (see _blocks): a block's 3-4 operands fit a 2 MiB L2 together


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

    def members_of(self, pair: int) -> list[Member]:
        return [m for m in self.members if m.pair == pair]

    @staticmethod
    def params(bank: ProjectorBank) -> list[torch.Tensor | None]:
        out: list[torch.Tensor | None] = []
        for pool in bank:
            for p in pool:
                norm = p.vlm_norm
                out += [None if norm is None else norm.weight, None if norm is None else norm.bias,
                        p.fc1.weight, p.fc1.bias, p.fc2.weight, p.fc2.bias]
        return out


HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
BUILTIN_METHODS = {name: AlignProjector.__dict__[name] for name in ("width", "normed", "project_normed", "forward")}


def _plain(module: nn.Module, cls: type[nn.Module]) -> bool:
    """Exactly `cls`, no hook and no method replaced on the instance: calling it runs `cls`'s code only."""
    return (type(module) is cls and not any(getattr(module, hook) for hook in HOOKS)
            and not any(callable(value) for value in vars(module).values()))


def _builtin_projector(p: nn.Module) -> bool:
    """The built-in AlignProjector structure, with the shapes and settings `_pair_forward` assumes."""
    if not isinstance(p, AlignProjector):
        return False
    norm, fc1, fc2 = p.vlm_norm, p.fc1, p.fc2
    if not (_plain(p, AlignProjector) and _plain(fc1, nn.Linear) and _plain(fc2, nn.Linear)):
        return False
    if fc1.bias is None or fc2.bias is None or fc1.weight.ndim != 2 or fc2.weight.ndim != 2:
        return False
    hidden, dim = fc1.weight.shape
    if norm is not None and not (_plain(norm, nn.LayerNorm) and tuple(norm.normalized_shape) == (dim,)
                                 and norm.weight is not None and norm.bias is not None):
        return False
    return (tuple(fc1.bias.shape) == (hidden,) and fc2.weight.shape[1] == hidden
            and tuple(fc2.bias.shape) == (fc2.weight.shape[0],) and p.approximate in ("none", "tanh")
            and all(1 <= w <= hidden for w in p.widths))


def fusable(bank: ProjectorBank) -> bool:
    """Whether the fused nodes compute exactly what calling the bank's projectors computes.

    They read each AlignProjector's six tensors and do its LayerNorm, fc1 prefix, GELU and fc2 prefix
    themselves, bypassing its methods, so only the built-in structure qualifies: an exact ProjectorBank of
    exact AlignProjectors (with exact LayerNorm and Linear submodules) whose methods are the built-in
    ones, neither overridden nor replaced on an instance, with no module hook (own or global), in the
    built-in shapes. Every other bank takes plain autograd through its projectors' own forward (head.py).
    """
    if type(bank) is not ProjectorBank or any(getattr(torch_module, f"_global{hook}") for hook in HOOKS):
        return False
    if any(AlignProjector.__dict__.get(name) is not method for name, method in BUILTIN_METHODS.items()):
        return False
    return all(_builtin_projector(p) for pool in bank for p in pool.children())


def _norm_input(layout: Layout, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """LayerNorm input: float32 under autocast (its layer_norm policy), else the weights' dtype."""
    return x.float() if layout.autocast_dtype is not None else x.to(dtype)


def _blocks(width: int, itemsize: int, *tensors: torch.Tensor | None) -> list[tuple[torch.Tensor | None, ...]]:
    """The tensors cut into the same row blocks of about CHUNK_BYTES (a row being `width` items).

    An elementwise chain run block by block reads its operands from DRAM once and then works in a
    core's L2 cache, instead of streaming every full-size tensor once per op. On a GPU the tensors stay
    whole: its L2 holds them already, and every block would cost kernel launches (host-bound at batch 2).
    """
    first = next(t for t in tensors if t is not None)
    step = max(8, CHUNK_BYTES // max(1, width * itemsize)) if first.device.type == "cpu" else first.shape[0]
    parts = [t.split(max(1, step)) if t is not None else None for t in tensors]
    count = len(next(p for p in parts if p is not None))
    return list(zip(*[p if p is not None else [None] * count for p in parts]))


def _pair_forward(
    run: _Run, pair: int, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, keep: bool,
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """(E,) losses of one pair; with `keep`, also each member's RECORD tensors for backward."""
    layout, params, casts, acc = run.layout, run.params, run.casts, run.acc
    batch, tokens, dim = x.shape
    rows = batch * tokens
    t = target.detach().reshape(rows, -1)
    weights = cosine_weights((batch, tokens), mask, x.device, acc).reshape(-1) if keep else None
    norm_in = _norm_input(layout, x, run.dtype)
    members = layout.members_of(pair)
    saved: list[list[torch.Tensor | None]] = []
    outputs: list[tuple[torch.Tensor, torch.Tensor]] = []  # each member's fc2 output and fc2 bias
    for member in members:
        base, w, eps = member.proj * FIELDS, member.width, layout.norm_eps[member.proj]
        if eps is None:
            xn, mean, rstd = norm_in, None, None
        else:
            xn, mean, rstd = torch.native_layer_norm(norm_in, (dim,), params[base + NORM_W], params[base + NORM_B], eps)
        xc = xn.reshape(rows, dim).to(run.dtype)
        h = torch.mm(xc, casts[base + W1][:w].t())  # type: ignore[index]  # only LayerNorm fields are None
        a, bias, approximate = torch.empty_like(h), casts[base + B1][:w], layout.approximate[member.proj]  # type: ignore[index]  # as above
        for hb, ab in _blocks(w, h.element_size(), h, a):  # bias and activation, block by block
            torch.ops.aten.gelu.out(hb.add_(bias), approximate=approximate, out=ab)  # type: ignore[union-attr]  # blocks of tensors
        p = torch.mm(a, casts[base + W2][:, :w].t())  # type: ignore[index]  # only LayerNorm fields are None
        outputs.append((p, casts[base + B2]))  # type: ignore[arg-type]  # as above
        saved.append([xc, mean, rstd, h, a, p] if keep else [])
    cosines, grads_b2 = _cosine_blocks(run, outputs, t, weights)
    losses = torch.empty(layout.ensemble, device=x.device, dtype=acc)
    records: list[torch.Tensor | None] = []
    for member, cos, grad_b2, kept in zip(members, cosines, grads_b2, saved):
        losses[member.slot] = loss_from_cosine(cos.view(batch, tokens), mask)
        records += kept + [grad_b2] if keep else []
    return losses, records


def _cosine_blocks(
    run: _Run, outputs: Sequence[tuple[torch.Tensor, torch.Tensor]], t: torch.Tensor, weights: torch.Tensor | None,
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """Add each member's fc2 bias to its output `p` (rows, C) and return each row's cosine with its target.

    The target rows are unit-normalised once per block, without gradient, for every member of the pair:
    cos = <p, t_hat> / |p|. With `weights` (the loss's gradient per cosine), each `p` is overwritten by
    the loss's gradient with respect to it, and the second list holds those gradients' column sums (the
    fc2 bias gradients).
    """
    acc, cosine_eps, count = run.acc, run.layout.cosine_eps, len(outputs)
    ps = [p for p, _ in outputs]
    cosines = [torch.empty(t.shape[0], device=t.device, dtype=acc) for _ in ps]
    col_sums = [torch.zeros(p.shape[1], device=p.device, dtype=acc) if weights is not None else None for p in ps]
    itemsize = max(ps[0].element_size(), torch.finfo(acc).bits // 8)
    for tb, wb, *parts in _blocks(t.shape[1], itemsize, t, weights, *ps, *cosines):
        tb = tb.to(acc)  # type: ignore[union-attr]  # _blocks keeps None only for None inputs
        t_norm = torch.linalg.vector_norm(tb, dim=-1, keepdim=True)  # what F.normalize (or the JAX x/(|x|+eps)) does
        t_hat = torch.div(tb, t_norm.clamp_min_(1e-12) if cosine_eps is None else t_norm.add_(cosine_eps),
                          out=run.scratch.get("t_hat", tb.shape, acc, t.device))
        for pb, cb, (_, bias), col_sum in zip(parts[:count], parts[count:], outputs, col_sums):
            pb.add_(bias)  # type: ignore[union-attr]  # as above
            work = pb.to(acc)  # type: ignore[union-attr]  # (as above) the bias is added in the compute dtype, as a linear layer does
            norm = torch.linalg.vector_norm(work, dim=-1)
            denom = norm.clamp_min(1e-12) if cosine_eps is None else norm + cosine_eps
            torch.linalg.vecdot(work, t_hat, out=cb).div_(denom)
            if wb is None:
                continue
            # d(-cos)/dp = (cos * p/|p| - t_hat) / denom; the norm's gradient is 0 where it is clamped (or 0)
            live = norm >= 1e-12 if cosine_eps is None else norm > 0
            step = wb / denom
            coef = torch.where(live, cb / norm.clamp_min(1e-30), 0.0) * step
            work.mul_(coef[:, None]).addcmul_(t_hat, step[:, None], value=-1)
            col_sum.add_(work.sum(0))  # type: ignore[union-attr]  # as above
            if work is not pb:
                pb.copy_(work)  # type: ignore[union-attr]  # as above
    return cosines, col_sums


class _Grads:
    """One full-size buffer per parameter that each member adds its prefix into, in place.

    A buffer's first write overwrites its prefix and zero-fills the rest (once, not once per pair), so
    members may come in any order.
    """

    def __init__(self, params: Sequence[torch.Tensor | None]) -> None:
        self.params = params
        self.bufs: list[torch.Tensor | None] = [None] * len(params)

    def _view(self, i: int, dim: int, width: int) -> tuple[torch.Tensor, bool]:
        buf, fresh = self.bufs[i], self.bufs[i] is None
        if buf is None:
            buf = self.bufs[i] = torch.empty_like(self.params[i])  # type: ignore[arg-type]  # only present params get grads
            buf.narrow(dim, width, buf.shape[dim] - width).zero_()
        return buf.narrow(dim, 0, width), fresh

    def add(self, i: int, dim: int, width: int, value: torch.Tensor, alpha: float = 1.0) -> None:
        view, fresh = self._view(i, dim, width)
        if fresh:
            torch.mul(value, alpha, out=view) if alpha != 1 else view.copy_(value)
        else:
            view.add_(value, alpha=alpha)

    def addmm(self, i: int, dim: int, width: int, m1: torch.Tensor, m2: torch.Tensor, alpha: float = 1.0) -> None:
        # autocast: a prefix-sized product, accumulated in the weights' dtype
        if m1.dtype != self.params[i].dtype:  # type: ignore[union-attr]  # only present params get grads
            self.add(i, dim, width, m1 @ m2, alpha)
            return
        view, fresh = self._view(i, dim, width)
        view.addmm_(m1, m2, beta=0 if fresh else 1, alpha=alpha)


class _Scratch:
    """Work buffers reused across pairs: a fresh large tensor costs its page faults (~0.15 ms per MB) each time."""

    def __init__(self) -> None:
        self.bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        n = 1
        for size in shape:
            n *= size
        buf = self.bufs.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            buf = self.bufs[name] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(*shape)

    def clear(self) -> None:
        self.bufs.clear()


class _Run:
    """What the nodes of one call share: layout, parameters and their casts, the gradient buffers."""

    def __init__(self, layout: Layout, params: list[torch.Tensor | None], dtype: torch.dtype) -> None:
        self.layout, self.params, self.dtype = layout, params, dtype
        self.acc = torch.promote_types(dtype, torch.float32)  # cosines and losses: at least float32
        with torch.no_grad():  # cast once per call, not once per pair
            self.casts = [None if p is None or i % FIELDS in (NORM_W, NORM_B) else p.detach().to(dtype)
                          for i, p in enumerate(params)]
        self.need = [torch.is_grad_enabled() and p is not None and p.requires_grad for p in params]
        self.collector: Any = None  # the collector's graph node, when parameters need gradients
        self.scratch = _Scratch()  # forward's, cleared after it; then backward's, cleared after each pass
        self.grads: _Grads | None = None

    def grads_of_this_backward(self) -> _Grads | None:
        """The buffers of the running backward pass; None if it does not reach the parameters."""
        if self.collector is None or not torch._C._will_engine_execute_node(self.collector):
            return None
        if self.grads is None:
            self.grads = _Grads(self.params)
        return self.grads

    def take(self) -> list[torch.Tensor | None]:
        bufs: list[torch.Tensor | None] = self.grads.bufs if self.grads is not None else [None] * len(self.params)
        self.grads = None  # the next backward pass (retain_graph) starts afresh
        self.scratch.clear()
        return bufs


class _Collect(torch.autograd.Function):
    """Parameters -> token; backward returns the buffers the pair nodes filled."""

    @staticmethod
    def forward(ctx: Any, run: _Run, *params: torch.Tensor | None) -> torch.Tensor:
        ctx.run = run
        return torch.empty(0, device=params[W1].device)  # type: ignore[union-attr]  # fc1.weight is never None

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, _: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return (None, *ctx.run.take())


class _Pair(torch.autograd.Function):
    """(run, pair, target, mask, token, state) -> (E,) losses of one pair."""

    @staticmethod
    def forward(ctx: Any, run: _Run, pair: int, target: torch.Tensor, mask: torch.Tensor | None,
                token: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # dtypes are chosen explicitly
            losses, records = _pair_forward(run, pair, x, target, mask, keep=True)
        ctx.run, ctx.pair = run, pair
        # weights too, so that changing them in place before backward is caught like anywhere in autograd
        ctx.save_for_backward(x, *run.params, *run.casts, *records)
        return losses

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_losses: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        run: _Run = ctx.run
        layout, nparams = run.layout, len(run.params)
        saved = ctx.saved_tensors
        x, params, casts, records = saved[0], saved[1 : 1 + nparams], saved[1 + nparams : 1 + 2 * nparams], \
            saved[1 + 2 * nparams :]
        need_x = ctx.needs_input_grad[5]
        grads = run.grads_of_this_backward()
        need = [grads is not None and n for n in run.need]
        scales = grad_losses.tolist()
        dx: torch.Tensor | None = None
        with torch.autocast(x.device.type, enabled=False):
            for k, member in enumerate(layout.members_of(ctx.pair)):
                scale, base, w = scales[member.slot], member.proj * FIELDS, member.width
                if scale == 0:
                    continue
                xc, mean, rstd, h, a, grad_p, grad_b2 = records[k * RECORD : (k + 1) * RECORD]
                if need[base + B2]:
                    grads.add(base + B2, 0, grad_p.shape[1], grad_b2, scale)  # type: ignore[union-attr]  # need[] implies grads
                if need[base + W2]:
                    grads.addmm(base + W2, 1, w, grad_p.t(), a, scale)  # type: ignore[union-attr]  # as above
                norm = mean is not None
                norm_grads = norm and (need[base + NORM_W] or need[base + NORM_B])
                if not (need_x or norm_grads or need[base + W1] or need[base + B1]):
                    continue
                dh = run.scratch.get("dh", (grad_p.shape[0], w), grad_p.dtype, x.device)
                dh.addmm_(grad_p, casts[base + W2][:, :w], beta=0, alpha=scale)  # the scale for free, in the GEMM
                grad_b1 = torch.zeros(w, device=x.device, dtype=run.acc) if need[base + B1] else None
                approximate = layout.approximate[member.proj]
                for db, hb in _blocks(w, dh.element_size(), dh, h):
                    torch.ops.aten.gelu_backward.grad_input(db, hb, approximate=approximate, grad_input=db)
                    if grad_b1 is not None:
                        grad_b1.add_(db.sum(0, dtype=run.acc))  # type: ignore[union-attr]  # blocks of a tensor
                if grad_b1 is not None:
                    grads.add(base + B1, 0, w, grad_b1)  # type: ignore[union-attr]  # need[] implies grads
                if need[base + W1]:
                    grads.addmm(base + W1, 0, w, dh.t(), xc)  # type: ignore[union-attr]  # as above
                if not (need_x or norm_grads):
                    continue
                # into scratch only when LayerNorm's backward makes the state's gradient from it
                out = run.scratch.get("dxn", (dh.shape[0], x.shape[-1]), dh.dtype, x.device) if norm else None
                dxn = torch.mm(dh, casts[base + W1][:w], out=out).view(x.shape)
                if norm:
                    norm_in = _norm_input(layout, x, run.dtype)
                    outputs = [need_x, need[base + NORM_W], need[base + NORM_B]]
                    dxn, dgamma, dbeta = torch.ops.aten.native_layer_norm_backward(
                        dxn.to(norm_in.dtype), norm_in, [x.shape[-1]], mean, rstd, params[base + NORM_W],
                        params[base + NORM_B], outputs)
                    for field, value in ((NORM_W, dgamma), (NORM_B, dbeta)):
                        if value is not None:
                            grads.add(base + field, 0, value.shape[0], value)  # type: ignore[union-attr]  # as above
                if need_x:
                    dx = dxn.to(x.dtype) if dx is None else dx.add_(dxn)
        if grads is None:  # no collector runs in this pass to clear them
            run.scratch.clear()
        token_grad = torch.empty(0, device=x.device) if ctx.needs_input_grad[4] else None
        return None, None, None, None, token_grad, dx


def fused_ensemble_losses(
    bank: ProjectorBank,
    states: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor] | torch.Tensor,
    mask: torch.Tensor | None,
    cosine_eps: float | None,
) -> torch.Tensor:
    """(L, E) loss of each pair and ensemble member; targets are constants (the teacher is frozen)."""
    device = states[0].device.type
    autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    layout = Layout.of(bank, cosine_eps, autocast)
    params = Layout.params(bank)
    run = _Run(layout, params, autocast or params[W1].dtype)  # type: ignore[union-attr]  # fc1.weight is never None
    mask = None if mask is None else mask.detach()
    token = _Collect.apply(run, *params) if any(run.need) else None  # type: ignore[no-untyped-call]  # torch: apply is unannotated
    if token is not None:
        run.collector = token.grad_fn
    if token is None and not (torch.is_grad_enabled() and any(s.requires_grad for s in states)):
        with torch.autocast(device, enabled=False):
            return torch.stack([_pair_forward(run, i, x, targets[i], mask, keep=False)[0]
                                for i, x in enumerate(states)])
    losses = torch.stack([_Pair.apply(run, i, targets[i], mask, token, x) for i, x in enumerate(states)])  # type: ignore[no-untyped-call]  # as above
    run.scratch.clear()
    return losses
