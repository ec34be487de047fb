"""Per-group dataset statistics users can trust: from the dataset when it has them, else computed once and cached.

Normalisation needs q01/q99 (OpenVLA-OFT) or mean/std (pi0) of the state and action, per task group (see
`keymap.episode_groups`: one per LIBERO suite when a dataset mixes suites). LeRobot v2.x datasets ship no
quantiles, and shipped statistics are pooled over the whole dataset, so in those cases every statistic is
computed in one streaming pass over the episodes (with a progress bar): exact quantiles with numpy's linear
interpolation, as OpenVLA-OFT computes its dataset statistics, population std. The result is cached beside the
dataset (`<root>/.rocket/`, or `~/.cache/rocket/dataset-stats/` when that is not writable or the dataset sits
in the Hugging Face cache), keyed by a digest of the values they come from and the grouping, so it is computed once.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from rocket_core.data.keymap import ALL
from rocket_core.data.lerobot import LeRobotReader
from rocket_core.data.lerobot_files import STAT_NAMES
from rocket_core.errors import RocketError

GroupStats = dict[str, dict[str, dict[str, np.ndarray]]]  # group -> feature -> stat name -> values
_CACHE_VERSION = 1


def stat_features(reader: LeRobotReader) -> list[str]:
    """Features that get statistics: every float vector that is not a camera or the timestamp."""
    return [k for k, f in reader.features.items()
            if k not in reader.camera_keys and k != "timestamp" and str(f["dtype"]).startswith("float")]


def shipped_group_stats(reader: LeRobotReader, keys: Sequence[str]) -> GroupStats | None:
    """The dataset's own statistics as the single group "all", when they hold every statistic for `keys`."""
    if all(set(STAT_NAMES) <= set(reader.stats.get(k, {})) for k in keys):
        return {ALL: {k: {n: reader.stats[k][n] for n in STAT_NAMES} for k in keys}}
    return None


def compute_group_stats(reader: LeRobotReader, episode_group: Sequence[str], keys: Sequence[str],
                        progress: bool = True) -> GroupStats:
    """One pass over the episodes: gather each group's rows, then exact q01/q99, mean, std, min, max and count.
    Non-finite rows are left out (they reach here only with allow_nonfinite)."""
    from rich.console import Console

    from rocket_core.progress import Bar

    rows: dict[str, list[np.ndarray]] = {g: [] for g in dict.fromkeys(episode_group)}
    with Bar("dataset statistics", reader.num_episodes, enabled=progress, console=Console(stderr=True)) as bar:
        for episode, group in enumerate(episode_group):
            lo, hi = reader.episode_bounds(episode)
            rows[group].append(np.arange(lo, hi))
            bar.update(advance=1)
    out: GroupStats = {}
    for group, parts in rows.items():
        index = np.concatenate(parts)
        out[group] = {}
        for key in keys:
            values = reader.column(key)[index].astype(np.float64).reshape(len(index), -1)
            values = values[np.isfinite(values).all(axis=1)]
            if not len(values):
                raise RocketError(f"feature '{key}' of dataset '{reader.root}' has no finite frame in group '{group}'; fix the data")
            out[group][key] = {
                "q01": np.quantile(values, 0.01, axis=0), "q99": np.quantile(values, 0.99, axis=0),
                "mean": values.mean(0), "std": values.std(0), "min": values.min(0), "max": values.max(0),
                "count": np.array([len(values)]),
            }
    return out


def _writable(folder: Path) -> bool:
    """Writable, and not marked read-only (root passes `os.access` even on r-x folders such as shared fixtures)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & stat.S_IWUSR)
    except OSError:
        return False


def _cache_dir(root: Path) -> Path:
    beside = root / ".rocket"
    in_hf_cache = root.parent.name == "snapshots"
    if not in_hf_cache and _writable(beside if beside.is_dir() else root):
        return beside
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rocket" / "dataset-stats"


def cache_path(reader: LeRobotReader, episode_group: Sequence[str], keys: Sequence[str]) -> Path:
    """Where the statistics of this content and grouping live: the name is a digest of exactly what they are
    computed from (each feature's values, the episode bounds and groups), so any change to those gives a new
    file, and no data file has to be re-read to find it."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([_CACHE_VERSION, list(keys), list(episode_group)]).encode())
    digest.update(np.array([reader.episode_bounds(e) for e in range(reader.num_episodes)], dtype=np.int64).tobytes())
    for key in keys:
        digest.update(np.ascontiguousarray(reader.column(key), dtype=np.float64).tobytes())
    return _cache_dir(reader.root) / f"stats-{digest.hexdigest()}.json"


def _load(path: Path) -> GroupStats | None:
    try:
        raw = json.loads(path.read_text())
        return {g: {k: {n: np.asarray(v, dtype=np.float64) for n, v in s.items()} for k, s in f.items()}
                for g, f in raw["groups"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent or damaged: recompute (and rewrite)


def _save(path: Path, stats: GroupStats) -> None:
    """Atomic write; a cache that cannot be written only costs a recomputation next time."""
    body = json.dumps({"version": _CACHE_VERSION,
                       "groups": {g: {k: {n: v.tolist() for n, v in s.items()} for k, s in f.items()}
                                  for g, f in stats.items()}})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".stats-", suffix=".part")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def load_group_stats(reader: LeRobotReader, episode_group: Sequence[str], progress: bool = True) -> tuple[GroupStats, str]:
    """Statistics per group for every float feature, and where they came from ("dataset", "cache <path>" or
    "computed <path>")."""
    keys = stat_features(reader)
    if set(episode_group) == {ALL}:
        shipped = shipped_group_stats(reader, keys)
        if shipped is not None:
            return shipped, "dataset"
    path = cache_path(reader, episode_group, keys)
    cached = _load(path)
    if cached is not None and set(cached) == set(episode_group) and all(set(keys) <= set(f) for f in cached.values()):
        return cached, f"cache {path}"
    stats = compute_group_stats(reader, episode_group, keys, progress)
    _save(path, stats)
    return stats, f"computed {path}"
