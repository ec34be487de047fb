"""One episode of a simulator against a policy, under a `Protocol` (import-light: numpy [+ PIL]).

A benchmark's simulator module provides `make_env(suite, task_index, protocol) -> SimEnv`; this loop is
the same for every benchmark: `wait_steps` steps of `wait_action`, then the policy's chunk, of which
`open_loop_steps` actions run open-loop before the policy is asked again, until success or `max_steps`.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Protocol as _Proto

import numpy as np

from rocket_core.eval.protocol import Protocol, process_gripper


class SimEnv(_Proto):
    """What `run_episode` needs from a benchmark environment (one task)."""

    instruction: str

    def reset(self, episode_index: int) -> Any: ...  # initial observation (after the episode's init state)
    def step(self, action: np.ndarray) -> tuple[Any, bool]: ...  # (observation, success)
    def policy_observation(self, obs: Any) -> dict[str, Any]: ...  # {"images": [...], "state": ...}
    def frame(self, obs: Any) -> np.ndarray: ...  # uint8 (H, W, 3) for the video
    def close(self) -> None: ...


def quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion -> axis-angle (3,), as robosuite / OpenVLA-OFT / openpi compute the proprio."""
    quat = np.array(quat, dtype=np.float64)
    w = min(max(quat[3], -1.0), 1.0)
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return quat[:3] * 2.0 * math.acos(w) / den


def prepare_image(img: np.ndarray, protocol: Protocol) -> np.ndarray:
    """A rendered camera frame -> what the policy gets: rotated 180 degrees, resized (uint8 HWC)."""
    img = np.asarray(img)
    if protocol.rotate_180:
        img = img[::-1, ::-1]
    img = np.ascontiguousarray(img, dtype=np.uint8)
    size = protocol.resize_size
    if not size or img.shape[:2] == (size, size):
        return img
    from PIL import Image

    pil = Image.fromarray(img)
    if protocol.resize_method == "pad_bilinear":  # openpi image_tools.resize_with_pad
        h, w = img.shape[:2]
        ratio = max(w / size, h / size)
        nh, nw = int(h / ratio), int(w / ratio)
        resized = pil.resize((nw, nh), resample=Image.Resampling.BILINEAR)
        canvas = Image.new(resized.mode, (size, size), 0)
        canvas.paste(resized, ((size - nw) // 2, (size - nh) // 2))
        return np.asarray(canvas)
    return np.asarray(pil.resize((size, size), resample=Image.Resampling.LANCZOS))


def run_episode(
    env: SimEnv, infer: Callable[[dict[str, Any]], np.ndarray], protocol: Protocol, episode_index: int,
    record: bool = False,
) -> dict[str, Any]:
    """Roll out one episode; returns success, steps, queries, timings (and `frames` when `record`)."""
    start = time.perf_counter()
    obs = env.reset(episode_index)
    reset_s = time.perf_counter() - start
    frames: list[np.ndarray] = []
    wait = np.asarray(protocol.wait_action, dtype=np.float64)
    success, policy_steps, env_steps, queries, infer_s = False, 0, 0, 0, 0.0
    queue: list[np.ndarray] = []
    for t in range(protocol.wait_steps + protocol.max_steps):
        if record:
            frames.append(env.frame(obs))
        if t < protocol.wait_steps:
            obs, success = env.step(wait)
            env_steps += 1
        else:
            if not queue:
                q0 = time.perf_counter()
                request = env.policy_observation(obs)
                request["task"] = env.instruction
                chunk = np.asarray(infer(request), dtype=np.float64)
                infer_s += time.perf_counter() - q0
                queries += 1
                if chunk.ndim == 1:
                    chunk = chunk[None]
                if chunk.shape[-1] < protocol.action_dim:
                    raise ValueError(f"the policy returned {chunk.shape[-1]}-dim actions; "
                                     f"{protocol.benchmark} needs {protocol.action_dim}")
                chunk = process_gripper(chunk[:, : protocol.action_dim], protocol.gripper)
                queue = list(chunk[: max(1, protocol.open_loop_steps)])
            obs, success = env.step(queue.pop(0))
            policy_steps += 1
            env_steps += 1
        if success:
            break
    if record:
        frames.append(env.frame(obs))
    total = time.perf_counter() - start
    out: dict[str, Any] = {
        "success": bool(success),
        "steps": policy_steps,  # policy actions executed (wait steps excluded)
        "env_steps": env_steps,
        "queries": queries,
        "seconds": round(total, 3),
        "reset_seconds": round(reset_s, 3),
        "infer_seconds": round(infer_s, 3),
    }
    if record:
        out["frames"] = frames
    return out
