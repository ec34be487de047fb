"""The trainer end to end on the toy plugins and the bundled dataset: exact resume after a real kill,
2-process DDP equivalence, non-finite losses, coefficient 0, checkpoint contents."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rocket_core.engine import plan_run
from rocket_core.errors import RocketError
from rocket_core.train.checkpoint import find_checkpoint, load_checkpoint
from rocket_core.train.trainer import Trainer
from tests.integration.pause import start_paused
from tests.integration.train_toy import toy_registry, toy_spec

SCRIPT = Path(__file__).with_name("train_toy.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _metrics(run_dir: Path) -> dict[int, dict]:
    """step -> record (a resumed run appends; later records of a step win)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {rec["step"]: rec for rec in map(json.loads, lines)}


def _run(*args: object) -> None:
    subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], check=True, env=ENV, timeout=300)


@pytest.mark.slow
def test_resume_after_kill_is_bit_exact(tmp_path: Path) -> None:
    steps, every = 24, 3
    _run(tmp_path / "straight", steps, 2, every)
    straight = _metrics(tmp_path / "straight")

    killed = tmp_path / "killed"
    kill_at = every + 2  # after step 5, two steps past the save at step 3
    cmd = [sys.executable, str(SCRIPT), str(killed), str(steps), "2", str(every)]
    proc, _ = start_paused(cmd, f"step-{kill_at}", tmp_path / "markers", env=ENV)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(killed).step == kill_at // every * every, "resumes from the last save before the kill"
    # a kill mid-write can leave a temp folder, never a half-written checkpoint under its final name
    assert all((c / "state.json").is_file() and (c / "trainable.safetensors").is_file()
               for c in (killed / "checkpoints").glob("step-*"))
    _run(killed, steps, 2, every, killed)
    resumed = _metrics(killed)
    assert sorted(resumed) == list(range(1, steps + 1))
    for step in range(1, steps + 1):
        for key in ("action_loss", "align_loss", "total_loss", "grad_norm", "lr"):
            assert resumed[step][key] == straight[step][key], (step, key)  # bit for bit


@pytest.mark.slow
def test_two_processes_match_one_at_the_same_global_batch(tmp_path: Path) -> None:
    _run(tmp_path / "one", 5, 2, 0)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
           str(tmp_path / "two"), "5", "1", "0"]
    subprocess.run(cmd, check=True, env=ENV, timeout=300)
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert sorted(two) == [1, 2, 3, 4, 5]
    for step in one:
        for key in ("action_loss", "align_loss", "total_loss"):
            assert two[step][key] == pytest.approx(one[step][key], rel=1e-4), (step, key)
    assert load_checkpoint(tmp_path / "two").extra["world_size"] == 2


def test_checkpoint_contents_and_metrics(tmp_path: Path) -> None:
    result = Trainer(plan_run(toy_spec(3, 2, 0, ema_decay=0.9), toy_registry()), tmp_path, progress=False).train()
    ckpt = find_checkpoint(tmp_path)
    assert ckpt == result.checkpoint and ckpt.name == "step-000003"
    names = set(load_file(str(ckpt / "trainable.safetensors")))
    assert any("lora_A" in n for n in names) and any(n.startswith("vla.action_head") for n in names)
    assert not any(n.startswith("vla.body.embed") for n in names)  # frozen base weights are not saved
    projector = load_file(str(ckpt / "projector.safetensors"))
    assert "0.0.fc1.weight" in projector  # reference names
    assert set(load_file(str(ckpt / "ema.safetensors"))) == names
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 3 and state["samples_seen"] == 6 and "torch" in state["versions"]
    assert state["normalization"]["action"]["mode"] == "quantile" and len(state["normalization"]["state"]["low"]) == 8
    record = _metrics(tmp_path)[3]
    assert {"action_loss", "align_loss", "grad_norm", "lr", "samples_per_s", "align/pair0_v1_t0"} <= set(record)
    assert record["total_loss"] == pytest.approx(record["action_loss"] + 0.5 * record["align_loss"])


def test_non_finite_loss_stops_with_the_term_and_keeps_the_checkpoint(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = Trainer(plan_run(toy_spec(6, 2, 2), toy_registry()), tmp_path, progress=False)
    head = trainer.acc.unwrap_model(trainer.module).head
    original = head.forward

    def poisoned(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = original(*args, **kwargs)
        if trainer.step == 2:  # the third step
            out.pair_losses = out.pair_losses * torch.tensor([1.0, float("nan"), 1.0])
        return out

    monkeypatch.setattr(head, "forward", poisoned)
    with pytest.raises(RocketError) as err:
        trainer.train()
    message = str(err.value)
    assert "non-finite the alignment loss of pair 1 (VLA layer 2, teacher layer 1) at step 3" in message
    assert "last good checkpoint: step-000002" in message
    assert load_checkpoint(tmp_path).step == 2


def test_coefficient_zero_never_builds_the_teacher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.toy_plugins import ToyTeacher

    def refuse(spec):  # type: ignore[no-untyped-def]
        raise AssertionError("the teacher must not be built with coefficient 0")

    monkeypatch.setattr(ToyTeacher, "build", classmethod(lambda cls, spec: refuse(spec)))
    spec = toy_spec(2, 2, 0).model_copy(update={"alignment": toy_spec(2, 2, 0).alignment.model_copy(
        update={"coefficient": 0.0})})
    result = Trainer(plan_run(spec, toy_registry()), tmp_path, progress=False).train()
    assert [r["align_loss"] for r in result.history] == [0.0, 0.0]
    assert load_checkpoint(tmp_path).projector is None


def test_gradient_accumulation_matches_the_larger_batch(tmp_path: Path) -> None:
    """2 micro-batches of 1 = 1 batch of 2: same samples, same mean loss, same update."""
    big = Trainer(plan_run(toy_spec(3, 2, 0), toy_registry()), tmp_path / "big", progress=False).train()
    accum = Trainer(plan_run(toy_spec(3, 1, 0, grad_accum=2), toy_registry()), tmp_path / "accum",
                    progress=False).train()
    for a, b in zip(big.history, accum.history):
        for key in ("action_loss", "align_loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), key


def test_fsdp_without_gpus_is_a_clear_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RocketError, match="'fsdp' needs CUDA GPUs; use 'ddp' on CPU"):
        Trainer(plan_run(toy_spec(1, 2, 0, distributed="fsdp"), toy_registry()), tmp_path, progress=False)


def _pooling(spec, pooling: str):  # type: ignore[no-untyped-def]
    return spec.model_copy(update={"alignment": spec.alignment.model_copy(update={"pooling": pooling})})


def test_random_pooling_resume_is_bit_exact(tmp_path: Path) -> None:
    """Random pooling draws from its own generator, saved in the checkpoint: a resume redraws the same tokens."""
    reg = toy_registry()
    straight = Trainer(plan_run(_pooling(toy_spec(6, 2, 3, ema_decay=0.9), "random"), reg), tmp_path / "a",
                       progress=False).train()
    resumed = Trainer(plan_run(_pooling(toy_spec(6, 2, 3, ema_decay=0.9), "random"), reg), tmp_path / "b",
                      resume=tmp_path / "a" / "checkpoints" / "step-000003", progress=False).train()
    assert [r["step"] for r in resumed.history] == [4, 5, 6]
    for a, b in zip(straight.history[3:], resumed.history):
        for key in ("action_loss", "align_loss", "grad_norm"):
            assert a[key] == b[key], (a["step"], key)
    for name in ("trainable", "ema"):
        x = load_file(str(tmp_path / "a" / "checkpoints" / "step-000006" / f"{name}.safetensors"))
        y = load_file(str(tmp_path / "b" / "checkpoints" / "step-000006" / f"{name}.safetensors"))
        assert all(torch.equal(x[k], y[k]) for k in x), name


def test_a_run_failing_before_its_first_step_leaves_no_folder(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.toy_plugins import ToyVLAModel

    def broken(self, batch, layers):  # type: ignore[no-untyped-def]
        raise RocketError("toy-vla returned one token too few")

    monkeypatch.setattr(ToyVLAModel, "forward_align", broken)
    trainer = Trainer(plan_run(toy_spec(3, 2, 0), toy_registry()), tmp_path / "run", progress=False)
    with pytest.raises(RocketError, match="one token too few"):
        trainer.train()
    assert not (tmp_path / "run").exists()


def test_wall_clock_checkpoints_and_a_finished_run(tmp_path: Path) -> None:
    """`checkpoint_minutes` saves without save_every; resuming a finished run changes nothing."""
    reg = toy_registry()
    Trainer(plan_run(toy_spec(3, 2, 0), reg), tmp_path, progress=False, checkpoint_minutes=1e-9).train()
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == [f"step-00000{i}" for i in (1, 2, 3)]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    again = Trainer(plan_run(toy_spec(3, 2, 0), reg), tmp_path, resume=tmp_path, progress=False).train()
    assert again.steps == 3 and again.history == [] and {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    with pytest.raises(RocketError, match="--max-steps 2 is below the checkpoint's step 3"):
        Trainer(plan_run(toy_spec(2, 2, 0), reg), tmp_path, resume=tmp_path, progress=False)


def test_first_ctrl_c_stops_after_the_step_second_aborts() -> None:
    from rocket_core.train.trainer import _Interrupt

    stop = _Interrupt(announce=False)
    stop._handle(signal.SIGINT, None)
    assert stop.requested
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)
