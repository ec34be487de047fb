"""RoboTwin plumbing that needs no simulator: requirements, protocol, observation/action mapping."""
from __future__ import annotations

import numpy as np
import pytest

from rocket_plugins.benchmarks.robotwin import RoboTwinBenchmark, runtime_requirements
from rocket_plugins.benchmarks.robotwin_sim import QPOS_DIM, policy_observation, to_qpos_action

REQUIRES = ["gymnasium==0.29.1", "torch==2.8.0", "numpy==1.26.4",
            'sapien==3.0.0b1; platform_system == "Linux" and platform_machine == "x86_64"', "toppra==0.6.3"]


def test_runtime_requirements_drop_only_torch() -> None:
    assert runtime_requirements(REQUIRES) == [r for r in REQUIRES if not r.startswith("torch")]


def _obs(h: int = 240, w: int = 320) -> dict:
    rng = np.random.default_rng(0)
    cams = {c: {"rgb": rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "intrinsic_cv": np.eye(3)}
            for c in ("head_camera", "left_camera", "right_camera")}
    return {"observation": cams, "joint_action": {"vector": np.arange(14.0), "left_arm": np.zeros(6)},
            "endpose": {}, "pointcloud": []}


def test_observation_mapping_on_documented_shapes() -> None:
    proto = RoboTwinBenchmark.protocol("clean", "openvla")
    out = policy_observation(_obs(), proto)
    assert [im.shape for im in out["images"]] == [(224, 224, 3)] * 3
    assert out["state"].dtype == np.float32 and out["state"].tolist() == list(range(14))
    pi = RoboTwinBenchmark.protocol("randomized", "openpi")
    padded = policy_observation(_obs(), pi)["images"][0]
    assert padded.shape == (224, 224, 3) and padded[:10].max() == 0  # 4:3 frame letterboxed
    bad = _obs()
    del bad["observation"]["left_camera"]
    with pytest.raises(KeyError, match="left_camera"):
        policy_observation(bad, proto)


def test_action_mapping() -> None:
    assert to_qpos_action(np.arange(16.0)).shape == (QPOS_DIM,)
    with pytest.raises(ValueError, match="14"):
        to_qpos_action(np.zeros(7))


def test_protocol_records_robotwin_eval() -> None:
    p = RoboTwinBenchmark.protocol("clean", "openvla")
    assert (p.trials_per_task, p.action_dim, p.env_seed) == (100, 14, 100000)
    assert p.cameras == ("head_camera", "left_camera", "right_camera")


@pytest.mark.sim
def test_task_discovery_in_the_runtime_env() -> None:
    env = RoboTwinBenchmark.env()
    if env is None or not env.ready():
        pytest.skip("RoboTwin is not set up; run: rocket eval --setup robotwin")
    from rocket_core.eval.runner import list_tasks

    tasks = list_tasks(RoboTwinBenchmark, "clean", RoboTwinBenchmark.protocol("clean", "openvla"))
    assert len(tasks) == 50 and tasks[0]["name"] == "adjust_bottle" and tasks[0]["step_limit"] > 0
    assert all(t["instruction"] for t in tasks)
    if not (RoboTwinBenchmark.assets_dir() / "assets" / "embodiments").is_dir():
        assert tasks[0]["fetch"] == "rocket eval --setup robotwin --assets"
