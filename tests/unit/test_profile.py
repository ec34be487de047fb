"""`rocket profile` library parts: the streamed CKA sketch, layer parsing, sample draws, the checkpoint
rebuild, result comparison. All on synthetic data or the toy plugins (seconds on a CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rocket_core.analysis import profile as prof
from rocket_core.analysis.sketch import CountSketch, StreamedCKA
from rocket_core.engine import plan_run
from rocket_core.errors import RocketError
from rocket_core.select.cka import linear_cka
from rocket_core.train.build import build_module
from rocket_core.train.trainer import Trainer
from tests.integration.train_toy import toy_registry, toy_spec


def _layered_features(n: int, width: int, seed: int = 0) -> dict[int, torch.Tensor]:
    """Five layers sharing a low-rank latent to different degrees, plus noise and a large common mean."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 8, generator=g)
    feats = {}
    for i, (mix, noise) in enumerate([(1.0, 0.1), (0.8, 0.5), (0.5, 1.0), (0.2, 2.0), (0.0, 1.0)]):
        z = latent * mix + torch.randn(n, 8, generator=g) * (1 - mix)
        w = torch.randn(8, width, generator=g) / 8**0.5
        feats[i] = z @ w + noise * torch.randn(n, width, generator=g) + 3.0 * torch.randn(1, width, generator=g)
    return feats


def _stream(acc: StreamedCKA, feats: dict[int, torch.Tensor], batch: int = 16) -> None:
    n = next(iter(feats.values())).shape[0]
    for start in range(0, n, batch):
        acc.add({k: v[start : start + batch] for k, v in feats.items()})


def test_countsketch_is_linear_seeded_and_preserves_inner_products() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 70_000, generator=g)  # not a multiple of the block: the last block is partial
    sketch = CountSketch(4096, seed=5, block=1 << 14)
    sx = sketch.apply(x)
    assert sx.shape == (3, 4096)
    assert torch.allclose(sketch.apply(x[:1] + 2 * x[1:2]), sx[:1] + 2 * sx[1:2], atol=1e-3)
    assert torch.equal(CountSketch(4096, seed=5, block=1 << 14).apply(x), sx)  # same seed, same map
    assert not torch.equal(CountSketch(4096, seed=6, block=1 << 14).apply(x), sx)
    exact, est = x @ x.T, sx @ sx.T
    rel = (est - exact).abs() / exact.diagonal().max()
    assert float(rel.max()) < 4 / 4096**0.5  # ~1/sqrt(d) relative error on the Gram
    many = sketch.apply_many([x, x[:, :1000]])  # several layers at once: the same map, prefix for short ones
    assert torch.equal(many[0], sx) and torch.equal(many[1], sketch.apply(x[:, :1000]))


def test_sketched_cka_agrees_with_exact_within_002() -> None:
    feats = _layered_features(64, 30_000)
    exact, sketched = StreamedCKA(64, "exact"), StreamedCKA(64, "sketch", sketch_dim=4096)
    _stream(exact, feats)
    _stream(sketched, feats)
    e, s = exact.finish(), sketched.finish()
    assert (e.method, e.sketch_dim, s.method, s.sketch_dim) == ("exact", None, "sketch", 4096)
    keys = list(feats)
    ref = e.cka(keys, keys)
    assert ref.min() < 0.4 and np.allclose(ref[0, 0], 1.0)  # a spread of similarities, not a constant
    # the exact path is the plain linear CKA of the full features
    assert abs(ref[0, 2] - linear_cka(feats[0], feats[2])) < 1e-9
    gap = float(np.abs(s.cka(keys, keys) - ref).max())
    assert gap < 0.02, gap


def test_auto_method_follows_the_memory_budget() -> None:
    feats = _layered_features(32, 1000)
    need = StreamedCKA.exact_bytes(32, {k: 1000 for k in feats})
    fits, over = StreamedCKA(32, "auto", 256, memory_budget=need), StreamedCKA(32, "auto", 256, memory_budget=need - 1)
    _stream(fits, feats)
    _stream(over, feats)
    assert fits.finish().method == "exact"
    assert over.finish().method == "sketch"
    assert over.store == {}  # stores are released once the Grams exist


def test_self_cka_has_unit_diagonal_and_is_symmetric() -> None:
    feats = _layered_features(24, 500)
    acc = StreamedCKA(24, "sketch", 128)
    _stream(acc, feats, batch=5)  # a last batch of 4
    m = acc.finish().cka(list(feats), list(feats))
    assert np.allclose(np.diag(m), 1.0, atol=1e-9)
    assert np.allclose(m, m.T, atol=1e-12)


def test_streamed_cka_rejects_inconsistent_batches() -> None:
    acc = StreamedCKA(4, "exact")
    acc.add({"a": torch.randn(2, 6)})
    with pytest.raises(ValueError, match="same keys"):
        acc.add({"b": torch.randn(2, 6)})
    with pytest.raises(ValueError, match="features per sample"):
        acc.add({"a": torch.randn(2, 7)})
    with pytest.raises(ValueError, match="only 2 of 4"):
        acc.finish()


def test_parse_cka_layers() -> None:
    plan = plan_run(toy_spec(1, 1, 0), toy_registry())  # toy VLA: hidden states 0..4; toy teacher: 3 layers
    args = (plan.vla, plan.vla_info, plan.teacher, plan.teacher_info)
    assert prof.parse_cka_layers("all", *args) == ([0, 1, 2, 3, 4], [0, 1, 2])
    assert prof.parse_cka_layers("1-3,0:-1", *args) == ([0, 1, 2, 3], [2])
    assert prof.parse_cka_layers("4,2:all", *args) == ([2, 4], [0, 1, 2])
    with pytest.raises(RocketError, match="out of range"):
        prof.parse_cka_layers("0-5:all", *args)
    with pytest.raises(RocketError, match="'all' or 'VLA:TEACHER'"):
        prof.parse_cka_layers("1,2", *args)
    with pytest.raises(RocketError, match="cannot read teacher layers"):
        prof.parse_cka_layers("all:x", *args)


def test_sample_indices_are_seeded_sorted_and_capped() -> None:
    a = prof.sample_indices(100, 10, 3)
    assert a == prof.sample_indices(100, 10, 3) and a == sorted(a) and len(set(a)) == 10
    assert a != prof.sample_indices(100, 10, 4)
    assert prof.sample_indices(5, 10, 0) == [0, 1, 2, 3, 4]


def test_rebuild_from_checkpoint_gives_the_trained_module(tmp_path: Path) -> None:
    reg = toy_registry()
    plan = plan_run(toy_spec(2, 2, 0), reg)
    trainer = Trainer(plan, tmp_path, progress=False)
    trainer.train()
    trained = dict(trainer.acc.unwrap_model(trainer.module).named_parameters())
    run = prof.load_trained(tmp_path, registry=reg)
    assert run.checkpoint.step == 2 and run.plan.layers == plan.layers
    rebuilt = dict(run.module.named_parameters())
    assert rebuilt.keys() == trained.keys()
    for name, p in trained.items():  # frozen (same seed) and trained (loaded by name) alike
        assert torch.equal(rebuilt[name].detach(), p.detach()), name
    assert [n for n, p in rebuilt.items() if p.requires_grad] == trainer.names
    teacher_then = dict(trainer.teacher.named_parameters())  # type: ignore[union-attr]
    for name, p in run.teacher.named_parameters():  # type: ignore[attr-defined]
        assert torch.equal(p, teacher_then[name]), name


def test_rebuild_rejects_a_checkpoint_of_another_model(tmp_path: Path) -> None:
    reg = toy_registry()
    plan = plan_run(toy_spec(1, 1, 0), reg)
    with pytest.raises(RocketError, match="'weights' lacks tensor 'vla"):
        build_module(plan, {"vla.not.a.weight": torch.zeros(1)})


def _doc(kind: str, rows: list, values: list) -> dict:
    return {"kind": kind, "primary": "m", "matrices": {"m": prof.matrix_doc(np.array(values), rows, rows, "r", "c")}}


def test_compare_checks_kind_matrix_and_layers() -> None:
    a = _doc("grad-conflict", ["p0", "p1"], [[1, 0.5], [0.5, 1]])
    ma, mb, name = prof.compare_results(a, _doc("grad-conflict", ["p0", "p1"], [[1, 0.1], [0.1, 1]]))
    assert name == "m" and ma["values"][0][1] == 0.5 and mb["values"][0][1] == 0.1
    with pytest.raises(RocketError, match="cannot compare a grad-conflict result with a cka result"):
        prof.compare_results(a, _doc("cka", ["p0", "p1"], [[1, 0], [0, 1]]))
    with pytest.raises(RocketError, match="different layers"):
        prof.compare_results(a, _doc("grad-conflict", ["p0", "p2"], [[1, 0], [0, 1]]))
    with pytest.raises(RocketError, match="matrix 'x' is not in"):
        prof.compare_results(a, a, "x")
