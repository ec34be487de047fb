"""One real, headless LIBERO episode: `rocket serve` (tiny random OpenVLA) + `rocket eval` in the isolated env.

Runs where `rocket eval --setup libero` has been done; in CI (CI=true) the set-up runs first (about 2-3
minutes on a fresh machine: Mesa libraries, rlinf-libero, assets). Elsewhere it is skipped with the command.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rocket_core.eval.client import wait_healthy
from rocket_core.eval.video import count_frames
from rocket_plugins.benchmarks.libero import LiberoBenchmark

pytestmark = pytest.mark.sim

REPO = Path(__file__).resolve().parents[2]
APP = ("import sys, typer\nfrom rocket_cli import eval as ev, serve\napp = typer.Typer()\nev.register(app)\n"
       "serve.register(app)\n@app.callback()\ndef _c(): pass\napp()")
STEPS = 24


def _rocket(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", APP, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def libero_env() -> None:
    env = LiberoBenchmark.env()
    assert env is not None
    if not env.ready():
        if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
            pytest.skip(f"LIBERO is not set up ({env.path}); run: rocket eval --setup libero")
        res = _rocket("eval", "--setup", "libero", "--yes", timeout=1800)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert env.ready()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_headless_libero_episode(libero_env: None, tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", APP, "serve", "--vla", "openvla", "--preset", "tiny",
                               "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"ws://127.0.0.1:{port}"
    try:
        wait_healthy(url, 180)
        out = tmp_path / "eval"
        res = _rocket("eval", "--benchmark", "libero_spatial", "--policy", url, "--tasks", "0", "--episodes", "0",
                      "--max-steps", str(STEPS), "--videos", "all", "-o", str(out), "--no-progress")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        # resume: the episode is on disk, nothing runs again
        again = _rocket("eval", "--benchmark", "libero_spatial", "--policy", url, "--tasks", "0", "--episodes", "0",
                        "--max-steps", str(STEPS), "-o", str(out), "--no-progress")
        assert again.returncode == 0 and "1 episode(s) already done" in again.stdout, again.stderr[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=30)
    results = json.loads((out / "results.json").read_text())
    suite = results["suites"]["spatial"]
    assert results["overall"]["episodes"] == 1
    assert suite["preset"] == "openvla-oft" and suite["protocol"]["max_steps"] == STEPS
    assert suite["deviations"] == {"max_steps": {"preset": 220, "used": STEPS, "reason": "command-line option"}}
    assert suite["protocol"]["wait_steps"] == 10 and suite["protocol"]["render_size"] == 256
    assert "libero:rlinf-libero" in results["versions"]
    task = suite["tasks"][0]
    assert task["episodes"] == 1 and task["instruction"].startswith("pick up the black bowl")
    record = json.loads((out / "episodes/spatial/task-000/ep-000.json").read_text())
    assert record["queries"] == 3  # 24 steps, chunks of 8 open-loop
    if not record["success"]:  # a random policy: the full budget runs
        assert record["steps"] == STEPS and record["env_steps"] == STEPS + 10
    video = out / record["video"]
    assert video.is_file() and count_frames(video) == record["env_steps"] + 1 == record["video_frames"]

