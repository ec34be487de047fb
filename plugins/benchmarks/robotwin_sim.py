"""RoboTwin 2.0 simulator side (runs in the isolated `robotwin` env: rlinf-robotwin-runtime, sapien).

Task discovery reads the runtime's packaged files (`configs/task/_eval_step_limit.yml`,
`description/task_instruction/<task>.json`); observation/action mapping follows the runtime's
`get_obs()` dict: `observation.<camera>.rgb` (H, W, 3) uint8 for head/left/right cameras and
`joint_action.vector` (14,) = per arm 6 joints + gripper; actions are 14-dim qpos targets given to
`take_action(action, action_type="qpos")`.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from importlib.resources import files
from typing import Any

import numpy as np

from rocket_core.eval.protocol import Protocol
from rocket_core.eval.rollout import prepare_image

QPOS_DIM = 14


def _yaml(name: str) -> Any:
    import yaml

    return yaml.safe_load(files("robotwin.configs.task").joinpath(name).read_text())


def list_tasks(suite: str, protocol: Protocol | None = None) -> list[dict[str, Any]]:
    limits = _yaml("_eval_step_limit.yml")
    out = []
    for i, (task, limit) in enumerate(sorted(limits.items())):
        desc = files("robotwin.description").joinpath("task_instruction", f"{task}.json")
        text = json.loads(desc.read_text()).get("full_description", task) if desc.is_file() else task.replace("_", " ")
        skip, fetch = None, None
        assets = os.environ.get("ASSETS_PATH", "")
        if not os.path.isdir(os.path.join(assets, "assets", "embodiments")):
            skip, fetch = f"RoboTwin assets missing at {assets or '$ASSETS_PATH'}", "rocket eval --setup robotwin --assets"
        out.append({"index": i, "name": task, "instruction": text, "step_limit": int(limit),
                    "num_init_states": None, **({"skip": skip, "fetch": fetch} if skip else {})})
    return out


def policy_observation(obs: dict[str, Any], protocol: Protocol) -> dict[str, Any]:
    """RoboTwin `get_obs()` dict -> {"images": [...] in protocol camera order, "state": (14,)}."""
    cams = obs.get("observation", {})
    missing = [c for c in protocol.cameras if c not in cams or "rgb" not in cams[c]]
    if missing:
        raise KeyError(f"RoboTwin observation lacks rgb for {missing}; has {sorted(cams)}")
    images = [prepare_image(np.asarray(cams[c]["rgb"])[..., :3], protocol) for c in protocol.cameras]
    state = np.asarray(obs["joint_action"]["vector"], dtype=np.float32).reshape(-1)
    if state.shape[0] != QPOS_DIM:
        raise ValueError(f"joint_action.vector has {state.shape[0]} values, expected {QPOS_DIM}")
    return {"images": images, "state": state}


def to_qpos_action(action: np.ndarray) -> np.ndarray:
    action = np.asarray(action, dtype=np.float64).reshape(-1)
    if action.shape[0] < QPOS_DIM:
        raise ValueError(f"RoboTwin takes {QPOS_DIM}-dim qpos actions, the policy gave {action.shape[0]}")
    return action[:QPOS_DIM]


def task_args(suite: str, task: str, seed: int) -> dict[str, Any]:
    """The runtime's task config for a suite (demo_clean / demo_randomized) with the embodiment and cameras."""
    args = _yaml(f"demo_{suite}.yml")
    embodiments = _yaml("_embodiment_config.yml")
    cameras = _yaml("_camera_config.yml")
    args.update(task_name=task, seed=seed, eval_mode=True, render_freq=0, need_plan=False, save_data=False)
    args["embodiment_config"] = embodiments
    args["camera_config"] = cameras
    return args


class RoboTwinEnv:
    def __init__(self, suite: str, task_index: int, protocol: Protocol) -> None:
        task = list_tasks(suite)[task_index]
        if task.get("skip"):
            raise RuntimeError(task["skip"] + f"; fetch them with: {task['fetch']}")
        self.task, self.suite, self.protocol = task, suite, protocol
        self.instruction = task["instruction"]
        module = importlib.import_module(f"robotwin.envs.{task['name']}")
        self.cls = getattr(module, task["name"])
        self.env: Any = None
        self.steps_limit = task["step_limit"]

    def reset(self, episode_index: int) -> dict[str, Any]:
        if self.env is not None:
            self.env.close_env()
        self.env = self.cls()
        self.env.setup_demo(now_ep_num=episode_index, **task_args(self.suite, self.task["name"],
                                                                  self.protocol.env_seed + episode_index))
        return self.env.get_obs()

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], bool]:
        self.env.take_action(to_qpos_action(action), action_type="qpos")
        return self.env.get_obs(), bool(self.env.check_success())

    def policy_observation(self, obs: dict[str, Any]) -> dict[str, Any]:
        return policy_observation(obs, self.protocol)

    def frame(self, obs: dict[str, Any]) -> np.ndarray:
        return np.asarray(obs["observation"][self.protocol.cameras[0]]["rgb"])[..., :3].astype(np.uint8)

    def close(self) -> None:
        if self.env is not None:
            self.env.close_env()


def make_env(suite: str, task: int, protocol: Protocol) -> RoboTwinEnv:
    return RoboTwinEnv(suite, task, protocol)


def probe_renderer() -> dict[str, Any]:
    """Create SAPIEN's render system, as every RoboTwin task does first; report its own error."""
    try:
        import sapien
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"sapien not importable: {type(exc).__name__}: {exc}"}
    try:
        system = sapien.render.RenderSystem()
        device = getattr(system, "device", None)
        return {"ok": True, "detail": f"sapien {sapien.__version__} renderer on {device}"}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"sapien {sapien.__version__} renderer: {type(exc).__name__}: {exc}".strip()}


if __name__ == "__main__":
    if "--probe" in sys.argv:
        print("@@rocket " + json.dumps(probe_renderer()))
