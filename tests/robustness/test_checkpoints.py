"""Hostile checkpoints and resumes (issue 14): every row is one error line naming the file (and key), exit 2.

One tiny real run (OpenVLA + VGGT presets, 2 steps) is copied into each row's folder and damaged there;
each damage is tried on `rocket serve` and on `rocket align --resume` (two on `rocket profile`). Rows marked "manifest rewritten"
recompute the manifest after the damage, as an attacker (or a careless script) would, so the checks
behind the checksums (keys, shapes, finite normalisation, step) are exercised too.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from rocket_core.errors import RocketError
from rocket_core.specs import TrainingSpec
from rocket_core.train.checkpoint import find_checkpoint, load_checkpoint
from rocket_core.train.manifest import check_tensors, write_manifest
from tests.robustness.harness import Case, check, run_rocket

BASE: dict[str, Path] = {}
STEPS = 2
BATCH = TrainingSpec().batch_size  # the runs here use the default batch size


@pytest.fixture(scope="module", autouse=True)
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    code, text = run_rocket("align", "--vla", "openvla", "--teacher", "vggt", "--preset", "tiny",
                            "--max-steps", str(STEPS), "-o", str(out))
    assert code == 0, text
    BASE["run"] = out
    return out


@pytest.fixture(autouse=True)
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint that wrongly loads must fail the row, not serve forever."""
    from rocket_core.eval.server import PolicyServer

    monkeypatch.setattr(PolicyServer, "serve_forever", lambda self: None)


def _copy(tmp: Path) -> tuple[Path, Path]:
    run = tmp / "run"
    shutil.copytree(BASE["run"], run)
    return run, find_checkpoint(run)


def _rewrite_manifest(ckpt: Path) -> None:
    write_manifest(ckpt, json.loads((ckpt / "manifest.json").read_text())["step"])


def _edit_tensors(ckpt: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(str(ckpt / "trainable.safetensors"))
    edit(tensors)
    save_file(tensors, str(ckpt / "trainable.safetensors"))


def _drop_one(t: dict[str, torch.Tensor]) -> None:
    del t[sorted(t)[0]]


def _broadcastable(t: dict[str, torch.Tensor]) -> None:
    name = next(k for k in sorted(t) if t[k].ndim == 2 and t[k].shape[0] > 1)
    t[name] = t[name][:1].clone()  # (1, M) broadcasts onto (N, M): must still be refused


def _flip_byte(ckpt: Path) -> None:
    path = ckpt / "trainable.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))


def _nan_norm(ckpt: Path) -> None:
    state = json.loads((ckpt / "state.json").read_text())
    state["normalization"]["action"]["low"][0] = float("nan")
    (ckpt / "state.json").write_text(json.dumps(state))


def _state(ckpt: Path, **fields: object) -> None:
    state = json.loads((ckpt / "state.json").read_text())
    state.update(fields)
    (ckpt / "state.json").write_text(json.dumps(state))


def _truncate(name: str, size: int | None = None) -> Callable[[Path], None]:
    def damage(ckpt: Path) -> None:
        path = ckpt / name
        path.write_bytes(path.read_bytes()[: size if size is not None else path.stat().st_size // 2])
    return damage


def _corrupt_header(ckpt: Path) -> None:
    path = ckpt / "rng.safetensors"
    data = bytearray(path.read_bytes())
    data[8:12] = b"\xff\xfe{["
    path.write_bytes(bytes(data))


def _rng_without_pooling(ckpt: Path) -> None:
    rng = load_file(str(ckpt / "rng.safetensors"))
    del rng["pooling"]
    save_file(rng, str(ckpt / "rng.safetensors"))


def _optimizer_state_reshaped(ckpt: Path) -> None:
    opt = torch.load(ckpt / "optimizer.pt", weights_only=True)
    state = opt["optimizer"]["state"][0]
    state["exp_avg"] = state["exp_avg"].reshape(-1)[:1].clone()
    torch.save(opt, ckpt / "optimizer.pt")


def _unlisted_ema(ckpt: Path) -> None:
    shutil.copy(ckpt / "trainable.safetensors", ckpt / "ema.safetensors")


# (id, damage, manifest rewritten, expected fragment, also on serve)
DAMAGE = [
    ("tensor-removed", lambda c: _edit_tensors(c, _drop_one), False, "trainable.safetensors' has", True),
    ("tensor-removed-manifest-rewritten", lambda c: _edit_tensors(c, _drop_one), True, "lacks tensor", True),
    ("byte-flipped", _flip_byte, False, "fails its checksum", True),
    ("nan-normalisation", _nan_norm, False, "state.json", True),
    ("nan-normalisation-manifest-rewritten", _nan_norm, True, "state.json': normalization.action.low[0] is not finite",
     True),
    ("broadcastable-shape-manifest-rewritten", lambda c: _edit_tensors(c, _broadcastable), True, "has shape [1,", True),
    ("truncated", _truncate("trainable.safetensors"), False, "trainable.safetensors", True),
    ("zero-byte-optimizer", _truncate("optimizer.pt", 0), False, "optimizer.pt", True),
    ("zero-byte-optimizer-manifest-rewritten", _truncate("optimizer.pt", 0), True, "optimizer.pt' is not a readable",
     False),  # serving never reads the optimizer
    ("header-corrupt", _corrupt_header, False, "rng.safetensors", True),
    ("step-negative-manifest-rewritten", lambda c: _state(c, step=-5), True, "does not match the manifest's step", True),
    ("rng-without-pooling-manifest-rewritten", _rng_without_pooling, True, "lacks tensor 'pooling'", False),
    ("optimizer-state-reshaped-manifest-rewritten", _optimizer_state_reshaped, True, "state.0.exp_avg has shape [1]",
     False),
    ("no-manifest", lambda c: (c / "manifest.json").unlink(), False, "has no manifest.json", True),
    ("unlisted-ema", _unlisted_ema, False, "not in the checkpoint's manifest.json", True),
]


def _damaged(damage: Callable[[Path], None], rewrite: bool, command: str) -> Callable[[Path], tuple[str, ...]]:
    def setup(tmp: Path) -> tuple[str, ...]:
        run, ckpt = _copy(tmp)
        damage(ckpt)
        if rewrite:
            _rewrite_manifest(ckpt)
        if command == "serve":
            return ("serve", "--checkpoint", str(run), "--port", "0")
        if command == "profile":
            return ("profile", "grad-conflict", "--checkpoint", str(run), "--samples", "2", "-o", str(tmp / "out"))
        return ("align", "--resume", str(run), "--max-steps", str(STEPS + 1))
    return setup


def _resume(*flags: str) -> Callable[[Path], tuple[str, ...]]:
    def setup(tmp: Path) -> tuple[str, ...]:
        run, _ = _copy(tmp)
        return ("align", "--resume", str(run), *flags)
    return setup


def _output_over_run(tmp: Path) -> tuple[str, ...]:
    run, _ = _copy(tmp)
    return ("align", "--vla", "openvla", "--teacher", "vggt", "--preset", "tiny", "-o", str(run))


def _output_file(tmp: Path) -> tuple[str, ...]:
    (tmp / "file").write_text("x")
    return ("align", "--vla", "openvla", "--teacher", "vggt", "--preset", "tiny", "-o", str(tmp / "file"))


CASES = [
    *(Case(f"{command}-{name}", fragment, setup=_damaged(damage, rewrite, command))
      for name, damage, rewrite, fragment, on_serve in DAMAGE
      for command in (("serve", "resume") if on_serve else ("resume",))),
    *(Case(f"profile-{name}", fragment, setup=_damaged(damage, rewrite, "profile"))
      for name, damage, rewrite, fragment, _ in DAMAGE if name in ("byte-flipped", "broadcastable-shape-manifest-rewritten")),
    Case("resume-layers-changed", "layers.vla: [", setup=_resume("--layers", "1:0")),
    Case("resume-projector-changed", "projector.name: 'rocket' -> 'shared'", setup=_resume("--projector", "shared")),
    Case("resume-pooling-changed", "alignment.pooling: 'bilinear' -> 'random'", setup=_resume("--pooling", "random")),
    Case("resume-coefficient-changed", "alignment.coefficient", setup=_resume("--coefficient", "0")),
    Case("resume-batch-changed", f"training.batch_size: {BATCH} -> {2 * BATCH}", setup=_resume("--batch-size", str(2 * BATCH))),
    Case("resume-seed-changed", "training.seed", setup=_resume("--seed", "3")),
    Case("resume-fewer-steps", f"--max-steps 1 is below the checkpoint's step {STEPS}", setup=_resume("--max-steps", "1")),
    Case("resume-finished", f"nothing to do: the run is at step {STEPS} of {STEPS}", code=0, setup=_resume()),
    Case("resume-same-steps", f"nothing to do: the run is at step {STEPS} of {STEPS}", code=0,
         setup=_resume("--max-steps", str(STEPS))),
    Case("resume-missing-folder", "does not exist", args=("align", "--resume", "runs/nope")),
    Case("output-holds-a-run", "continue it with --resume", setup=_output_over_run),
    Case("output-is-a-file", "is a file", setup=_output_file),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_checkpoint(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


def test_refused_resume_rewrites_nothing(tmp_path: Path) -> None:
    """A refused resume leaves the checkpoint, `latest` and metrics exactly as they were."""
    run, ckpt = _copy(tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, _ = run_rocket("align", "--resume", str(run), "--max-steps", "1")
    assert code == 2
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_foreign_tensor_files_are_checked_by_keys_and_shapes(tmp_path: Path) -> None:
    """Folders without a manifest (e.g. OpenVLA-OFT): safetensors and torch files, keys and exact shapes."""
    save_file({"a": torch.zeros(4, 8), "b": torch.zeros(3)}, str(tmp_path / "w.safetensors"))
    torch.save({"head": {"w": torch.zeros(2, 2)}}, tmp_path / "h.pt")
    check_tensors(tmp_path / "w.safetensors", {"a": (4, 8), "b": (3,)})
    check_tensors(tmp_path / "h.pt", {"head.w": (2, 2)})
    for expected, fragment in (({"a": (4, 8)}, "unexpected tensor 'b'"), ({"a": (4, 8), "b": (3,), "c": (1,)},
                               "lacks tensor 'c'"), ({"a": (1, 8), "b": (3,)}, "tensor 'a' has shape [4, 8]")):
        with pytest.raises(RocketError, match=re.escape(fragment)):
            check_tensors(tmp_path / "w.safetensors", expected)
    assert check_tensors(tmp_path / "w.safetensors", {"a": (4, 8)}, exact=False) is None
    (tmp_path / "w.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:40])
    with pytest.raises(RocketError, match="w.safetensors' is not a readable tensor file"):
        check_tensors(tmp_path / "w.safetensors", {"a": (4, 8)})
    (tmp_path / "h.pt").write_bytes(b"")
    with pytest.raises(RocketError, match="h.pt' is not a readable tensor file .0 bytes"):
        check_tensors(tmp_path / "h.pt", {"head.w": (2, 2)})


def test_manifest_covers_every_file_and_the_step() -> None:
    ckpt = find_checkpoint(BASE["run"])
    doc = json.loads((ckpt / "manifest.json").read_text())
    assert doc["step"] == STEPS and set(doc["files"]) == {p.name for p in ckpt.iterdir()} - {"manifest.json"}
    trainable = load_file(str(ckpt / "trainable.safetensors"))
    listed = doc["files"]["trainable.safetensors"]["tensors"]
    assert {k: v["shape"] for k, v in listed.items()} == {k: list(t.shape) for k, t in trainable.items()}
    assert any(k.startswith("optimizer.state.") for k in doc["files"]["optimizer.pt"]["tensors"])
    assert load_checkpoint(ckpt).step == STEPS
