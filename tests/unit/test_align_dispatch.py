"""Which projectors the fused head serves: only the built-in structure; every other projector (a plugin's
subclass, a hook, a patched method) trains through plain autograd with the same loss and Matryoshka prefixes."""
from __future__ import annotations

import types
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import register_module_forward_hook
from torch.nn.utils import parametrize

import rocket_core.align.head as head_module
from rocket_core.align.fused import fusable
from rocket_core.align.head import AlignmentHead
from rocket_core.align.projector import AlignProjector, ProjectorBank
from rocket_core.specs import ProjectorSpec
from rocket_plugins.projectors.builtin import IndependentProjector, RocketProjector, SharedProjector, SingleProjector
from tests.lowrank_projector import LowRankStrategy
from tests.unit.test_align_fused import BANKS, BATCH, DIM_IN, DIM_OUT, MASKS, PAIRS, TOKENS, loop_losses, rel_err

LOWRANK_IN = 24  # the low-rank projector's input width, above its rank (16)
LossFn = Callable[[list[torch.Tensor], torch.Tensor, torch.Tensor | None], torch.Tensor]


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the loss paths the head calls, in order."""
    calls: list[str] = []
    for name in ("fused_ensemble_losses", "autograd_ensemble_losses"):
        real = getattr(head_module, name)

        def spy(*args, _real=real, _name=name, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(head_module, name, spy)
    return calls


def float64_bank(make: Callable[[], ProjectorBank]) -> ProjectorBank:
    """Seeded, float64, with non-zero biases and norm affine, so their uses and gradients count too."""
    torch.manual_seed(0)
    bank = make().to(torch.float64)
    with torch.no_grad():
        for p in bank.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p))
    return bank


def head_losses(bank: ProjectorBank, eps: float | None = None) -> LossFn:
    head = AlignmentHead(bank, TOKENS, (4, 4), (56, 56), cosine_eps=eps)
    return lambda states, targets, mask: head(states, targets=targets, token_mask=mask).ensemble_losses


def losses_and_grads(bank: ProjectorBank, losses_fn: LossFn, mask: torch.Tensor | None, dim_in: int = DIM_IN,
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(L, E) losses and the gradient of every parameter and state under uneven per-member upstream weights."""
    gen = torch.Generator().manual_seed(1)
    hidden = [torch.randn(BATCH, TOKENS + 3, dim_in, generator=gen, dtype=torch.float64).requires_grad_()
              for _ in range(PAIRS)]
    states = [h[:, 2 : 2 + TOKENS] for h in hidden]  # non-contiguous slices, as the VLAs give them
    targets = torch.randn(PAIRS, BATCH, TOKENS, DIM_OUT, generator=gen, dtype=torch.float64)
    weights = torch.rand(PAIRS, bank.ensemble_size, generator=gen, dtype=torch.float64)
    bank.zero_grad(set_to_none=True)
    losses = losses_fn(states, targets, mask)
    (losses * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in bank.named_parameters()}
    grads.update({f"state.{i}": h.grad for i, h in enumerate(hidden)})
    return losses.detach(), grads


def assert_same(got: tuple[torch.Tensor, dict[str, torch.Tensor]], want: tuple[torch.Tensor, dict[str, torch.Tensor]],
                tol: float = 1e-12) -> None:
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=tol)
    assert set(got[1]) == set(want[1])
    for name, expected in want[1].items():
        assert rel_err(got[1][name], expected) <= tol, (name, rel_err(got[1][name], expected))


@pytest.mark.parametrize("strategy", [RocketProjector, SharedProjector, IndependentProjector, SingleProjector])
def test_every_builtin_strategy_takes_the_fused_path(strategy: type[RocketProjector]) -> None:
    pairs = strategy.max_pairs or PAIRS
    assert fusable(strategy.build(pairs, DIM_IN, DIM_OUT, ProjectorSpec(name=strategy.name, hidden_dim=16), 2))


@pytest.mark.parametrize("eps", [None, 1e-8], ids=["torch", "jax"])
@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("bank_name", list(BANKS))
def test_both_paths_agree_on_the_builtin_projector(ran: list[str], bank_name: str, mask_name: str,
                                                   eps: float | None) -> None:
    """Matryoshka prefixes (rocket), ensembles, no LayerNorm, tanh GELU, masks: float64 losses and gradients."""
    bank = float64_bank(BANKS[bank_name])
    mask = MASKS[mask_name]
    fused = losses_and_grads(bank, head_losses(bank, eps), mask)
    assert ran == ["fused_ensemble_losses"]
    plain = losses_and_grads(bank, lambda s, t, m: head_module.autograd_ensemble_losses(bank, s, t, m, eps), mask)
    assert_same(fused, plain)


def by_hand(bank: ProjectorBank, states: list[torch.Tensor], targets: torch.Tensor,
            mask: torch.Tensor | None) -> torch.Tensor:
    """(L, E) losses of the low-rank projector written out: LayerNorm, rank-16 down-projection, the pair's
    Matryoshka prefix (hidden 20 over 3 pairs: 4, 12, 20 units) of fc1 -> GELU -> fc2, masked cosine loss."""
    valid = torch.ones(BATCH, TOKENS, dtype=torch.float64) if mask is None else mask.to(torch.float64)
    rows = []
    for pair, (x, width) in enumerate(zip(states, (4, 12, 20))):
        t = targets[pair]
        row = []
        for proj in bank[0]:
            z = F.layer_norm(x, (LOWRANK_IN,), proj.norm.weight, proj.norm.bias, 1e-5) @ proj.down.weight.T
            h = F.gelu(z @ proj.fc1.weight[:width].T + proj.fc1.bias[:width])
            p = h @ proj.fc2.weight[:, :width].T + proj.fc2.bias
            cos = (p * t).sum(-1) / (p.norm(dim=-1) * t.norm(dim=-1))
            per_sample = 1 - (cos * valid).sum(-1) / valid.sum(-1).clamp(min=1)
            row.append(per_sample[valid.sum(-1) > 0].mean())
        rows.append(torch.stack(row))
    return torch.stack(rows)


@pytest.mark.parametrize("mask_name", list(MASKS))
def test_a_subclass_overriding_normed_trains_through_autograd(ran: list[str], mask_name: str) -> None:
    """Issue 20: the fused head read fc1 directly and crashed (64x64 and 16x4); now the subclass's own
    normed runs, and the loss and every gradient equal the computation written out by hand."""
    spec = ProjectorSpec(name="lowrank", hidden_dim=20)
    bank = float64_bank(lambda: LowRankStrategy.build(PAIRS, LOWRANK_IN, DIM_OUT, spec, 2))
    assert bank.pair_widths() == [4, 12, 20]
    mask = MASKS[mask_name]
    got = losses_and_grads(bank, head_losses(bank), mask, LOWRANK_IN)
    assert ran == ["autograd_ensemble_losses"]
    assert_same(got, losses_and_grads(bank, lambda s, t, m: by_hand(bank, s, t, m), mask, LOWRANK_IN))
    assert all(float(got[1][f"0.{k}.down.weight"].abs().max()) > 0 for k in range(2))


def _forward_hook(proj: AlignProjector, seen: list[str]) -> list[object]:
    return [proj.register_forward_hook(lambda m, args, out: seen.append("hook") or out + 1)]


def _pre_hook_on_norm(proj: AlignProjector, seen: list[str]) -> list[object]:
    return [proj.vlm_norm.register_forward_pre_hook(lambda m, args: seen.append("hook") or (args[0].flip(-1),))]


def _backward_hook(proj: AlignProjector, seen: list[str]) -> list[object]:
    return [proj.register_full_backward_hook(lambda m, grad_in, grad_out: seen.append("hook"))]


def _global_hook(proj: AlignProjector, seen: list[str]) -> list[object]:
    return [register_module_forward_hook(lambda m, args, out: seen.append("hook") if m is proj else None)]


def _instance_normed(proj: AlignProjector, seen: list[str]) -> list[object]:
    proj.normed = types.MethodType(lambda self, x: seen.append("normed") or AlignProjector.normed(self, x).tanh(), proj)
    return []


def _instance_forward(proj: AlignProjector, seen: list[str]) -> list[object]:
    def forward(x: torch.Tensor, layer_index: int = -1) -> torch.Tensor:
        seen.append("forward")
        return AlignProjector.forward(proj, x, layer_index) * x[..., :1]

    proj.forward = forward
    return []


class _Double(nn.Module):
    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        self.seen.append("parametrization")
        return 2 * w


def _parametrized_fc1(proj: AlignProjector, seen: list[str]) -> list[object]:
    parametrize.register_parametrization(proj.fc1, "weight", _Double(seen))
    return []


def _norm_subclass(proj: AlignProjector, seen: list[str]) -> list[object]:
    class Norm(nn.LayerNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append("norm")
            return super().forward(x) * 3 - 1

    proj.vlm_norm = Norm(DIM_IN).to(torch.float64)
    return []


MODIFIERS = {f.__name__.strip("_"): f for f in (_forward_hook, _pre_hook_on_norm, _backward_hook, _global_hook,
                                                _instance_normed, _instance_forward, _parametrized_fc1, _norm_subclass)}


@pytest.mark.parametrize("modifier", list(MODIFIERS))
def test_hooks_and_patched_methods_take_the_generic_path(ran: list[str], modifier: str) -> None:
    """The modification runs (the fused nodes would skip it) and the loss and gradients are the per-pair loop's."""
    bank = float64_bank(BANKS["rocket_ensemble"])
    seen: list[str] = []
    handles = MODIFIERS[modifier](bank[0][1], seen)
    try:
        mask = MASKS["masked"]
        got = losses_and_grads(bank, head_losses(bank), mask)
        assert ran == ["autograd_ensemble_losses"] and seen
        assert_same(got, losses_and_grads(bank, lambda s, t, m: loop_losses(bank, s, t, m, None), mask))
    finally:
        for handle in handles:
            handle.remove()  # type: ignore[attr-defined]
    assert fusable(bank) == bool(handles)  # removed hooks give the fused path back


def test_a_patched_class_method_and_other_structures_are_not_fused(monkeypatch: pytest.MonkeyPatch) -> None:
    make = BANKS["rocket_ensemble"]
    bank = make()
    assert fusable(bank)
    monkeypatch.setattr(AlignProjector, "normed", lambda self, x: x)
    assert not fusable(bank)
    monkeypatch.undo()

    class Bank(ProjectorBank):
        pass

    assert not fusable(Bank(list(bank), bank.num_pairs, bank.shared))
    for replace in (lambda p: setattr(p, "vlm_norm", nn.LayerNorm(DIM_IN, bias=False)),
                    lambda p: setattr(p, "fc2", nn.Linear(p.fc2.in_features, DIM_OUT, bias=False)),
                    lambda p: setattr(p, "fc1", type("Lin", (nn.Linear,), {})(DIM_IN, p.fc1.out_features))):
        bank = make()
        replace(bank[0][0])
        assert not fusable(bank)
