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
    # optional: `recording(obs) -> {"images": [...], "state": ...}` for `--record` (default: policy_observation)
    # optional: `expert(request) -> actions`, a scripted policy reading the env's state (`--policy expert`)
    def close(self) -> None: ...


def quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion -> axis-angle (3,), as robosuite / OpenVLA-OFT / openpi compute the proprio."""
    quat = np.array(quat, dtype=np.float64)
    w = min(max(quat[3], -1.0), 1.0)
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return quat[:3] * 2.0 * math.acos(w) / den


def center_crop_box(height: int, width: int, scale: float) -> tuple[int, int, int, int]:
    """`(top, left, crop_h, crop_w)` of the centred crop of `scale` x area (each side by sqrt(scale)), the
    box training's `rocket_core.data.augment.center_crop_box` takes, so train and eval crops agree."""
    crop_h, crop_w = max(1, round(height * math.sqrt(scale))), max(1, round(width * math.sqrt(scale)))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def prepare_image(img: np.ndarray, protocol: Protocol) -> np.ndarray:
    """A rendered camera frame -> what the policy gets: rotated 180 degrees, resized, then (when the
    checkpoint trained on random crops) centre-cropped to the same area and resized back, as OFT does."""
    img = np.asarray(img)
    if protocol.rotate_180:
        img = img[::-1, ::-1]
    img = np.ascontiguousarray(img, dtype=np.uint8)
    size = protocol.resize_size
    if size and img.shape[:2] != (size, size):
        img = _resize(img, size, protocol.resize_method)
    if protocol.center_crop < 1.0:
        from PIL import Image

        h, w = img.shape[:2]
        top, left, ch, cw = center_crop_box(h, w, protocol.center_crop)
        crop = Image.fromarray(img[top : top + ch, left : left + cw])
        img = np.asarray(crop.resize((w, h), resample=Image.Resampling.BILINEAR))
    return img


def _resize(img: np.ndarray, size: int, method: str) -> np.ndarray:
    from PIL import Image

    pil = Image.fromarray(img)
    if method == "pad_bilinear":  # openpi image_tools.resize_with_pad
        h, w = img.shape[:2]
        ratio = max(w / size, h / size)
        nh, nw = int(h / ratio), int(w / ratio)
        resized = pil.resize((nw, nh), resample=Image.Resampling.BILINEAR)
        canvas = Image.new(resized.mode, (size, size), 0)
        canvas.paste(resized, ((size - nw) // 2, (size - nh) // 2))
        return np.asarray(canvas)
    return np.asarray(pil.resize((size, size), resample=Image.Resampling.LANCZOS))


def postprocess(chunk: np.ndarray, protocol: Protocol) -> np.ndarray:
    """A policy's (chunk, dim) actions in dataset units -> the commands the environment gets (gripper mapped)."""
    chunk = np.asarray(chunk, dtype=np.float64)
    if chunk.ndim == 1:
        chunk = chunk[None]
    if chunk.shape[-1] < protocol.action_dim:
        raise ValueError(f"the policy returned {chunk.shape[-1]}-dim actions; {protocol.benchmark} needs {protocol.action_dim}")
    commands: np.ndarray = process_gripper(chunk[:, : protocol.action_dim], protocol.gripper)
    return commands


def run_episode(
    env: SimEnv, infer: Callable[[dict[str, Any]], np.ndarray], protocol: Protocol, episode_index: int,
    record: bool = False, trace: bool = False,
) -> dict[str, Any]:
    """Roll out one episode; returns success, steps, queries, timings, `frames` when `record` (video) and
    `trace` when `trace` (per policy step: the observation's images and state, and the command executed)."""
    start = time.perf_counter()
    obs = env.reset(episode_index)
    reset_s = time.perf_counter() - start
    frames: list[np.ndarray] = []
    wait = np.asarray(protocol.wait_action, dtype=np.float64)
    success, policy_steps, env_steps, queries, infer_s = False, 0, 0, 0, 0.0
    queue: list[np.ndarray] = []
    steps: list[dict[str, Any]] = []
    observe = getattr(env, "recording", env.policy_observation)
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
                if protocol.unnorm_key is not None:
                    request["unnorm_key"] = protocol.unnorm_key
                chunk = np.asarray(infer(request), dtype=np.float64)
                infer_s += time.perf_counter() - q0
                queries += 1
                queue = list(postprocess(chunk, protocol)[: max(1, protocol.open_loop_steps)])
            command = queue.pop(0)
            if trace:
                steps.append({**observe(obs), "action": command})
            obs, success = env.step(command)
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
    if trace:
        out["trace"] = steps
    return out
