"""kill -9 at random points of training and saving, ten times, then resume: the run ends exactly where an
uninterrupted one does, `latest` never names a checkpoint that fails verification, and no step is logged
twice. Toy plugins, so it stays well under 2 minutes on a 2-core runner."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from rocket_core.train.checkpoint import find_checkpoint, latest_name, load_checkpoint

SCRIPT = Path(__file__).with_name("train_toy.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
STEPS, BATCH = 30, 2


def _lines(run: Path) -> int:
    log = run / "metrics.jsonl"
    return len(log.read_text().splitlines()) if log.is_file() else 0


def _final(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(find_checkpoint(run) / "trainable.safetensors"))


def test_ten_kills_then_resume_equal_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, str(SCRIPT), str(straight), str(STEPS), str(BATCH), "10"], check=True, env=ENV, timeout=300)
    run, rng, kills, in_save = tmp_path / "killed", random.Random(0), 0, 0
    while kills < 10:
        # save every step, so a kill lands in a save about as often as in a step
        proc = subprocess.Popen([sys.executable, str(SCRIPT), run, str(STEPS), str(BATCH), "1", str(run)], env=ENV)
        target = _lines(run) - (_lines(run) > 0) + rng.randint(1, 3)  # the resume first rewinds the log
        deadline = time.time() + 120
        while proc.poll() is None and _lines(run) < target and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.08))
        if proc.poll() is not None:
            break  # finished before this kill: the remaining kills have nothing left to interrupt
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        in_save += bool(list((run / "checkpoints").glob(".tmp-*")))  # killed inside a save
        if latest_name(run) is not None:
            assert load_checkpoint(run).step <= STEPS  # verifies every checksum: latest is always whole
    assert kills >= 5, "most kills must land mid-run"
    assert in_save >= 1, "some kills must land inside a save (7 of 10 do on a loaded 2-core machine)"
    subprocess.run([sys.executable, str(SCRIPT), str(run), str(STEPS), str(BATCH), "1", str(run)], check=True, env=ENV, timeout=300)
    assert not list((run / "checkpoints").glob(".tmp-*")), "stale temp folders are removed at start"
    a, b = _final(straight), _final(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1)), "every step logged exactly once"
