"""Write the small synthetic LeRobot v3 dataset bundled with rocket (rocket_core/data/bundled/).

The episodes are the `blocks` benchmark's scripted expert run in closed loop in its world
(rocket_plugins.benchmarks.blocks_world: kinematics, PIL cameras, expert), under seed BUNDLED_SEED: episode e
is task e % 12 at scene index e // 12, exactly what `rocket eval --benchmark blocks --policy expert --seed 0
--record DIR` steps through. The evaluation protocol's seed differs, so its scenes are held out.
Per step: the two camera frames, the 8-D state (LIBERO layout) and the 7-D action executed (end-effector
displacement / MAX_STEP, rotation 0, gripper -1 open / +1 close); an episode ends with the release over the plate.

The files follow what LeRobot 0.6 writes in image mode (PNG bytes in the data parquet, the `huggingface`
schema metadata, per-episode statistics), so the same reader handles this dataset and real ones.
Run: python scripts/make_bundled_dataset.py [--out DIR] [--seed N]
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from rocket_plugins.benchmarks.blocks import BUNDLED_SEED, BlocksBenchmark
from rocket_plugins.benchmarks.blocks_world import ACTION_NAMES, CAMERAS, SIZE, STATE_NAMES, expert_episodes

FPS = 10
NUM_EPISODES = 20
KEYS = tuple(f"observation.images.{c}" for c in CAMERAS)  # LeRobot's own camera feature names
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def feature_stats(values: np.ndarray, image: bool) -> dict[str, list]:
    """LeRobot v3 stats: per-dimension (per-channel (3,1,1) on [0,1] for images) min/max/mean/std/count/quantiles."""
    frames = len(values)
    if image:  # (N, H, W, 3) uint8 -> (pixels, 3)
        values = values.reshape(-1, 3) / 255.0
    flat = values.reshape(len(values), -1).astype(np.float64)
    out = {
        "min": flat.min(0), "max": flat.max(0), "mean": flat.mean(0), "std": flat.std(0),
        **{f"q{round(q * 100):02d}": np.quantile(flat, q, axis=0) for q in QUANTILES},
    }
    return {k: (v.reshape(3, 1, 1) if image else v).tolist() for k, v in out.items()} | {"count": [frames]}


def build_features() -> dict[str, dict]:
    camera = {"dtype": "image", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]}
    scalar = lambda dtype: {"dtype": dtype, "shape": [1], "names": None}  # noqa: E731
    return {
        **{cam: dict(camera) for cam in KEYS},
        "observation.state": {"dtype": "float32", "shape": [8], "names": STATE_NAMES},
        "action": {"dtype": "float32", "shape": [7], "names": ACTION_NAMES},
        "timestamp": scalar("float32"),
        **{key: scalar("int64") for key in ("frame_index", "episode_index", "index", "task_index")},
    }


def hf_features(features: dict[str, dict]) -> str:
    """The `huggingface` schema metadata LeRobot stores in data parquets (HF `datasets` feature spec)."""
    spec = {}
    for key, feature in features.items():
        if feature["dtype"] == "image":
            spec[key] = {"_type": "Image"}
        elif feature["shape"] == [1]:
            spec[key] = {"dtype": feature["dtype"], "_type": "Value"}
        else:
            value = {"dtype": feature["dtype"], "_type": "Value"}
            spec[key] = {"feature": value, "length": feature["shape"][0], "_type": "List"}
    return json.dumps({"info": {"features": spec}})


def tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet with the pandas metadata that makes `task` the index, as LeRobot writes it."""
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
             "metadata": {"encoding": "UTF-8"}}
        ],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
    }
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def png(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def write_dataset(out: Path, seed: int) -> None:
    episodes = expert_episodes(BlocksBenchmark.protocol("pick_place", "").replace(seed=seed), NUM_EPISODES)
    tasks = list(dict.fromkeys(e["task"] for e in episodes))
    features = build_features()

    columns: dict[str, list] = {key: [] for key in features}
    pixels: dict[str, list[np.ndarray]] = {cam: [] for cam in KEYS}  # for the image statistics
    bounds = []
    for e, episode in enumerate(episodes):
        n, start = len(episode["steps"]), len(columns["index"])
        bounds.append((start, start + n))
        for slot, cam in enumerate(KEYS):
            pixels[cam] += [step["images"][slot] for step in episode["steps"]]
            columns[cam] += [{"bytes": png(s["images"][slot]), "path": f"frame-{i:06d}.png"}
                             for i, s in enumerate(episode["steps"])]
        columns["observation.state"] += [np.asarray(s["state"], np.float32) for s in episode["steps"]]
        columns["action"] += [np.asarray(s["action"], np.float32) for s in episode["steps"]]
        columns["timestamp"] += list((np.arange(n) / FPS).astype(np.float32))
        columns["frame_index"] += list(range(n))
        columns["episode_index"] += [e] * n
        columns["index"] += list(range(start, start + n))
        columns["task_index"] += [tasks.index(episode["task"])] * n

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    arrays = {
        **{cam: pa.array(columns[cam], image_type) for cam in KEYS},
        "observation.state": pa.array(columns["observation.state"], pa.list_(pa.float32(), 8)),
        "action": pa.array(columns["action"], pa.list_(pa.float32(), 7)),
        "timestamp": pa.array(columns["timestamp"], pa.float32()),
        **{k: pa.array(columns[k], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")},
    }
    data = pa.table(arrays).replace_schema_metadata({"huggingface": hf_features(features)})

    def stats_of(rows: slice) -> dict[str, dict[str, list]]:
        stats = {cam: feature_stats(np.stack(pixels[cam][rows]), image=True) for cam in KEYS}
        for key in features:
            if key not in KEYS:
                values = np.asarray(columns[key][rows], dtype=np.float64).reshape(len(columns[key][rows]), -1)
                stats[key] = feature_stats(values, image=False)
        return stats

    episode_rows = []
    for e, (lo, hi) in enumerate(bounds):
        row = {
            "episode_index": e, "tasks": [episodes[e]["task"]], "length": hi - lo,
            "data/chunk_index": 0, "data/file_index": 0, "dataset_from_index": lo, "dataset_to_index": hi,
        }
        for key, stat in stats_of(slice(lo, hi)).items():
            row |= {f"stats/{key}/{name}": value for name, value in stat.items()}
        episode_rows.append(row | {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})

    info = {
        "codebase_version": "v3.0", "fps": FPS, "features": features,
        "total_episodes": NUM_EPISODES, "total_frames": data.num_rows, "total_tasks": len(tasks),
        "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "video_path": None,
        "robot_type": "synthetic_gripper", "splits": {"train": f"0:{NUM_EPISODES}"},
    }

    if out.exists():
        shutil.rmtree(out)
    (out / "data" / "chunk-000").mkdir(parents=True)
    (out / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(data, out / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.Table.from_pylist(episode_rows), out / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(tasks_table(tasks), out / "meta" / "tasks.parquet")
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    (out / "meta" / "stats.json").write_text(json.dumps(stats_of(slice(None)), indent=4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "rocket_core" / "data" / "bundled")
    parser.add_argument("--seed", type=int, default=BUNDLED_SEED)
    args = parser.parse_args()
    write_dataset(args.out, args.seed)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
