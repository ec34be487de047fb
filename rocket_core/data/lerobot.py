"""A small reader for LeRobot v3 datasets (pyarrow + PyAV), independent of the `lerobot` package.

`LeRobotReader.item(i, delta_timestamps)` returns what `lerobot.datasets.LeRobotDataset(...)[i]` returns
(same keys, dtypes, shapes and values), which the parity tests check against datasets written by LeRobot.
Layout read: meta/info.json, meta/stats.json, meta/tasks.parquet, meta/episodes/chunk-*/file-*.parquet,
data/chunk-*/file-*.parquet and, in video mode, videos/<camera>/chunk-*/file-*.mp4.
"""
from __future__ import annotations

import io
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from PIL import Image, UnidentifiedImageError

from rocket_core.data.video import decode_video_frames
from rocket_core.errors import RocketError

CODEBASE_VERSION = "v3.0"
TOLERANCE_S = 1e-4  # LeRobot's default: a delta or a video frame must sit this close to a frame time
CAMERA_DTYPES = ("image", "video")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_dataset_root(source: str | Path, revision: str | None = None) -> Path:
    """A local dataset folder, or a Hub dataset repo id downloaded (or found in the HF cache)."""
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "meta" / "info.json").is_file():
            raise RocketError(
                f"'{path}' is not a LeRobot dataset (no meta/info.json); "
                "give the dataset root, the folder holding meta/ and data/"
            )
        return path.resolve()
    text = str(source)
    if text.startswith((".", "/", "~")) or not _REPO_ID.match(text):
        raise RocketError(f"dataset folder '{text}' does not exist; check the path or give a Hub repo id like 'owner/name'")
    return resolve_dataset_root(_download(text, revision))


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


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise RocketError(f"'{path}' is missing; the LeRobot dataset is incomplete: re-download or re-create it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RocketError(f"'{path}' is not valid JSON ({exc.msg}, line {exc.lineno}); re-download the dataset") from None


def _read_parquets(paths: Sequence[Path]) -> pa.Table:
    if not paths:
        raise RocketError("the LeRobot dataset has no parquet files where meta/info.json says; re-download or re-create it")
    try:
        return pa.concat_tables([pq.read_table(p, memory_map=True) for p in paths], promote_options="default")
    except (pa.ArrowInvalid, OSError) as exc:
        detail = " ".join(str(exc).split())
        raise RocketError(f"cannot read the dataset's parquet files ({detail}); re-download the dataset") from None


def _to_numpy(column: pa.ChunkedArray, shape: Sequence[int]) -> np.ndarray:
    """A (possibly nested) list column -> (N, *shape); a scalar column -> (N,), as LeRobot returns them."""
    array = column.combine_chunks()
    nested = False
    while pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type) or pa.types.is_large_list(array.type):
        array, nested = array.flatten(), True
    values = array.to_numpy(zero_copy_only=False)
    return values.reshape(len(column), *shape) if nested else values


class LeRobotReader:
    """Read-only view of one LeRobot v3 dataset: metadata, frames and delta-timestamp windows.

    Rows follow the global `index` column, so row i is `LeRobotDataset(...)[i]`. Non-image columns are
    held as numpy arrays; images are decoded on access (PNG bytes in image mode, mp4 frames in video mode).
    """

    def __init__(self, source: str | Path, revision: str | None = None) -> None:
        self.root = resolve_dataset_root(source, revision)
        self.info: dict[str, Any] = _read_json(self.root / "meta" / "info.json")
        version = self.info.get("codebase_version")
        if version != CODEBASE_VERSION:
            raise RocketError(
                f"dataset '{self.root}' is LeRobot format {version}, only {CODEBASE_VERSION} is supported; "
                "convert it with LeRobot's `convert_dataset_v21_to_v30` script"
            )
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.camera_keys = [k for k, f in self.features.items() if f["dtype"] in CAMERA_DTYPES]
        self.tasks = self._read_tasks()
        self._episodes = self._read_episodes()
        self._table = self._read_data()
        self._columns = {
            key: _to_numpy(self._table.column(key), self.features[key]["shape"])
            for key in self.features
            if key not in self.camera_keys and key in self._table.column_names
        }
        known, row_episodes = self._episodes["episode_index"], self._columns["episode_index"]
        self._row_episode = np.minimum(np.searchsorted(known, row_episodes), len(known) - 1)
        if not np.array_equal(known[self._row_episode], row_episodes):
            raise RocketError(f"data files of '{self.root}' hold episodes missing from meta/episodes; re-create the dataset")
        self._row_from = self._episodes["dataset_from_index"][self._row_episode]
        self._row_to = self._episodes["dataset_to_index"][self._row_episode]

    def __len__(self) -> int:
        return self._table.num_rows

    @property
    def num_episodes(self) -> int:
        return len(self._episodes["episode_index"])

    @cached_property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """meta/stats.json as arrays: `stats[feature][min|max|mean|std|count|q01|...]`."""
        raw = _read_json(self.root / "meta" / "stats.json")
        return {key: {name: np.asarray(v, dtype=np.float64) for name, v in s.items()} for key, s in raw.items()}

    def episode_bounds(self, episode: int) -> tuple[int, int]:
        """Global row range [from, to) of the episode at position `episode`."""
        return int(self._episodes["dataset_from_index"][episode]), int(self._episodes["dataset_to_index"][episode])

    def column(self, key: str) -> np.ndarray:
        """All rows of a non-camera feature (e.g. 'action': (N, 7) float32)."""
        if key not in self._columns:
            raise RocketError(f"dataset '{self.root}' has no feature '{key}'; available: {', '.join(self._columns)}")
        return self._columns[key]

    def window(self, index: int, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows for frame offsets around `index`, clamped to its episode, and the padding mask.

        Out-of-episode slots repeat the episode's first/last frame (LeRobot's behaviour) and are flagged.
        """
        lo, hi = self._row_from[index], self._row_to[index]
        target = index + offsets
        return np.clip(target, lo, hi - 1), (target < lo) | (target >= hi)

    def frames(self, key: str, rows: np.ndarray) -> np.ndarray:
        """`(len(rows), H, W, 3)` uint8 frames of camera `key`."""
        if key not in self.camera_keys:
            raise RocketError(f"dataset '{self.root}' has no camera '{key}'; available: {', '.join(self.camera_keys)}")
        if self.features[key]["dtype"] == "image":
            return np.stack([self._decode_image(key, int(r)) for r in rows])
        out = np.empty((len(rows), *self.frame_shape(key)), dtype=np.uint8)
        episodes = self._row_episode[rows]
        for episode in np.unique(episodes):
            sel = episodes == episode
            start = float(self._episodes[f"videos/{key}/from_timestamp"][episode])
            times = start + self._columns["timestamp"][rows[sel]].astype(np.float64)
            out[sel] = decode_video_frames(self._video_path(key, episode), times, TOLERANCE_S)
        return out

    def item(self, index: int, delta_timestamps: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """`LeRobotDataset[index]`: cameras float CHW in [0, 1], features as tensors, `<key>_is_pad`, `task`."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} frames")
        windows = {}
        for key, deltas in (delta_timestamps or {}).items():
            if key not in self.features:
                raise RocketError(
                    f"delta_timestamps names '{key}', which is not a feature; available: {', '.join(self.features)}"
                )
            windows[key] = self.window(index, delta_offsets(deltas, self.fps))
        item: dict[str, Any] = {}
        for key in self.features:
            rows = windows[key][0] if key in windows else np.array([index])
            if key in self.camera_keys:
                value = torch.from_numpy(self.frames(key, rows)).permute(0, 3, 1, 2).float() / 255
            elif key in self._columns:
                value = torch.from_numpy(self._columns[key][rows])
            else:
                continue
            item[key] = value if key in windows else value[0]
        for key, (_, pad) in windows.items():
            item[f"{key}_is_pad"] = torch.from_numpy(pad)
        item["task"] = self.task(index)
        return item

    def task(self, index: int) -> str:
        """The language instruction of row `index`."""
        return self.tasks[int(self._columns["task_index"][index])]

    def frame_shape(self, key: str) -> tuple[int, int, int]:
        """(H, W, 3) of camera `key`, from meta/info.json."""
        feature = self.features[key]
        shape = dict(zip(feature.get("names") or ("height", "width", "channels"), feature["shape"]))
        return shape["height"], shape["width"], 3

    def _decode_image(self, key: str, row: int) -> np.ndarray:
        data = self._table.column(key)[row]["bytes"].as_py()
        try:
            return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        except (UnidentifiedImageError, OSError, TypeError):
            raise RocketError(f"image '{key}' of frame {row} in '{self.root}' is corrupt; re-download the dataset") from None

    def _video_path(self, key: str, episode: int) -> Path:
        path = self.root / self.info["video_path"].format(
            video_key=key,
            chunk_index=int(self._episodes[f"videos/{key}/chunk_index"][episode]),
            file_index=int(self._episodes[f"videos/{key}/file_index"][episode]),
        )
        if not path.is_file():
            raise RocketError(f"video '{path}' is missing; the dataset is incomplete: re-download it")
        return path

    def _read_tasks(self) -> list[str]:
        path = self.root / "meta" / "tasks.parquet"
        if not path.is_file():
            raise RocketError(f"'{path}' is missing; the LeRobot dataset is incomplete: re-download or re-create it")
        table = _read_parquets([path])
        tasks = [""] * table.num_rows
        for index, task in zip(table.column("task_index").to_pylist(), table.column("task").to_pylist()):
            tasks[index] = task
        return tasks

    def _read_episodes(self) -> dict[str, np.ndarray]:
        paths = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        names = ["episode_index", "dataset_from_index", "dataset_to_index"]
        for key in self.camera_keys:
            if self.features[key]["dtype"] == "video":
                names += [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
        table = _read_parquets(paths)
        missing = [n for n in names if n not in table.column_names]
        if missing:
            raise RocketError(
                f"episode metadata of '{self.root}' lacks {', '.join(missing)}; re-create the dataset with LeRobot v3"
            )
        table = table.select(names)
        table = table.take(pc.sort_indices(table, [("episode_index", "ascending")]))
        return {name: table.column(name).to_numpy() for name in names}

    def _read_data(self) -> pa.Table:
        table = _read_parquets(sorted((self.root / "data").glob("chunk-*/file-*.parquet")))
        missing = [k for k in self.features if k not in table.column_names and self.features[k]["dtype"] != "video"]
        if missing:
            raise RocketError(
                f"data files of '{self.root}' lack the columns {', '.join(missing)} that meta/info.json lists; "
                "re-create the dataset"
            )
        index = table.column("index").to_numpy()
        if not np.array_equal(index, np.arange(len(index))):
            order = np.argsort(index, kind="stable")
            if not np.array_equal(index[order], np.arange(len(index))):
                raise RocketError(f"the 'index' column of '{self.root}' is not 0..N-1; re-create the dataset")
            table = table.take(pa.array(order))
        return table
