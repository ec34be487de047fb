"""LeRobot dataset files: where a dataset is, its JSON/JSONL/parquet metadata read with one-line errors,
`info.json` validation and per-episode statistics aggregation (v2.1), shared by every format version.

Kept apart from `lerobot.LeRobotReader`, which turns these files into samples.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rocket_core.data.source import local_dataset_root
from rocket_core.errors import RocketError

CODEBASE_VERSION = "v3.0"
SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
TOLERANCE_S = 1e-4  # LeRobot's default: a delta or a video frame must sit this close to a frame time
CAMERA_DTYPES = ("image", "video")
REQUIRED_FEATURES = ("index", "episode_index", "task_index", "timestamp")
STAT_NAMES = ("min", "max", "mean", "std", "q01", "q99")  # per-dimension statistics (count is per feature)


def resolve_dataset_root(source: str | Path, revision: str | None = None) -> Path:
    """A local dataset folder (`bundled`: the shipped one), or a Hub dataset repo id downloaded (or found in the HF cache)."""
    root = local_dataset_root(source)
    return root if root is not None else resolve_dataset_root(_download(str(source), revision))


def _download(repo_id: str, revision: str | None) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision)
    except RepositoryNotFoundError:
        raise RocketError(
            f"dataset '{repo_id}' is not a local folder and not a Hub dataset repo (or it is private: run `hf auth login`); "
            "check the path or repo id"
        ) from None
    except RevisionNotFoundError:
        raise RocketError(
            f"revision '{revision}' of dataset '{repo_id}' does not exist on the Hub; check the revision"
        ) from None
    except LocalEntryNotFoundError:
        raise RocketError(
            f"dataset '{repo_id}' is not a local folder and not in the Hugging Face cache, and the Hub cannot be reached "
            f"(offline); download it first (`hf download --repo-type dataset {repo_id}`) or give a local path"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise RocketError(
            f"could not download dataset '{repo_id}' from the Hub ({exc}); retry or give a local path"
        ) from None


def delta_offsets(deltas_s: Sequence[float], fps: float) -> np.ndarray:
    """Deltas in seconds -> integer frame offsets; each delta must be a multiple of 1/fps (within TOLERANCE_S)."""
    deltas = np.asarray(deltas_s, dtype=np.float64)
    offsets = np.round(deltas * fps).astype(np.int64)
    off = np.abs(offsets / fps - deltas)
    if off.size and off.max() > TOLERANCE_S:
        bad = deltas[off.argmax()]
        raise RocketError(
            f"delta timestamp {bad} s is not a multiple of 1/fps = {1 / fps:.6g} s; use multiples of the frame period"
        )
    return offsets


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise RocketError(f"'{path}' is missing; the LeRobot dataset is incomplete: re-download or re-create it")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"{exc.msg}, line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise RocketError(f"'{path}' is not valid JSON ({where}); re-download the dataset") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise RocketError(f"'{path}' is missing; the LeRobot dataset is incomplete: re-download or re-create it")
    rows = []
    try:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise RocketError(f"line {number} of '{path}' is not a JSON object; re-download the dataset")
                rows.append(row)
    except json.JSONDecodeError as exc:
        raise RocketError(f"line {number} of '{path}' is not valid JSON ({exc.msg}); re-download the dataset") from None
    except UnicodeDecodeError:
        raise RocketError(f"'{path}' is not UTF-8 text; re-download the dataset") from None
    return rows


def read_parquet(path: Path) -> pa.Table:
    """One file, memory-mapped (image bytes are paged in on access). `ParquetFile.read` skips the dataset
    layer of `read_table`, several times faster on the thousands of small files of a v2 dataset."""
    try:
        with pq.ParquetFile(path, memory_map=True) as f:
            return f.read()
    except (pa.ArrowInvalid, OSError) as exc:
        detail = " ".join(str(exc).split())
        raise RocketError(f"cannot read the dataset's parquet file '{path}' ({detail}); re-download the dataset") from None


def read_parquets(paths: Sequence[Path]) -> pa.Table:
    if not paths:
        raise RocketError("the LeRobot dataset has no parquet files where meta/info.json says; re-download or re-create it")
    try:
        return pa.concat_tables([read_parquet(p) for p in paths], promote_options="default")
    except pa.ArrowInvalid as exc:
        detail = " ".join(str(exc).split())
        raise RocketError(f"the dataset's parquet files do not share one schema ({detail}); re-create the dataset") from None


def flat_size(shape: Sequence[int]) -> int:
    return int(np.prod(shape)) if shape else 1


def to_numpy(column: pa.ChunkedArray, shape: Sequence[int]) -> np.ndarray:
    """A (possibly nested) list column -> (N, *shape); a scalar column -> (N,), as LeRobot returns them."""
    array = column.combine_chunks()
    nested = False
    while pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type) or pa.types.is_large_list(array.type):
        array, nested = array.flatten(), True
    values: np.ndarray = array.to_numpy(zero_copy_only=False)
    return values.reshape(len(column), *shape) if nested else values


def values_per_row(column: pa.ChunkedArray) -> np.ndarray:
    """Number of leaf values in each row of a (possibly nested) list column; 1 for a scalar column."""
    array = column.combine_chunks()
    counts = np.ones(len(array), dtype=np.int64)
    while pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type) or pa.types.is_large_list(array.type):
        if pa.types.is_fixed_size_list(array.type):
            counts *= array.type.list_size
        else:  # variable lists: every row must hold the same count, checked against info.json by the caller
            lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
            if len(np.unique(lengths)) > 1:
                return np.full(len(array), -1)
            counts *= int(lengths[0]) if len(lengths) else 1
        array = array.flatten()
    return counts


def validate_info(info: Any, path: Path) -> None:
    """meta/info.json holds what the reader needs: a version, fps > 0, and features with valid shapes."""
    fix = f"fix '{path}' or re-create the dataset with LeRobot"
    if not isinstance(info, dict):
        raise RocketError(f"'{path}' must hold a JSON object; {fix}")
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        raise RocketError(
            f"dataset '{path.parent.parent}' is LeRobot format {version}; supported: {', '.join(SUPPORTED_VERSIONS)}; "
            "convert it with LeRobot's conversion scripts (e.g. `convert_dataset_v21_to_v30`)"
        )
    fps = info.get("fps")
    if fps is None:
        raise RocketError(f"'{path}' has no 'fps'; add the recording's frame rate (e.g. \"fps\": 10)")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise RocketError(f"'{path}' has fps {fps!r}; it must be a positive number of frames per second: {fix}")
    features = info.get("features")
    if not isinstance(features, dict) or not features:
        raise RocketError(f"'{path}' has no 'features' mapping; {fix}")
    for key, feature in features.items():
        shape = feature.get("shape") if isinstance(feature, dict) else None
        if not isinstance(feature, dict) or not isinstance(feature.get("dtype"), str):
            raise RocketError(f"feature '{key}' in '{path}' has no 'dtype'; {fix}")
        if (not isinstance(shape, list) or not shape
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise RocketError(f"feature '{key}' in '{path}' has shape {shape!r}; shapes are lists of positive integers: {fix}")
        if feature["dtype"] in CAMERA_DTYPES and (len(shape) != 3 or 3 not in shape):
            raise RocketError(f"camera '{key}' in '{path}' has shape {shape}; a camera has shape (height, width, 3): {fix}")
    missing = [k for k in REQUIRED_FEATURES if k not in features]
    if missing:
        raise RocketError(f"'{path}' lists no {', '.join(missing)} feature; {fix}")
    if version != CODEBASE_VERSION:
        templates = ["data_path"] + (["video_path"] if any(f["dtype"] == "video" for f in features.values()) else [])
        for name in templates:
            if not isinstance(info.get(name), str):
                raise RocketError(f"'{path}' has no '{name}' template, which LeRobot {version} needs; {fix}")
        chunks = info.get("chunks_size")
        if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks <= 0:
            raise RocketError(f"'{path}' has chunks_size {chunks!r}; it must be a positive integer: {fix}")


def aggregate_stats(per_episode: Sequence[Mapping[str, Mapping[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Dataset-wide min/max/mean/std/count from per-episode ones (v2.1's episodes_stats.jsonl), as LeRobot does:
    count-weighted means, and the variance of the union (within-episode variance + spread of the means)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in {k for stats in per_episode for k in stats}:
        parts = [s[key] for s in per_episode if key in s and "count" in s[key]]
        if not parts:
            continue
        counts = np.array([float(np.sum(p["count"])) for p in parts])
        weights = (counts / counts.sum()).reshape(-1, *([1] * np.ndim(parts[0]["mean"])))
        means, stds = np.stack([p["mean"] for p in parts]), np.stack([p["std"] for p in parts])
        mean = (weights * means).sum(0)
        variance = (weights * (stds**2 + (means - mean) ** 2)).sum(0)
        out[key] = {"min": np.min([p["min"] for p in parts], 0), "max": np.max([p["max"] for p in parts], 0),
                    "mean": mean, "std": np.sqrt(variance), "count": np.array([counts.sum()])}
    return out
