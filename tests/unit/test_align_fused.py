"""The fused alignment head against autograd through the plain per-pair loop: losses and every gradient."""
from __future__ import annotations

import pytest
import torch

from rocket_core.align import fused
from rocket_core.align.head import AlignmentHead
from rocket_core.align.loss import cosine_loss
from rocket_core.align.pooling import bilinear_pool
from rocket_core.align.projector import ProjectorBank
from rocket_core.specs import ProjectorSpec
from rocket_plugins.projectors.builtin import IndependentProjector, RocketProjector, SharedProjector

PAIRS, BATCH, SEQ, TOKENS, DIM_IN, DIM_OUT = 3, 2, 11, 8, 12, 8  # DIM_OUT: sin-cos needs 4k


def loop_losses(bank: ProjectorBank, states: list[torch.Tensor], targets: torch.Tensor, mask: torch.Tensor | None,
                eps: float | None) -> torch.Tensor:
    """(L, E) losses, one pair and member at a time through autograd (what the fused node replaces)."""
    return torch.stack([
        torch.stack([cosine_loss(proj(x, bank.layer_index(i)), targets[i], mask, eps) for proj in bank.pool(i)])
        for i, x in enumerate(states)
    ])


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30))


def run(bank: ProjectorBank, fused: bool, mask: torch.Tensor | None, eps: float | None,
        seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    dtype = next(bank.parameters()).dtype
    hidden = [torch.randn(BATCH, SEQ, DIM_IN, generator=gen, dtype=dtype).requires_grad_() for _ in range(PAIRS)]
    states = [h[:, 2 : 2 + TOKENS] for h in hidden]  # non-contiguous slices, as the VLAs give them
    targets = torch.randn(PAIRS, BATCH, TOKENS, DIM_OUT, generator=gen, dtype=dtype)
    weights = torch.rand(PAIRS, bank.ensemble_size, generator=gen, dtype=dtype)  # uneven upstream gradient per member
    bank.zero_grad(set_to_none=True)
    if fused:
        head = AlignmentHead(bank, TOKENS, (4, 4), (56, 56), cosine_eps=eps)
        losses = head(states, targets=targets, token_mask=mask).ensemble_losses
    else:
        losses = loop_losses(bank, states, targets, mask, eps)
    (losses * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in bank.named_parameters()}
    grads.update({f"hidden.{i}": h.grad for i, h in enumerate(hidden)})
    return losses.detach(), grads


BANKS = {
    "rocket_ensemble": lambda: RocketProjector.build(
        PAIRS, DIM_IN, DIM_OUT, ProjectorSpec(name="rocket", hidden_dim=16), 2),
    "shared_no_norm": lambda: SharedProjector.build(
        PAIRS, DIM_IN, DIM_OUT, ProjectorSpec(name="shared", hidden_dim=10, use_vlm_norm=False), 1),
    "independent_quirk_tanh": lambda: IndependentProjector.build(
        PAIRS, DIM_IN, DIM_OUT, ProjectorSpec(name="independent", hidden_dim=20, reference_width_quirk=True, activation="gelu_tanh",
                                              layer_norm_eps=1e-6), 2),
}
MASKS = {
    "unmasked": None,
    # sample 1 has no valid token: it must drop out of the batch mean, with zero gradient
    "masked": torch.tensor([[1, 0, 1, 1, 0, 1, 1, 1], [0] * 8], dtype=torch.bool),
}


# float32: the bound, where summation order alone is ~1e-7; float64: only a real difference (a
# stray low-precision step, a missing term) shows, summation order is ~1e-16
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=["float32", "float64"])
@pytest.mark.parametrize("eps", [None, 1e-8], ids=["torch", "jax"])
@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("bank_name", list(BANKS))
def test_fused_matches_per_pair_autograd(bank_name: str, mask_name: str, eps: float | None, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    bank = BANKS[bank_name]().to(dtype)
    with torch.no_grad():  # non-zero biases and norm affine, so their gradients and uses are checked too
        for p in bank.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p))
    mask = MASKS[mask_name]
    ref_losses, ref = run(bank, False, mask, eps)
    losses, got = run(bank, True, mask, eps)
    tol = TOLERANCE[dtype]
    assert losses.dtype == dtype
    torch.testing.assert_close(losses, ref_losses, rtol=0, atol=tol)
    assert set(got) == set(ref)
    for name, expected in ref.items():
        assert got[name].dtype == dtype and rel_err(got[name], expected) <= tol, (name, rel_err(got[name], expected))
    if mask is not None:
        assert all(float(got[f"hidden.{i}"][1].abs().max()) == 0 for i in range(PAIRS))


def rocket_head(states_grad: bool = False) -> tuple[ProjectorBank, AlignmentHead, list[torch.Tensor], torch.Tensor]:
    """A seeded rocket bank and head with random states and pooled targets."""
    torch.manual_seed(0)
    bank = RocketProjector.build(PAIRS, DIM_IN, DIM_OUT, ProjectorSpec(name="rocket", hidden_dim=16), 1)
    states = [torch.randn(BATCH, TOKENS, DIM_IN, requires_grad=states_grad) for _ in range(PAIRS)]
    return bank, AlignmentHead(bank, TOKENS, (4, 4), (56, 56)), states, torch.randn(PAIRS, BATCH, TOKENS, DIM_OUT)


def test_per_pair_gradients_with_retained_graph() -> None:
    """Profile's gradient-conflict analysis differentiates each pair's loss separately from one graph."""
    bank, head, states, targets = rocket_head()
    params = list(bank.parameters())
    pair_losses = head(states, targets=targets).pair_losses
    for i in range(PAIRS):
        got = torch.autograd.grad(pair_losses[i], params, retain_graph=True, allow_unused=True)
        one = cosine_loss(bank[0][0](states[i], i), targets[i])
        want = torch.autograd.grad(one, params, allow_unused=True)
        for g, w, p in zip(got, want, params):
            w = torch.zeros_like(p) if w is None else w
            assert rel_err(g, w) <= 1e-6 if w.abs().max() > 0 else float(g.abs().max()) == 0


def test_no_grad_and_frozen_inputs() -> None:
    bank, head, states, targets = rocket_head()
    with torch.no_grad():
        value = head(states, targets=targets).loss
    assert not value.requires_grad
    torch.testing.assert_close(value, loop_losses(bank, states, targets, None, None).mean(), rtol=0, atol=1e-6)
    bank.requires_grad_(False)
    live = states[1].clone().requires_grad_()  # only one state trains, e.g. a LoRA below that layer only
    head([states[0], live, states[2]], targets=targets).loss.backward()
    assert live.grad is not None and all(p.grad is None for p in bank.parameters())


def test_pool_targets_matches_pooling_each_layer_and_rejects_a_grid_mismatch() -> None:
    head = rocket_head()[1]
    raw = [torch.randn(BATCH, 2, 5 + 16, DIM_OUT)[:, :, 5:] for _ in range(PAIRS)]  # patches after special tokens
    pooled = head.pool_targets(raw)
    for i in range(PAIRS):
        torch.testing.assert_close(pooled[i], bilinear_pool(raw[i].contiguous(), (4, 4), TOKENS, (56, 56)))
    torch.testing.assert_close(head.pool_targets(torch.stack(raw)), pooled)
    with pytest.raises(ValueError, match="pooled grid"):
        head([torch.randn(BATCH, TOKENS + 1, DIM_IN) for _ in range(PAIRS)], targets=pooled)


def test_a_backward_that_skips_the_weights_leaves_no_gradient_behind() -> None:
    """autograd.grad w.r.t. the states only must neither compute weight gradients nor leak them into the next
    backward pass (the pair nodes share gradient buffers with the collector node)."""
    bank, head, states, targets = rocket_head(states_grad=True)
    loss = head(states, targets=targets).loss
    only_states = torch.autograd.grad(loss, states, retain_graph=True)
    loss.backward()
    want = [torch.autograd.grad(loop_losses(bank, states, targets, None, None).mean(), [*states, *bank.parameters()])]
    for got, expected in zip([*only_states, *(p.grad for p in bank.parameters())], want[0]):
        assert rel_err(got, expected) <= 1e-6


def test_autocast_matches_the_loop_under_the_same_autocast() -> None:
    """The GPU path (bf16 GEMMs, weights cast once, float32 LayerNorm, loss and weight gradients), run on the CPU."""
    torch.manual_seed(0)
    bank = RocketProjector.build(PAIRS, DIM_IN, DIM_OUT, ProjectorSpec(name="rocket", hidden_dim=16), 2)
    mask = MASKS["masked"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_losses, ref = run(bank, False, mask, None)
        losses, got = run(bank, True, mask, None)
    torch.testing.assert_close(losses.float(), ref_losses.float(), rtol=0, atol=2e-2)
    for name, expected in ref.items():
        assert got[name].dtype == expected.dtype, name  # float32 weights get float32 gradients
        assert rel_err(got[name].float(), expected.float()) <= 5e-2, (name, rel_err(got[name].float(), expected.float()))


@pytest.mark.parametrize("mask_name", list(MASKS))
def test_row_blocks_change_nothing(monkeypatch: pytest.MonkeyPatch, mask_name: str) -> None:
    """At test sizes every chain is one block by default; cut into the smallest blocks (8 rows; an uneven
    split is checked too), the float64 losses and gradients still equal the per-pair loop's."""
    monkeypatch.setattr(fused, "CHUNK_BYTES", 1)
    bank = BANKS["rocket_ensemble"]().to(torch.float64)
    sizes = [len(b[0]) for b in fused._blocks(DIM_OUT, 8, torch.empty(BATCH * TOKENS + 3, DIM_OUT))]
    assert sizes == [8, 8, 3]
    ref_losses, ref = run(bank, False, MASKS[mask_name], None)
    losses, got = run(bank, True, MASKS[mask_name], None)
    torch.testing.assert_close(losses, ref_losses, rtol=0, atol=1e-12)
    for name, expected in ref.items():
        assert rel_err(got[name], expected) <= 1e-12, name


def test_row_blocks_stay_whole_off_the_cpu() -> None:
    """On a GPU every block would cost kernel launches and its L2 holds the tensors already: one block."""
    rows = torch.empty(4096, 2048, device="meta")
    assert [len(b[0]) for b in fused._blocks(2048, 4, rows)] == [4096]
    assert len(fused._blocks(2048, 4, torch.empty(4096, 2048))) > 1
