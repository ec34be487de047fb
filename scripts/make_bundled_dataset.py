"""Write the small synthetic LeRobot v3 dataset bundled with rocket (rocket_core/data/bundled/).

A scripted pick-and-place: a gripper moves above the named block, descends, grasps, lifts, carries it to
the plate and releases it. Two cameras are rendered with PIL: a fixed top-down third-person view (height
shown by size and a ground shadow) and a wrist view centred on the gripper (zoom grows as it descends).
State (8-D, LIBERO layout): end-effector xyz, axis-angle orientation (3), two finger positions.
Action (7-D): end-effector displacement to the next frame / MAX_STEP, rotation delta (0), gripper
(-1 open, +1 close). So actions are a function of what the images and state show and a policy can fit them.

The files follow what LeRobot 0.6 writes in image mode (PNG bytes in the data parquet), so the same reader
handles this dataset and real ones. Run: python scripts/make_bundled_dataset.py [--out DIR] [--seed N]
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
from PIL import Image, ImageDraw

FPS = 10
SIZE = 128  # pixels per side, both cameras
NUM_EPISODES = 20
MAX_STEP = 0.08  # world units the gripper moves per frame at most
HIGH_Z, GRASP_Z, PLACE_Z = 0.6, 0.05, 0.15
FINGER_OPEN, FINGER_CLOSED = 0.04, 0.012  # finger position (closed on a block)
ORIENTATION = (np.pi, 0.0, 0.0)  # gripper pointing down
COLORS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (230, 200, 30)}
TABLE, SHADOW, FINGER = (196, 176, 146), (120, 105, 85), (60, 60, 60)
CAMERAS = ("observation.images.image", "observation.images.wrist_image")
STATE_NAMES = ["x", "y", "z", "ax", "ay", "az", "finger_left", "finger_right"]
ACTION_NAMES = ["dx", "dy", "dz", "dax", "day", "daz", "gripper"]
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def sample_scene(rng: np.random.Generator) -> dict:
    """Two blocks of different colours, a plate of a third colour, a start pose; the task names one block."""
    names = rng.choice(list(COLORS), size=3, replace=False)
    while True:
        points = rng.uniform(-0.85, 0.85, size=(4, 2))
        gaps = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(4) * 9
        if gaps.min() > 0.45:
            break
    target = int(rng.integers(2))
    return {
        "blocks": [{"color": str(names[i]), "xy": points[i].copy()} for i in range(2)],
        "plate": {"color": str(names[2]), "xy": points[2]},
        "start": np.array([*points[3], HIGH_Z]),
        "target": target,
        "task": f"put the {names[target]} block on the {names[2]} plate",
    }


def script_motion(scene: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame end-effector positions (T, 3), gripper commands (T,) and whether the block is held (T,)."""
    block, plate = scene["blocks"][scene["target"]]["xy"], scene["plate"]["xy"]
    waypoints = [
        ([*block, HIGH_Z], -1.0),
        ([*block, GRASP_Z], -1.0),
        (None, 1.0),  # close in place
        ([*block, HIGH_Z], 1.0),
        ([*plate, HIGH_Z], 1.0),
        ([*plate, PLACE_Z], 1.0),
        (None, -1.0),  # open in place
        ([*plate, HIGH_Z - 0.2], -1.0),
    ]
    positions, grips, held = [scene["start"].copy()], [], [False]
    for target, grip in waypoints:
        if target is None:  # the block is held from the frame after the first close command to the first open one
            for _ in range(3):
                grips.append(grip)
                positions.append(positions[-1].copy())
                held.append(grip > 0)
            continue
        while np.linalg.norm(np.asarray(target) - positions[-1]) > 1e-9:
            step = np.asarray(target) - positions[-1]
            step *= min(1.0, MAX_STEP / np.linalg.norm(step))
            grips.append(grip)
            positions.append(positions[-1] + step)
            held.append(held[-1])
    grips.append(grips[-1])  # the last frame holds still
    return np.asarray(positions), np.asarray(grips), np.asarray(held)


def finger_positions(grips: np.ndarray) -> np.ndarray:
    """Finger opening per frame: it follows the previous command, one third of the way per frame."""
    opening = [FINGER_OPEN]
    for grip in grips[:-1]:
        goal = FINGER_CLOSED if grip > 0 else FINGER_OPEN
        opening.append(opening[-1] + np.clip(goal - opening[-1], -0.01, 0.01))
    return np.asarray(opening)


def _square(draw: ImageDraw.ImageDraw, center: tuple[float, float], half: float, color: tuple[int, int, int]) -> None:
    draw.rectangle([center[0] - half, center[1] - half, center[0] + half, center[1] + half], fill=color)


def render(scene: dict, pos: np.ndarray, opening: float, block_xy: np.ndarray, held: bool, wrist: bool) -> Image.Image:
    """One camera frame. Third-person: fixed top-down view of [-1.2, 1.2]^2; wrist: centred on the gripper."""
    image = Image.new("RGB", (SIZE, SIZE), TABLE)
    draw = ImageDraw.Draw(image)
    if wrist:
        half_view = 0.2 + 0.6 * pos[2]
        center = pos[:2]
    else:
        half_view, center = 1.2, np.zeros(2)
    scale = SIZE / (2 * half_view)

    def to_px(xy: np.ndarray) -> tuple[float, float]:
        return (xy[0] - center[0]) * scale + SIZE / 2, (center[1] - xy[1]) * scale + SIZE / 2

    px, py = to_px(scene["plate"]["xy"])
    radius = 0.2 * scale
    draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=COLORS[scene["plate"]["color"]])
    for i, block in enumerate(scene["blocks"]):
        if i != scene["target"]:
            _square(draw, to_px(block["xy"]), 0.08 * scale, COLORS[block["color"]])
        elif not held:
            _square(draw, to_px(block_xy), 0.08 * scale, COLORS[block["color"]])
    held_color = COLORS[scene["blocks"][scene["target"]]["color"]]
    if wrist:
        if held:  # right under the camera, so larger than blocks on the table
            _square(draw, (SIZE / 2, SIZE / 2), 0.08 * scale * (1 + 0.5 / half_view), held_color)
        gap = SIZE * (0.1 + 3 * opening)
        for side in (-1, 1):
            x = SIZE / 2 + side * gap
            draw.rectangle([x - SIZE * 0.05, SIZE * 0.7, x + SIZE * 0.05, SIZE], fill=FINGER)
        return image
    gx, gy = to_px(pos[:2])
    grow = 1 + 0.8 * pos[2]
    draw.ellipse([gx - 0.07 * scale, gy - 0.07 * scale, gx + 0.07 * scale, gy + 0.07 * scale], fill=SHADOW)
    if held:
        _square(draw, (gx, gy), 0.08 * scale * grow, held_color)
    unit = scale * grow
    for side in (-1, 1):
        fx = gx + side * (0.05 + 2 * opening) * unit
        draw.rectangle([fx - 0.025 * unit, gy - 0.09 * unit, fx + 0.025 * unit, gy + 0.09 * unit], fill=FINGER)
    return image


def make_episode(scene: dict) -> dict:
    """PNG frames per camera, state, action and task of one episode; the held block travels with the gripper."""
    positions, grips, held = script_motion(scene)
    opening = finger_positions(grips)
    block_xy = scene["blocks"][scene["target"]]["xy"]
    frames: dict[str, list[bytes]] = {cam: [] for cam in CAMERAS}
    for t, pos in enumerate(positions):
        if held[t]:
            block_xy = pos[:2]  # where it is dropped when released
        for cam, wrist in zip(CAMERAS, (False, True)):
            buffer = io.BytesIO()
            render(scene, pos, opening[t], block_xy, bool(held[t]), wrist).save(buffer, format="PNG")
            frames[cam].append(buffer.getvalue())
    state = np.concatenate(
        [positions, np.tile(ORIENTATION, (len(positions), 1)), np.stack([opening, -opening], 1)], axis=1
    ).astype(np.float32)
    deltas = np.diff(positions, axis=0, append=positions[-1:]) / MAX_STEP
    action = np.concatenate([deltas, np.zeros((len(positions), 3)), grips[:, None]], axis=1).astype(np.float32)
    return {"frames": frames, "state": state, "action": action, "task": scene["task"]}


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


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def build_features() -> dict[str, dict]:
    camera = {"dtype": "image", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]}
    scalar = lambda dtype: {"dtype": dtype, "shape": [1], "names": None}  # noqa: E731
    return {
        **{cam: dict(camera) for cam in CAMERAS},
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


def write_dataset(out: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    episodes = [make_episode(sample_scene(rng)) for _ in range(NUM_EPISODES)]
    tasks = list(dict.fromkeys(e["task"] for e in episodes))
    features = build_features()

    columns: dict[str, list] = {key: [] for key in features}
    bounds = []
    for e, episode in enumerate(episodes):
        n, start = len(episode["state"]), len(columns["index"])
        bounds.append((start, start + n))
        for cam in CAMERAS:
            columns[cam] += [{"bytes": b, "path": f"frame-{i:06d}.png"} for i, b in enumerate(episode["frames"][cam])]
        columns["observation.state"] += list(episode["state"])
        columns["action"] += list(episode["action"])
        columns["timestamp"] += list((np.arange(n) / FPS).astype(np.float32))
        columns["frame_index"] += list(range(n))
        columns["episode_index"] += [e] * n
        columns["index"] += list(range(start, start + n))
        columns["task_index"] += [tasks.index(episode["task"])] * n

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    arrays = {
        **{cam: pa.array(columns[cam], image_type) for cam in CAMERAS},
        "observation.state": pa.array(columns["observation.state"], pa.list_(pa.float32(), 8)),
        "action": pa.array(columns["action"], pa.list_(pa.float32(), 7)),
        "timestamp": pa.array(columns["timestamp"], pa.float32()),
        **{k: pa.array(columns[k], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")},
    }
    data = pa.table(arrays).replace_schema_metadata({"huggingface": hf_features(features)})

    def stats_of(rows: slice) -> dict[str, dict[str, list]]:
        stats = {
            cam: feature_stats(np.stack([decode(c["bytes"]) for c in columns[cam][rows]]), image=True) for cam in CAMERAS
        }
        for key in features:
            if key not in CAMERAS:
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
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_dataset(args.out, args.seed)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
