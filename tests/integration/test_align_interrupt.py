"""`rocket align` as a user runs it (tiny presets): Ctrl-C keeps the work, a run whose first save died is
restarted, and `rocket serve` picks the EMA weights when the checkpoint has them."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rocket_core.train.checkpoint import find_checkpoint, load_checkpoint
from tests.integration.pause import start_paused
from tests.robustness.harness import run_rocket

REPO = Path(__file__).resolve().parents[2]
TINY = ("align", "--vla", "openvla", "--teacher", "vggt", "--preset", "tiny")
STEPS, INTERRUPT_AT = 10, 2


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rocket_cli", *args]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_ctrl_c_checkpoints_prints_the_resume_command_and_resume_matches(tmp_path: Path) -> None:
    straight, run = tmp_path / "straight", tmp_path / "run"
    done = subprocess.run(_cli(*TINY, "--max-steps", str(STEPS), "-o", str(straight)), cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = " ".join(done.stdout.split())
    assert f"done: step {STEPS} of {STEPS}" in out and "steps/s" in out and "metrics.jsonl" in out
    proc, marker = start_paused(_cli(*TINY, "--max-steps", str(STEPS), "-o", str(run)), f"step-{INTERRUPT_AT}",
                                tmp_path / "markers", cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # default flags: no --save-every
    proc.send_signal(signal.SIGINT)  # Ctrl-C right after step INTERRUPT_AT, then let it go on
    marker.unlink()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-2000:]
    assert load_checkpoint(run).step == INTERRUPT_AT, "the interrupted step is finished and checkpointed"
    assert f"continue with: rocket align --resume {run}" in " ".join(stdout.split())
    resumed = subprocess.run(_cli("align", "--resume", str(run)), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _records(straight), _records(run)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    for key in ("action_loss", "align_loss", "grad_norm"):
        assert a[-1][key] == b[-1][key], key


def test_resume_of_a_run_whose_first_save_died_restarts_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, text = run_rocket(*TINY, "--max-steps", "2", "-o", str(run))
    assert code == 0, text
    first = _records(run)
    shutil.rmtree(run / "checkpoints")  # as if killed inside its first save
    (run / "checkpoints" / ".tmp-step-000002-1").mkdir(parents=True)
    code, text = run_rocket(*TINY, "--max-steps", "2", "-o", str(run))
    assert code == 2 and f"--resume {run}" in " ".join(text.split())
    code, text = run_rocket("align", "--resume", str(run))
    assert code == 0, text
    assert "restarting the run from step 0" in " ".join(text.split())
    assert _records(run) == [{**r, "samples_per_s": s["samples_per_s"]} for r, s in zip(first, _records(run))]
    assert not list((run / "checkpoints").glob(".tmp-*")) and load_checkpoint(run).step == 2


def test_serve_uses_the_ema_weights_when_the_checkpoint_has_them(tmp_path: Path) -> None:
    from rocket_core.eval.policy import Policy

    run = tmp_path / "run"
    (tmp_path / "ema.yaml").write_text("training:\n  ema_decay: 0.5\n")
    code, text = run_rocket(*TINY, "--max-steps", "2", "-c", str(tmp_path / "ema.yaml"), "-o", str(run))
    assert code == 0, text
    ckpt = find_checkpoint(run)
    for ema, name in ((None, "ema"), (False, "trainable")):
        policy = Policy.from_checkpoint(run, ema=ema)
        assert policy.source.endswith(f"({name} weights)")
        saved = load_file(str(ckpt / f"{name}.safetensors"))
        named = dict(policy.model.named_parameters())
        assert all(torch.equal(named[k[4:]], saved[k]) for k in saved if k.startswith("vla."))
    ema, plain = load_file(str(ckpt / "ema.safetensors")), load_file(str(ckpt / "trainable.safetensors"))
    assert any(not torch.equal(ema[k], plain[k]) for k in ema), "EMA and trained weights must differ here"
