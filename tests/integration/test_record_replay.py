"""`rocket eval --record DIR` writes a LeRobot v3 dataset; `--policy replay:DIR` retraces it step by step.

The toy benchmark runs everywhere (CI included). The LIBERO test records a real episode whose gripper
opens and closes and replays it from the same init state: the eef positions and gripper joint positions
must match the recording at every step (a wrong gripper map or un-normalisation would diverge). It is
skipped only where LIBERO is not set up, never under CI=true (then it sets LIBERO up first).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rocket_core.data.lerobot import LeRobotReader
from rocket_core.eval.server import serve_callable
from tests.integration.test_libero_episode import _rocket, libero_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.sim

CHUNK = 8


def _scripted(action_dim: int = 7):  # noqa: ANN202
    """A policy moving the arm with the state and toggling the gripper every chunk (open, close, open...)."""
    calls = {"n": 0}

    def policy(obs: dict) -> np.ndarray:
        calls["n"] += 1
        state = np.asarray(obs["state"], dtype=np.float64)
        arm = np.tile(np.concatenate([0.4 - state[:3] * 0.5, np.zeros(3)])[None], (CHUNK, 1))
        arm[:, 2] += np.linspace(-0.3, 0.3, CHUNK)
        grip = np.full((CHUNK, 1), -1.0 if calls["n"] % 2 else 1.0)
        return np.concatenate([arm, grip], axis=1)[:, :action_dim]

    return policy


def _record_and_replay(tmp_path: Path, benchmark: str, steps: int, meta: dict) -> tuple[LeRobotReader, LeRobotReader]:
    first, second = tmp_path / "rec", tmp_path / "replay"
    common = ("--benchmark", benchmark, "--tasks", "0", "--episodes", "0", "--max-steps", str(steps),
              "--videos", "none", "--no-progress")
    with serve_callable(meta, _scripted(), port=0) as server:
        res = _rocket("eval", *common, "--policy", server.url, "--record", str(first), "-o", str(tmp_path / "e1"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    res = _rocket("eval", *common, "--policy", f"replay:{first}", "--record", str(second), "-o", str(tmp_path / "e2"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return LeRobotReader(first), LeRobotReader(second)


def test_toy_record_then_replay_retraces_the_episode(tmp_path: Path) -> None:
    meta = {"vla": "scripted", "num_images": 2, "state_dim": 8, "action_dim": 7, "chunk_size": CHUNK}
    rec, rep = _record_and_replay(tmp_path, "toy", 24, meta)
    assert rec.info["codebase_version"] == "v3.0" and set(rec.camera_keys) == {"image", "wrist_image"}
    assert len(rec) == len(rep) > CHUNK
    assert np.array_equal(rec.column("state"), rep.column("state"))
    assert np.array_equal(rec.column("actions"), rep.column("actions"))
    assert set(rec.column("actions")[:, -1].tolist()) == {-1.0, 1.0}


def test_libero_record_then_replay_matches_step_by_step(libero_env: None, tmp_path: Path) -> None:  # noqa: F811 (the fixture)
    meta = {"vla": "scripted", "num_images": 2, "state_dim": 8, "action_dim": 7, "chunk_size": CHUNK}
    rec, rep = _record_and_replay(tmp_path, "libero_spatial", 40, meta)
    states, again = rec.column("state"), rep.column("state")
    assert len(states) == len(again) == 40
    assert rec.frame_shape("image") == (256, 256, 3)
    commands = rec.column("actions")[:, -1]
    assert set(commands.tolist()) == {-1.0, 1.0}  # the gripper opened and closed
    fingers = states[:, 6] - states[:, 7]
    assert fingers.max() - fingers.min() > 0.01  # ... and really moved
    assert np.abs(states[:, :3] - again[:, :3]).max() < 1e-6  # eef positions, step by step
    assert np.abs(states[:, 6:8] - again[:, 6:8]).max() < 1e-6  # gripper joint positions
