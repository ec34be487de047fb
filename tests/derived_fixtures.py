"""A second LeRobot fixture set of other shapes, derived from the shared one, to prove the tests read every shape.

The parity tests compare with what the real LeRobot returned, so the derived set keeps LeRobot's recorded values
and only removes some: the last episode, and dimension 0 of every float vector feature (state 8 -> 7, actions
7 -> 6; the gripper command stays last). Data files, metadata, statistics and the `expected*` files are rewritten
to match, as LeRobot would have written them for that content: dataset-wide statistics of non-camera features are
recomputed from the kept rows (camera statistics are left as they were; no test derives them from pixels).
Videos stay as they were: a v3 mp4 then merely holds extra frames after the last kept episode.

The repository's own writers (`rocket_core.eval.record.write_dataset`, `scripts/make_bundled_dataset.py`) make
new v3 image datasets from generated content; none rewrites an existing dataset with LeRobot's expected outputs
or writes v2 or video, hence this module. `derive(v3, v2, out)` returns the environment variables to set.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def _narrowed(features: dict[str, dict]) -> list[str]:
    """The float vector features (not cameras, not scalars) that lose dimension 0."""
    return [k for k, f in features.items() if f["dtype"].startswith("float") and len(f["shape"]) == 1 and f["shape"][0] > 1]


def _writable_copy(source: Path, out: Path) -> Path:
    shutil.copytree(source, out)
    for path in [out, *out.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # the shared fixtures are read-only
    return out


def _narrow_table(table: pa.Table, keys: list[str], keep: pc.Expression | None = None) -> pa.Table:
    """Rows kept by `keep`, `keys` without their first value; schema metadata fixed."""
    if keep is not None:
        table = table.filter(keep)
    for key in keys:
        field = table.schema.field(key)
        size = field.type.list_size - 1
        column = pa.array([v[1:] for v in table.column(key).to_pylist()], pa.list_(field.type.value_type, size))
        table = table.set_column(table.schema.get_field_index(key), key, column)
    metadata = dict(table.schema.metadata or {})
    if b"huggingface" in metadata:
        hf = json.loads(metadata[b"huggingface"])
        for key in keys:
            hf["info"]["features"][key]["length"] -= 1
        metadata[b"huggingface"] = json.dumps(hf).encode()
    return table.replace_schema_metadata(metadata)


def _stats_of(values: np.ndarray, names: list[str], count_as_list: bool) -> dict[str, Any]:
    """The statistics `names` (min, max, mean, std, count, qNN) of rows `values`, as JSON lists."""
    flat = values.reshape(len(values), -1).astype(np.float64)
    out: dict[str, Any] = {}
    for name in names:
        if name == "count":
            out[name] = [len(flat)] if count_as_list else len(flat)
        elif name.startswith("q"):
            out[name] = np.quantile(flat, int(name[1:]) / 100, axis=0).tolist()
        else:
            out[name] = getattr(flat, name)(0).tolist()
    return out


def _recompute(stats: dict[str, dict], data: pa.Table, features: dict[str, dict]) -> dict[str, dict]:
    """Dataset-wide statistics of every non-camera feature from the kept rows; camera entries unchanged."""
    for key, entry in stats.items():
        if key in data.column_names and features[key]["dtype"] not in ("image", "video"):
            values = np.asarray(data.column(key).to_pylist(), dtype=np.float64)
            stats[key] = _stats_of(values, list(entry), isinstance(entry.get("count"), list))
    return stats


def _narrow_stats(entry: dict[str, dict], keys: list[str]) -> dict[str, dict]:
    return {k: ({n: (v if n == "count" else v[1:]) for n, v in s.items()} if k in keys else s) for k, s in entry.items()}


def _shrink_expected(tensors: dict[str, torch.Tensor], keep: Callable[[str], bool],
                     narrowed: Callable[[str], bool]) -> dict[str, torch.Tensor]:
    return {name: (t[..., 1:] if narrowed(name) else t).contiguous() for name, t in tensors.items() if keep(name)}


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    path.unlink()
    save_file(tensors, str(path), metadata=metadata)


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def derive_v3(source: Path, out: Path) -> Path:
    """Every `source/<mode>/` (v3 dataset + expected.safetensors) with one episode and one vector dimension less."""
    for expected in sorted(source.glob("*/expected.safetensors")):
        root = _writable_copy(expected.parent, out / expected.parent.name)
        info = json.loads((root / "meta/info.json").read_text())
        keys = _narrowed(info["features"])
        episodes_files = sorted((root / "meta/episodes").rglob("*.parquet"))
        last = max(max(pq.read_table(p).column("episode_index").to_pylist()) for p in episodes_files)
        earlier = pc.field("episode_index") < last
        frames = 0
        for path in episodes_files:
            table = pq.read_table(path).filter(earlier)
            frames += sum(table.column("length").to_pylist())
            for column in [c for c in table.column_names for k in keys if c.startswith(f"stats/{k}/") and not c.endswith("/count")]:
                values = pa.array([v[1:] for v in table.column(column).to_pylist()], table.schema.field(column).type)
                table = table.set_column(table.column_names.index(column), column, values)
            pq.write_table(table, path)
        tables = []
        for path in sorted((root / "data").rglob("*.parquet")):
            tables.append(_narrow_table(pq.read_table(path), keys, earlier))
            pq.write_table(tables[-1], path)
        data = pa.concat_tables(tables)
        stats = _recompute(_narrow_stats(json.loads((root / "meta/stats.json").read_text()), keys), data, info["features"])
        (root / "meta/stats.json").write_text(json.dumps(stats, indent=4))
        for key in keys:
            info["features"][key]["shape"] = [info["features"][key]["shape"][0] - 1]
        info |= {"total_episodes": last, "total_frames": frames, "splits": {"train": f"0:{last}"}}
        (root / "meta/info.json").write_text(json.dumps(info, indent=4))

        meta = _metadata(expected)
        tensors = load_file(str(expected))
        chunk_rows = tensors["chunk.indices"] < frames
        tensors = {n: (t[chunk_rows] if n.startswith("chunk.") else t[:frames]) for n, t in tensors.items()}
        vector = lambda n: n.removeprefix("chunk.") in keys  # noqa: E731, B023  called in this iteration
        shapes = json.loads(meta["item_shapes"])
        meta |= {"tasks": json.dumps(json.loads(meta["tasks"])[:frames]),
                 "episode_lengths": json.dumps(json.loads(meta["episode_lengths"])[:last]),
                 "item_shapes": json.dumps({k: ([s[0] - 1] if k in keys else s) for k, s in shapes.items()})}
        _save(root / "expected.safetensors", _shrink_expected(tensors, lambda n: True, vector), meta)
    return out


def derive_v2(source: Path, out: Path) -> Path:
    """Every `source/<variant>/` (v2.x `dataset/` + expected files) with one episode and one vector dimension less."""
    for info_path in sorted(source.glob("*/dataset/meta/info.json")):
        variant = _writable_copy(info_path.parents[2], out / info_path.parents[2].name)
        root = variant / "dataset"
        info = json.loads((root / "meta/info.json").read_text())
        keys = _narrowed(info["features"])
        episodes = [json.loads(line) for line in (root / "meta/episodes.jsonl").read_text().splitlines()]
        dropped, episodes = episodes[-1], episodes[:-1]
        frames = sum(e["length"] for e in episodes)
        chunk = dropped["episode_index"] // info["chunks_size"]
        (root / info["data_path"].format(episode_chunk=chunk, episode_index=dropped["episode_index"])).unlink()
        cameras = [k for k, f in info["features"].items() if f["dtype"] == "video"]
        for camera in cameras:
            (root / info["video_path"].format(episode_chunk=chunk, video_key=camera, episode_index=dropped["episode_index"])).unlink()
        tables = []
        for path in sorted((root / "data").rglob("*.parquet")):
            tables.append(_narrow_table(pq.read_table(path), keys))
            pq.write_table(tables[-1], path)
        (root / "meta/episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
        episode_stats = root / "meta/episodes_stats.jsonl"
        if episode_stats.is_file():
            rows = [json.loads(line) for line in episode_stats.read_text().splitlines()][: len(episodes)]
            episode_stats.write_text("".join(json.dumps(r | {"stats": _narrow_stats(r["stats"], keys)}) + "\n" for r in rows))
        stats_path = root / "meta/stats.json"
        if stats_path.is_file():
            stats = _recompute(_narrow_stats(json.loads(stats_path.read_text()), keys), pa.concat_tables(tables), info["features"])
            stats_path.write_text(json.dumps(stats, indent=4))
        for key in keys:
            info["features"][key]["shape"] = [info["features"][key]["shape"][0] - 1]
        info |= {"total_episodes": len(episodes), "total_frames": frames, "splits": {"train": f"0:{len(episodes)}"}}
        if info.get("total_videos"):
            info["total_videos"] = len(episodes) * len(cameras)
        (root / "meta/info.json").write_text(json.dumps(info, indent=4))

        kept = lambda n: int(n.rsplit("/", 1)[1]) < frames  # noqa: E731, B023  called in this iteration; names are "<key>/<index:04d>"
        vector = lambda n: n.rsplit("/", 1)[0] in keys  # noqa: E731, B023  called in this iteration
        for name in ("expected.safetensors", "expected_chunks.safetensors"):
            path = variant / name
            _save(path, _shrink_expected(load_file(str(path)), kept, vector), _metadata(path))
        summary = json.loads((variant / "expected.json").read_text())
        summary |= {"num_frames": frames, "items": summary["items"][:frames],
                    "episode_lengths": [e["length"] for e in episodes], "episode_tasks": [e["tasks"][0] for e in episodes],
                    "returned_keys": {k: (v | {"shape": [v["shape"][0] - 1]} if k in keys else v)
                                      for k, v in summary["returned_keys"].items()}}
        summary |= {f"{k}_dim": summary[f"{k}_dim"] - 1 for k in ("state", "action") if f"{k}_dim" in summary}
        (variant / "expected.json").write_text(json.dumps(summary, indent=1))
    return out


def derive(v3: Path, v2: Path, out: Path) -> dict[str, str]:
    """Derived sets of the v3 fixture `v3` and the v2 parent `v2` under `out`; the variables pointing the tests at them."""
    return {"ROCKET_LEROBOT_FIXTURE": str(derive_v3(v3, out / "lerobot-dataset")),
            "ROCKET_LEROBOT_V2_FIXTURE": str(derive_v2(v2, out / "lerobot-v2"))}
