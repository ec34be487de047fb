"""`rocket eval --record DIR` and `--policy replay:DIR`: rollouts as a LeRobot v3 dataset, and back.

Recording follows the `physical-intelligence/libero` convention: per policy step the camera frames at
render size rotated 180 degrees (`image`, `wrist_image`), `state` = eef pos + axis-angle + gripper qpos
(8) and `actions` = the raw command the environment executed (7; gripper -1 open / +1 close). Workers
(in the benchmark's own Python: numpy only) save one `.npz` per episode under `DIR/episodes/`; the
parent assembles the dataset (`data/`, `meta/`) when the run ends.

A replay policy serves a recorded dataset: for an observation it finds the recorded frame of the same
instruction whose state equals the observed one and answers the actions from there, as a served model
would (in dataset units, with conventions derived from the data), so replaying them goes through the very
post-processing a model's output does. A deterministic simulator started from the same init state must
then retrace the recording step by step; a wrong gripper map or un-normalisation would not.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rocket_core.errors import RocketError

CAMERA_KEYS = ("image", "wrist_image")  # physical-intelligence/libero names of the first two cameras
STATE_TOLERANCE = 1e-5


def camera_key(slot: int) -> str:
    return CAMERA_KEYS[slot] if slot < len(CAMERA_KEYS) else f"image_{slot}"


def save_episode(path: str | Path, steps: list[dict[str, Any]], instruction: str) -> None:
    """One episode's recorded steps (`{"images": [...], "state", "action"}`) as a compressed `.npz` (numpy only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "state": np.asarray([s["state"] for s in steps], dtype=np.float32).reshape(len(steps), -1),
        "actions": np.asarray([s["action"] for s in steps], dtype=np.float32).reshape(len(steps), -1),
        "instruction": np.asarray(instruction),
    }
    for slot in range(len(steps[0]["images"]) if steps else 0):
        arrays[camera_key(slot)] = np.stack([np.asarray(s["images"][slot], dtype=np.uint8) for s in steps])
    tmp = path.with_name(path.stem + ".partial.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stubs match **arrays to allow_pickle
    tmp.replace(path)


def _stats(values: np.ndarray) -> dict[str, list[Any]]:
    flat = values.reshape(len(values), -1).astype(np.float64)
    out = {"min": flat.min(0), "max": flat.max(0), "mean": flat.mean(0), "std": flat.std(0),
           "q01": np.quantile(flat, 0.01, axis=0), "q99": np.quantile(flat, 0.99, axis=0)}
    return {k: v.tolist() for k, v in out.items()} | {"count": [len(values)]}


def write_dataset(root: Path, fps: int = 10) -> Path:
    """Assemble every `root/episodes/**/*.npz` into a LeRobot v3 dataset in `root` (images as PNG bytes)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    files = sorted((root / "episodes").rglob("ep-*.npz"))
    if not files:
        raise RocketError(f"no recorded episodes under '{root / 'episodes'}'")
    episodes = [dict(np.load(f)) for f in files]
    cameras = [k for k in episodes[0] if k == "image" or k.startswith(("image_", "wrist_image"))]
    tasks = list(dict.fromkeys(str(e["instruction"]) for e in episodes))
    columns: dict[str, list[Any]] = {k: [] for k in (*cameras, "state", "actions", "timestamp", "frame_index",
                                                "episode_index", "index", "task_index")}
    rows = []
    for e, (ep, path) in enumerate(zip(episodes, files)):
        n, start = len(ep["state"]), len(columns["index"])
        for cam in cameras:
            for i, frame in enumerate(ep[cam]):
                buf = io.BytesIO()
                Image.fromarray(frame).save(buf, format="PNG")
                columns[cam].append({"bytes": buf.getvalue(), "path": f"frame-{i:06d}.png"})
        columns["state"] += list(ep["state"])
        columns["actions"] += list(ep["actions"])
        columns["timestamp"] += list((np.arange(n) / fps).astype(np.float32))
        columns["frame_index"] += list(range(n))
        columns["episode_index"] += [e] * n
        columns["index"] += list(range(start, start + n))
        columns["task_index"] += [tasks.index(str(ep["instruction"]))] * n
        rel = path.relative_to(root / "episodes")
        rows.append({"episode_index": e, "tasks": [str(ep["instruction"])], "length": n, "data/chunk_index": 0,
                     "data/file_index": 0, "dataset_from_index": start, "dataset_to_index": start + n,
                     "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0, "rocket/source": str(rel)})
    state_dim, action_dim = episodes[0]["state"].shape[1], episodes[0]["actions"].shape[1]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        **{cam: pa.array(columns[cam], image_type) for cam in cameras},
        "state": pa.array([list(v) for v in columns["state"]], pa.list_(pa.float32(), state_dim)),
        "actions": pa.array([list(v) for v in columns["actions"]], pa.list_(pa.float32(), action_dim)),
        "timestamp": pa.array(columns["timestamp"], pa.float32()),
        **{k: pa.array(columns[k], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")},
    })

    def scalar(dtype: str) -> dict[str, Any]:
        return {"dtype": dtype, "shape": [1], "names": None}

    features = {
        **{cam: {"dtype": "image", "shape": list(episodes[0][cam].shape[1:]), "names": ["height", "width", "channel"]}
           for cam in cameras},
        "state": {"dtype": "float32", "shape": [state_dim], "names": ["state"]},
        "actions": {"dtype": "float32", "shape": [action_dim], "names": ["actions"]},
        "timestamp": scalar("float32"),
        **{k: scalar("int64") for k in ("frame_index", "episode_index", "index", "task_index")},
    }
    info = {"codebase_version": "v3.0", "fps": fps, "features": features, "total_episodes": len(episodes),
            "total_frames": table.num_rows, "total_tasks": len(tasks), "chunks_size": 1000,
            "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "video_path": None,
            "robot_type": "panda", "splits": {"train": f"0:{len(episodes)}"}}
    (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.Table.from_pylist(rows), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks)}),
                   root / "meta" / "tasks.parquet")
    stats = {"state": _stats(np.stack(columns["state"])), "actions": _stats(np.stack(columns["actions"]))}
    (root / "meta" / "stats.json").write_text(json.dumps(stats, indent=1))
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=1))
    return root


class ReplayPolicy:
    """Serves a recorded dataset's actions (see the module docstring); a `rocket serve`-able policy."""

    def __init__(self, root: Path, chunk: int = 8) -> None:
        from rocket_core.conventions import Conventions, Images, detect_gripper
        from rocket_core.data.lerobot import LeRobotReader

        self.root, self.chunk = Path(root), chunk
        reader = LeRobotReader(self.root)
        try:
            self.states = reader.column("state").astype(np.float64)
            self.actions = reader.column("actions").astype(np.float32)
        except (KeyError, RocketError):
            raise RocketError(f"'{root}' is not a recording of `rocket eval --record` (no state/actions columns)") from None
        self.tasks = [reader.task(i) for i in range(len(reader))]
        self.episode = self._bounds(reader)  # per row: the end row of its episode
        self.cameras = list(reader.camera_keys)
        grip = self.actions[:, -1]
        self.conventions = Conventions(
            source="replay", dataset=str(root), state="eef_pos+axis_angle+gripper_qpos",
            state_dim=self.states.shape[1], action_dim=self.actions.shape[1], chunk=chunk,
            gripper=detect_gripper(float(grip.min()), float(grip.max())),
            images=Images(cameras=[c.split(".")[-1] for c in self.cameras]))  # orientation: the preset's

    @staticmethod
    def _bounds(reader: Any) -> np.ndarray:
        ends = np.zeros(len(reader), dtype=np.int64)
        episodes = reader.column("episode_index").reshape(-1)
        for e in np.unique(episodes):
            rows = np.nonzero(episodes == e)[0]
            ends[rows] = rows.max() + 1
        return ends

    def metadata(self) -> dict[str, Any]:
        return {"vla": "replay", "source": str(self.root), "cameras": self.cameras, "num_images": len(self.cameras),
                "state_dim": self.states.shape[1], "action_dim": self.actions.shape[1], "chunk_size": self.chunk,
                "normalization": {"state": False, "action": False}, "eval_family": "",
                "conventions": self.conventions.model_dump(mode="json")}

    def infer(self, obs: Any) -> dict[str, Any]:
        state = np.asarray(obs.get("state"), dtype=np.float64).reshape(-1)
        task = obs.get("task")
        candidates = [i for i, t in enumerate(self.tasks) if t == task]
        if not candidates or state.shape[0] != self.states.shape[1]:
            raise RocketError(f"the recording '{self.root}' has no frame of task {task!r} with a "
                              f"{self.states.shape[1]}-dim state")
        diffs = np.abs(self.states[candidates] - state[None]).max(1)
        best = int(np.argmin(diffs))
        if diffs[best] > STATE_TOLERANCE:
            raise RocketError(f"replay diverged: no recorded state of task {task!r} matches the observed one "
                              f"(nearest differs by {diffs[best]:.2e})")
        row = candidates[best]
        end = min(row + self.chunk, int(self.episode[row]))
        return {"kind": "actions", "actions": self.actions[row:end].copy(), "timing": {"infer_ms": 0.0}}
