"""kill -9 at ten named points of training and saving, then resume: the run ends exactly where an
uninterrupted one does, `latest` never names a checkpoint that fails verification, and no step is logged
twice. Kills land at `rocket_core.testhook` points (after a step, inside a save between the temp folder and
its rename, between the rename and `latest`), so every run checks the same states. Toy plugins, so it stays
well under 2 minutes on a 2-core runner."""
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

from rocket_core.train.checkpoint import find_checkpoint, latest_name, load_checkpoint
from tests.integration.pause import start_paused

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("train_toy.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
STEPS, BATCH = 30, 2
# (point, step): each kind in turn, at steps 2, 5, ..., 29; every step is saved (save_every 1)
KILLS = [(("step", "save-written", "save-renamed")[i % 3], 2 + 3 * i) for i in range(10)]


def _final(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(find_checkpoint(run) / "trainable.safetensors"))


def test_ten_kills_then_resume_equal_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, str(SCRIPT), str(straight), str(STEPS), str(BATCH), "10"], check=True, env=ENV, timeout=300)
    run = tmp_path / "killed"
    for kind, step in KILLS:
        cmd = [sys.executable, str(SCRIPT), str(run), str(STEPS), str(BATCH), "1", str(run)]
        proc, _ = start_paused(cmd, f"{kind}-{step}", tmp_path / "markers" / f"{kind}-{step}", env=ENV)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert latest_name(run) == f"step-{step - 1:06d}", (kind, step)  # `latest` moves last, after a whole save
        assert load_checkpoint(run).step == step - 1  # verifies every checksum: latest is always whole
        in_save = list((run / "checkpoints").glob(".tmp-*"))
        assert bool(in_save) == (kind == "save-written"), (kind, step, in_save)
        assert (run / "checkpoints" / f"step-{step:06d}").is_dir() == (kind == "save-renamed"), (kind, step)
    subprocess.run([sys.executable, str(SCRIPT), str(run), str(STEPS), str(BATCH), "1", str(run)], check=True, env=ENV, timeout=300)
    assert not list((run / "checkpoints").glob(".tmp-*")), "stale temp folders are removed at start"
    a, b = _final(straight), _final(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1)), "every step logged exactly once"
