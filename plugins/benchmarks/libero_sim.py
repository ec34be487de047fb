"""LIBERO simulator side (runs in the isolated `libero` environment: rlinf-libero, robosuite, mujoco).

Follows OpenVLA-OFT's `run_libero_eval.py`: `OffScreenRenderEnv(bddl, camera 256 px)`, `env.seed(...)`,
`env.reset()`, `env.set_init_state(init_states[episode])`; proprio = eef pos + axis-angle(eef quat) +
gripper qpos; images agentview + eye-in-hand rotated 180 degrees; success = the env's `done`.
"""
from __future__ import annotations

import importlib
import io
import os
import pickle
import sys
import types
import zipfile
from typing import Any

import numpy as np

from rocket_core.eval.protocol import Protocol
from rocket_core.eval.rollout import prepare_image, quat2axisangle

os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


# What a numpy array's pickle names (numpy 1 and 2 spellings); nothing else may be looked up.
_ARRAY_GLOBALS = {("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and refuses every other global, so a tampered asset file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"'{module}.{name}' is not allowed in a LIBERO init-state file")


def load_torch_pickle(path: str, **_: Any) -> Any:
    """LIBERO's init states are numpy arrays saved with `torch.save` (a zip holding `*/data.pkl`)."""
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("data.pkl"))
        return _ArrayUnpickler(io.BytesIO(z.read(name))).load()


def _torch_shim() -> None:
    """PyPI's Linux torch is the multi-GB CUDA build; LIBERO only needs `torch.load` for numpy init states."""
    try:
        import torch  # noqa: F401
    except ImportError:
        shim = types.ModuleType("torch")
        shim.load = load_torch_pickle  # type: ignore[attr-defined]  # a stand-in module
        shim.Tensor = type("Tensor", (), {})  # type: ignore[attr-defined]  # scipy's array-API check looks it up
        shim.__rocket_shim__ = True  # type: ignore[attr-defined]  # as above
        sys.modules["torch"] = shim


def _suite(suite: str, package: str = "libero") -> Any:
    """A LIBERO-style benchmark suite of `package` (libero, or liberoplus which mirrors its layout)."""
    _torch_shim()
    benchmark = importlib.import_module(f"{package}.{package}.benchmark")
    return benchmark.get_benchmark_dict()[f"libero_{suite}"]()


def list_tasks(suite: str, protocol: Protocol | None = None) -> list[dict[str, Any]]:
    bench = _suite(suite)
    out = []
    for i in range(bench.get_num_tasks()):
        task = bench.get_task(i)
        out.append({"index": i, "name": task.name, "instruction": task.language,
                    "num_init_states": int(len(bench.get_task_init_states(i)))})
    return out


class LiberoEnv:
    package = "libero"

    def __init__(self, suite: str, task_index: int, protocol: Protocol) -> None:
        root = importlib.import_module(f"{self.package}.{self.package}")
        envs = importlib.import_module(f"{self.package}.{self.package}.envs")
        bench = _suite(suite, self.package)
        task = bench.get_task(task_index)
        self.instruction = task.language
        self.init_states = bench.get_task_init_states(task_index)
        self.protocol = protocol
        bddl = os.path.join(root.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        self.env = envs.OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=protocol.render_size,
                                           camera_widths=protocol.render_size)

    def reset(self, episode_index: int) -> dict[str, Any]:
        self.env.seed(self.protocol.env_seed)
        self.env.reset()
        return self.env.set_init_state(self.init_states[episode_index])

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], bool]:
        obs, _reward, done, _info = self.env.step(np.asarray(action, dtype=np.float64).tolist())
        return obs, bool(done)

    def policy_observation(self, obs: dict[str, Any]) -> dict[str, Any]:
        images = [prepare_image(obs[f"{cam}_image"], self.protocol) for cam in self.protocol.cameras]
        return {"images": images, "state": self.state(obs)}

    def recording(self, obs: dict[str, Any]) -> dict[str, Any]:
        """`--record`: physical-intelligence/libero's view (render size, rotated 180 degrees)."""
        images = [np.ascontiguousarray(obs[f"{cam}_image"][::-1, ::-1]) for cam in self.protocol.cameras]
        return {"images": images, "state": self.state(obs)}

    @staticmethod
    def state(obs: dict[str, Any]) -> np.ndarray:
        """eef pos (3) + axis-angle of the eef quaternion (3) + gripper qpos (2)."""
        return np.concatenate([obs["robot0_eef_pos"], quat2axisangle(obs["robot0_eef_quat"]),
                               obs["robot0_gripper_qpos"]]).astype(np.float32)

    def frame(self, obs: dict[str, Any]) -> np.ndarray:
        return np.ascontiguousarray(obs[f"{self.protocol.cameras[0]}_image"][::-1, ::-1])

    def close(self) -> None:
        self.env.close()


def make_env(suite: str, task: int, protocol: Protocol) -> LiberoEnv:
    return LiberoEnv(suite, task, protocol)


def probe(suite: str = "spatial", steps: int = 3, task_index: int = 0,
          env_cls: type[LiberoEnv] = LiberoEnv) -> dict[str, Any]:
    """Create a task, reset, render `steps` steps: what `--setup` and `rocket doctor` run."""
    import time

    from rocket_plugins.benchmarks.libero_protocol import libero_preset

    t0 = time.perf_counter()
    env = env_cls(suite, task_index, libero_preset(suite, "openvla"))
    t1 = time.perf_counter()
    obs = env.reset(0)
    t2 = time.perf_counter()
    for _ in range(steps):
        obs, _ = env.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))
    t3 = time.perf_counter()
    shape = list(obs["agentview_image"].shape)
    env.close()
    return {"create_s": round(t1 - t0, 2), "reset_s": round(t2 - t1, 2), "step_s": round((t3 - t2) / steps, 3),
            "image": shape, "mujoco_gl": os.environ.get("MUJOCO_GL")}


if __name__ == "__main__":
    import json

    print("@@rocket " + json.dumps(probe()))
