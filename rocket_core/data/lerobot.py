"""A small reader for LeRobot datasets, formats v2.0, v2.1 and v3.0 (pyarrow + PyAV), independent of `lerobot`.

`LeRobotReader.item(i, delta_timestamps)` returns what `lerobot.datasets.LeRobotDataset(...)[i]` returns
(same keys, dtypes, shapes and values), which the parity tests check against datasets written by LeRobot.
Layouts read:
* v3.0: meta/info.json, meta/stats.json, meta/tasks.parquet, meta/episodes/chunk-*/file-*.parquet,
  data/chunk-*/file-*.parquet and, in video mode, videos/<camera>/chunk-*/file-*.mp4 (many episodes per file);
* v2.0 / v2.1: meta/info.json, meta/episodes.jsonl, meta/tasks.jsonl, meta/stats.json (v2.0) or
  meta/episodes_stats.jsonl (v2.1), one parquet per episode (`data_path`) and one mp4 per episode and
  camera (`video_path`), each video starting at t = 0.
Everything read is validated (fps, feature shapes, stats lengths) so a bad dataset fails with one line
naming the file and the fix, before any training starts.
"""
from __future__ import annotations

import io
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, UnidentifiedImageError

from rocket_core.data.lerobot_files import (
    CAMERA_DTYPES,
    CODEBASE_VERSION,
    TOLERANCE_S,
    aggregate_stats,
    delta_offsets,
    flat_size,
    read_json,
    read_jsonl,
    read_parquet,
    read_parquets,
    resolve_dataset_root,
    to_numpy,
    validate_info,
    values_per_row,
)
from rocket_core.data.video import decode_video_frames
from rocket_core.errors import RocketError


class LeRobotReader:
    """Read-only view of one LeRobot dataset (v2.0, v2.1 or v3.0): metadata, frames and delta-timestamp windows.

    Rows follow the global `index` column, so row i is `LeRobotDataset(...)[i]`. Non-image columns are
    held as numpy arrays; images are decoded on access (PNG bytes in image mode, mp4 frames in video mode).
    """

    def __init__(self, source: str | Path, revision: str | None = None) -> None:
        self.root = resolve_dataset_root(source, revision)
        self.source = str(source)
        info_path = self.root / "meta" / "info.json"
        self.info: dict[str, Any] = read_json(info_path)
        validate_info(self.info, info_path)
        self.version: str = self.info["codebase_version"]
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.camera_keys = [k for k, f in self.features.items() if f["dtype"] in CAMERA_DTYPES]
        if self.version == CODEBASE_VERSION:
            self.tasks = self._read_tasks()
            self._episodes = self._read_episodes()
            files = sorted((self.root / "data").glob("chunk-*/file-*.parquet"))
        else:
            self.tasks, self._episodes = self._read_v2_tasks(), self._read_v2_episodes()
            files = [self._v2_path("data_path", int(e)) for e in self._episodes["episode_index"]]
        self._files = files
        self._table, self._row_file = self._read_data(files)
        self._columns = {
            key: to_numpy(self._table.column(key), self.features[key]["shape"])
            for key in self.features
            if key not in self.camera_keys and key in self._table.column_names
        }
        known, row_episodes = self._episodes["episode_index"], self._columns["episode_index"]
        self._row_episode = np.minimum(np.searchsorted(known, row_episodes), len(known) - 1)
        if not np.array_equal(known[self._row_episode], row_episodes):
            raise RocketError(f"data files of '{self.root}' hold episodes missing from the episode metadata; re-create the dataset")
        self._row_from = self._episodes["dataset_from_index"][self._row_episode]
        self._row_to = self._episodes["dataset_to_index"][self._row_episode]
        rows = np.arange(len(self._table))
        outside = (rows < self._row_from) | (rows >= self._row_to)
        if outside.any():
            meta = "meta/episodes" if self.version == CODEBASE_VERSION else "meta/episodes.jsonl"
            raise RocketError(
                f"the episode bounds in '{self.root / meta}' disagree with the data files (episode "
                f"{int(row_episodes[outside.argmax()])} in '{self.data_file(int(outside.argmax()))}'); re-create the dataset"
            )
        task_index = self._columns["task_index"]
        if len(task_index) and (task_index.min() < 0 or task_index.max() >= len(self.tasks)):
            raise RocketError(f"the data of '{self.root}' names a task_index missing from its task list; re-create the dataset")

    def __len__(self) -> int:
        return int(self._table.num_rows)

    @property
    def num_episodes(self) -> int:
        return len(self._episodes["episode_index"])

    @cached_property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """The statistics the dataset ships, as arrays: `stats[feature][min|max|mean|std|count|q01|...]`.

        v3.0 and v2.0: meta/stats.json; v2.1: episodes_stats.jsonl aggregated; {} when the file is absent
        (openpi's v2.0 conversions have none). Lengths and finiteness are checked against info.json. What is
        missing (e.g. q01/q99) is computed by `rocket_core.data.stats`.
        """
        path = self.root / "meta" / ("episodes_stats.jsonl" if self.version == "v2.1" else "stats.json")
        if not path.is_file():
            return {}
        if self.version == "v2.1":
            return aggregate_stats([self._parse_stats(row.get("stats"), path) for row in read_jsonl(path)])
        return self._parse_stats(read_json(path), path)

    def _parse_stats(self, raw: Any, path: Path) -> dict[str, dict[str, np.ndarray]]:
        if not isinstance(raw, dict):
            raise RocketError(f"'{path}' must map features to statistics; recompute the stats or re-download the dataset")
        out: dict[str, dict[str, np.ndarray]] = {}
        for key, named in raw.items():
            if not isinstance(named, dict):
                raise RocketError(f"statistics of '{key}' in '{path}' are not a mapping; recompute the stats")
            try:
                out[key] = {name: np.asarray(v, dtype=np.float64) for name, v in named.items()}
            except (TypeError, ValueError):
                raise RocketError(f"statistics of '{key}' in '{path}' are not numbers; recompute the stats") from None
            feature = self.features.get(key)
            if feature is None:
                continue
            want = 3 if key in self.camera_keys else flat_size(feature["shape"])
            for name, values in out[key].items():
                if name != "count" and values.size != want:
                    raise RocketError(
                        f"'{path}' holds {values.size} values of '{name}' for '{key}', but meta/info.json declares "
                        f"{want}; recompute the stats (or delete the file and let rocket compute them)"
                    )
                if not np.isfinite(values).all():
                    raise RocketError(
                        f"'{path}' holds a non-finite '{name}' for '{key}'; recompute the stats "
                        "(or delete the file and let rocket compute them)"
                    )
        return out

    def episode_bounds(self, episode: int) -> tuple[int, int]:
        """Global row range [from, to) of the episode at position `episode`."""
        return int(self._episodes["dataset_from_index"][episode]), int(self._episodes["dataset_to_index"][episode])

    def episode_index(self, episode: int) -> int:
        """The `episode_index` value of the episode at position `episode`."""
        return int(self._episodes["episode_index"][episode])

    def episode_task(self, episode: int) -> str:
        """The instruction of the episode at position `episode` (that of its first frame)."""
        return self.task(self.episode_bounds(episode)[0])

    def episode_of(self, index: int) -> int:
        """Position of the episode holding row `index`."""
        return int(self._row_episode[index])

    def data_file(self, index: int) -> Path:
        """The data file holding row `index` (for error messages)."""
        return self._files[int(self._row_file[index])]

    def column(self, key: str) -> np.ndarray:
        """All rows of a non-camera feature (e.g. 'action': (N, 7) float32)."""
        if key not in self._columns:
            raise RocketError(f"dataset '{self.root}' has no feature '{key}'; available: {', '.join(self._columns)}")
        return self._columns[key]

    def check_finite(self, keys: Sequence[str]) -> None:
        """Refuse NaN or infinity in these features, naming the file and row, before they poison a run."""
        for key in keys:
            values = self.column(key)
            bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
            if bad.any():
                row = int(np.argmax(bad))
                raise RocketError(
                    f"'{self.data_file(row)}' holds a non-finite '{key}' (frame index {row}, "
                    f"{int(bad.sum())} frames in all); fix the data, or pass --allow-nonfinite "
                    "(data.allow_nonfinite: true) to train on it anyway"
                )

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
            start = float(self._episodes[f"videos/{key}/from_timestamp"][episode]) if self.version == CODEBASE_VERSION else 0.0
            times = start + self._columns["timestamp"][rows[sel]].astype(np.float64)
            path = self._video_path(key, episode)
            decoded = decode_video_frames(path, times, TOLERANCE_S)
            if decoded.shape[1:] != out.shape[1:]:
                raise RocketError(
                    f"video '{path}' has {decoded.shape[1]}x{decoded.shape[2]} frames but meta/info.json declares "
                    f"{out.shape[1]}x{out.shape[2]} for '{key}'; fix the shape in meta/info.json or re-encode the video"
                )
            out[sel] = decoded
        return out

    def item(self, index: int, delta_timestamps: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """`LeRobotDataset[index]`: cameras float CHW in [0, 1], features as tensors, `<key>_is_pad`, `task`."""
        import torch  # here only: reading and inspecting a dataset (`rocket data inspect`) needs no torch

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
        if "height" not in shape or "width" not in shape:
            return feature["shape"][0], feature["shape"][1], 3
        return shape["height"], shape["width"], 3

    def _decode_image(self, key: str, row: int) -> np.ndarray:
        cell = self._table.column(key)[row]
        try:
            frame = np.asarray(Image.open(io.BytesIO(cell["bytes"].as_py())).convert("RGB"))
        except (UnidentifiedImageError, OSError, TypeError, KeyError):
            raise RocketError(f"image '{key}' of frame {row} in '{self.data_file(row)}' is corrupt; re-download the dataset") from None
        if frame.shape != self.frame_shape(key):
            raise RocketError(
                f"image '{key}' of frame {row} in '{self.data_file(row)}' is {frame.shape[0]}x{frame.shape[1]} but "
                f"meta/info.json declares {self.frame_shape(key)[0]}x{self.frame_shape(key)[1]}; fix the shape in meta/info.json"
            )
        return frame

    def _v2_path(self, template: str, episode_index: int, video_key: str | None = None) -> Path:
        chunk = episode_index // int(self.info["chunks_size"])
        try:
            path: Path = self.root / self.info[template].format(
                episode_chunk=chunk, episode_index=episode_index, video_key=video_key
            )
            return path
        except (KeyError, IndexError, ValueError) as exc:
            raise RocketError(
                f"'{template}' in meta/info.json of '{self.root}' is not a valid path template ({exc}); fix meta/info.json"
            ) from None

    def _video_path(self, key: str, episode: int) -> Path:
        if self.version == CODEBASE_VERSION:
            path: Path = self.root / self.info["video_path"].format(
                video_key=key,
                chunk_index=int(self._episodes[f"videos/{key}/chunk_index"][episode]),
                file_index=int(self._episodes[f"videos/{key}/file_index"][episode]),
            )
        else:
            path = self._v2_path("video_path", self.episode_index(episode), key)
        if not path.is_file():
            raise RocketError(f"video '{path}' is missing; the dataset is incomplete: re-download it")
        return path

    def _read_tasks(self) -> list[str]:
        path = self.root / "meta" / "tasks.parquet"
        if not path.is_file():
            raise RocketError(f"'{path}' is missing; the LeRobot dataset is incomplete: re-download or re-create it")
        table = read_parquets([path])
        return self._task_list(table.column("task_index").to_pylist(), table.column("task").to_pylist(), path)

    def _read_v2_tasks(self) -> list[str]:
        path = self.root / "meta" / "tasks.jsonl"
        rows = read_jsonl(path)
        return self._task_list([r.get("task_index") for r in rows], [r.get("task") for r in rows], path)

    @staticmethod
    def _task_list(indices: Sequence[Any], tasks: Sequence[Any], path: Path) -> list[str]:
        if any(not isinstance(i, int) or not 0 <= i < len(indices) for i in indices) or len(set(indices)) != len(indices):
            raise RocketError(f"'{path}' must number its tasks 0..{len(indices) - 1} once each; re-create the dataset")
        if any(not isinstance(t, str) for t in tasks):
            raise RocketError(f"'{path}' holds a task that is not a string; re-create the dataset")
        out = [""] * len(indices)
        for index, task in zip(indices, tasks):
            out[index] = task
        return out

    def _read_episodes(self) -> dict[str, np.ndarray]:
        paths = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        names = ["episode_index", "dataset_from_index", "dataset_to_index"]
        for key in self.camera_keys:
            if self.features[key]["dtype"] == "video":
                names += [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
        table = read_parquets(paths)
        missing = [n for n in names if n not in table.column_names]
        if missing:
            raise RocketError(
                f"episode metadata of '{self.root}' lacks {', '.join(missing)}; re-create the dataset with LeRobot v3"
            )
        table = table.select(names)
        table = table.take(pc.sort_indices(table, [("episode_index", "ascending")]))
        return {name: table.column(name).to_numpy() for name in names}

    def _read_v2_episodes(self) -> dict[str, np.ndarray]:
        """episodes.jsonl -> episode_index and [from, to) row ranges: LeRobot v2 takes the boundaries from the
        cumulative `length`s in episode order."""
        path = self.root / "meta" / "episodes.jsonl"
        rows = read_jsonl(path)
        if not rows:
            raise RocketError(f"'{path}' lists no episode; re-create the dataset")
        for row in rows:
            for name in ("episode_index", "length"):
                value = row.get(name)
                if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "length" else 0):
                    raise RocketError(f"'{path}' has an episode with {name} {value!r}; re-create the dataset")
        rows = sorted(rows, key=lambda r: r["episode_index"])
        lengths = np.array([r["length"] for r in rows], dtype=np.int64)
        ends = np.cumsum(lengths)
        return {"episode_index": np.array([r["episode_index"] for r in rows], dtype=np.int64),
                "dataset_from_index": ends - lengths, "dataset_to_index": ends}

    def _read_data(self, files: Sequence[Path]) -> tuple[pa.Table, np.ndarray]:
        """All data files, checked column by column against info.json, as one table in `index` order, and the
        file each row came from."""
        if not files:
            raise RocketError(f"'{self.root}' has no data files where meta/info.json says; re-download or re-create it")
        tables = []
        for path in files:
            if not path.is_file():
                raise RocketError(f"data file '{path}' is missing; the dataset is incomplete: re-download it")
            table = read_parquet(path)
            self._check_columns(table, path)
            tables.append(table)
        try:
            table = pa.concat_tables(tables, promote_options="default")
        except pa.ArrowInvalid as exc:
            detail = " ".join(str(exc).split())
            raise RocketError(f"the data files of '{self.root}' do not share one schema ({detail}); re-create the dataset") from None
        row_file = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
        index = table.column("index").to_numpy()
        if not np.array_equal(index, np.arange(len(index))):
            order = np.argsort(index, kind="stable")
            if not np.array_equal(index[order], np.arange(len(index))):
                raise RocketError(f"the 'index' column of '{self.root}' is not 0..N-1; re-create the dataset")
            table, row_file = table.take(pa.array(order)), row_file[order]
        return table, row_file

    def _check_columns(self, table: pa.Table, path: Path) -> None:
        missing = [k for k in self.features if k not in table.column_names and self.features[k]["dtype"] != "video"]
        if missing:
            raise RocketError(
                f"data file '{path}' lacks the columns {', '.join(missing)} that meta/info.json lists; re-create the dataset"
            )
        for key, feature in self.features.items():
            if key in self.camera_keys or key not in table.column_names or table.num_rows == 0:
                continue
            counts = values_per_row(table.column(key))
            want = flat_size(feature["shape"])
            if not np.all(counts == want):
                got = "a varying number of" if counts.min() < 0 else str(int(counts[0]))
                raise RocketError(
                    f"'{key}' in data file '{path}' holds {got} values per frame, but meta/info.json declares shape "
                    f"{feature['shape']}; fix the shape in meta/info.json or re-create the dataset"
                )
