"""Hostile datasets (issue 14): each row ends in one error line naming the file and the fix, exit 2.

Metadata rows go through `rocket data inspect` (it reads and checks everything the trainer reads, and decodes
one frame per camera); the non-finite and stats rows also through a real `rocket align` of the tiny preset.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rocket_core.data import bundled_dataset_path
from tests.conftest import SHARED_FIXTURES, fixture_dir
from tests.robustness.harness import Case, check

V2 = fixture_dir("ROCKET_LEROBOT_V2_FIXTURE", SHARED_FIXTURES / "lerobot-v2")
BUNDLED_DATA = "data/chunk-000/file-000.parquet"


def _source(kind: str) -> Path:
    return bundled_dataset_path() if kind == "v3" else V2 / kind / "dataset"


def _info_of(kind: str) -> dict[str, Any]:
    """The source dataset's meta/info.json ({} when its fixture folder is missing: those rows skip)."""
    path = _source(kind) / "meta/info.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _size(kind: str, key: str) -> int:
    """The per-frame size of `key` that the source dataset declares (0 when its fixture folder is missing)."""
    return int(_info_of(kind).get("features", {}).get(key, {"shape": [0]})["shape"][0])


def _last_episode_file(kind: str) -> str:
    """The last episode's data file of a v2 dataset, relative to its root, from info.json's data_path."""
    info = _info_of(kind)
    if not info:
        return "(fixture missing)"
    last = int(info["total_episodes"]) - 1
    return info["data_path"].format(episode_chunk=last // int(info["chunks_size"]), episode_index=last)


def _copy(source: Path, tmp: Path) -> Path:
    root = Path(shutil.copytree(source, tmp / "ds"))
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # the shared fixtures are read-only
    return root


def _dataset(kind: str, tmp: Path) -> Path:
    if not _source(kind).is_dir():
        pytest.skip(f"fixture missing: {V2 / kind} (set ROCKET_LEROBOT_V2_FIXTURE to the folder; see docs/testing.md)")
    return _copy(_source(kind), tmp)


def _edit_json(path: Path, edit: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _info(kind: str, edit: Callable[[dict], Any]) -> Callable[[Path], tuple[str, ...]]:
    def setup(tmp: Path) -> tuple[str, ...]:
        root = _dataset(kind, tmp)
        _edit_json(root / "meta/info.json", edit)
        return ("data", "inspect", str(root))
    return setup


def _feature(kind: str, key: str, **changes: Any) -> Callable[[Path], tuple[str, ...]]:
    def edit(info: dict) -> dict:
        info["features"][key].update(changes)
        return info
    return _info(kind, edit)


def _without(key: str) -> Callable[[dict], dict]:
    return lambda info: {k: v for k, v in info.items() if k != key}


def _raw(kind: str, relative: str, content: bytes) -> Callable[[Path], tuple[str, ...]]:
    def setup(tmp: Path) -> tuple[str, ...]:
        root = _dataset(kind, tmp)
        (root / relative).write_bytes(content)
        return ("data", "inspect", str(root))
    return setup


def _short_stats(kind: str, command: str = "inspect") -> Callable[[Path], tuple[str, ...]]:
    """Drop the last value of the action's first statistic (v3/v2.0 stats.json, v2.1 episodes_stats.jsonl)."""
    def setup(tmp: Path) -> tuple[str, ...]:
        root = _dataset(kind, tmp)
        if kind == "v2.1-image":
            path = root / "meta/episodes_stats.jsonl"
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            rows[-1]["stats"]["actions"]["mean"] = rows[-1]["stats"]["actions"]["mean"][:-1]
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            key = "action" if kind == "v3" else "actions"
            name = "q01" if kind == "v3" else "mean"
            _edit_json(root / "meta/stats.json", lambda s: s | {key: s[key] | {name: s[key][name][:-1]}})
        if command == "align":
            return ("align", "--preset", "tiny", "--data", str(root), "--max-steps", "1", "-o", str(tmp / "run"))
        return ("data", "inspect", str(root))
    return setup


def _nan_stats(tmp: Path) -> tuple[str, ...]:
    root = _dataset("v3", tmp)
    key = "observation.state"
    _edit_json(root / "meta/stats.json", lambda s: s | {key: s[key] | {"q99": [float("nan")] * len(s[key]["q99"])}})
    return ("data", "inspect", str(root))


def _nonfinite(value: float, *extra: str) -> Callable[[Path], tuple[str, ...]]:
    def setup(tmp: Path) -> tuple[str, ...]:
        root = _dataset("v3", tmp)
        table = pq.read_table(root / BUNDLED_DATA)
        rows = table.column("action").to_pylist()
        rows[40][1] = value
        column = pa.array(rows, table.schema.field("action").type)
        pq.write_table(table.set_column(table.schema.get_field_index("action"), "action", column), root / BUNDLED_DATA)
        return ("align", "--preset", "tiny", "--data", str(root), "--max-steps", "1", "-o", str(tmp / "run"), *extra)
    return setup


def _episode_lengths(tmp: Path) -> tuple[str, ...]:
    root = _dataset("v2.1-image", tmp)
    path = root / "meta/episodes.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["length"] += 1
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ("data", "inspect", str(root))


def _missing_episode_file(tmp: Path) -> tuple[str, ...]:
    root = _dataset("v2.0-image", tmp)
    (root / _last_episode_file("v2.0-image")).unlink()
    return ("data", "inspect", str(root))


CASES = [
    Case("fps-zero", "has fps 0; it must be a positive number", setup=_info("v3", lambda i: i | {"fps": 0})),
    Case("fps-negative", "has fps -5;", setup=_info("v2.0-image", lambda i: i | {"fps": -5})),
    Case("fps-string", "has fps '10';", setup=_info("v2.1-image", lambda i: i | {"fps": "10"})),
    Case("fps-missing", "has no 'fps'; add the recording's frame rate", setup=_info("v3", _without("fps"))),
    Case("features-missing", "has no 'features' mapping", setup=_info("v2.1-video", _without("features"))),
    Case("features-list", "has no 'features' mapping", setup=_info("v3", lambda i: i | {"features": []})),
    Case("shape-negative", "feature 'actions' in", setup=_feature("v2.0-image", "actions", shape=[-_size("v2.0-image", "actions")])),
    Case("shape-not-list", f"has shape '{_size('v3', 'action')}'; shapes are lists of positive integers",
         setup=_feature("v3", "action", shape=str(_size("v3", "action")))),
    Case("shape-wrong-size", f"holds {_size('v2.1-image', 'actions')} values per frame, but meta/info.json declares shape "
         f"[{_size('v2.1-image', 'actions') - 1}]", setup=_feature("v2.1-image", "actions", shape=[_size("v2.1-image", "actions") - 1])),
    Case("state-wrong-size", "'observation.state' in data file",
         setup=_feature("v3", "observation.state", shape=[_size("v3", "observation.state") + 1])),
    Case("camera-not-hwc", "a camera has shape (height, width, 3)", setup=_feature("v2.0-image", "image", shape=[64, 64])),
    Case("camera-wrong-size", "declares 32x32 for 'wrist_image'", setup=_feature("v2.1-video", "wrist_image", shape=[32, 32, 3])),
    Case("image-wrong-size", "meta/info.json declares 48x48", setup=_feature("v2.0-image", "image", shape=[48, 48, 3])),
    Case("version-unknown", "is LeRobot format v1.6; supported: v2.0, v2.1, v3.0",
         setup=_info("v2.0-image", lambda i: i | {"codebase_version": "v1.6"})),
    Case("no-data-path", "has no 'data_path' template", setup=_info("v2.1-image", _without("data_path"))),
    Case("info-binary", "info.json' is not valid json", setup=_raw("v3", "meta/info.json", b"\x89PNG\r\n\x1a\n\x00\xff")),
    Case("info-not-object", "must hold a JSON object", setup=_raw("v2.0-image", "meta/info.json", b"[1, 2]")),
    Case("tasks-jsonl-broken", "line 2 of", setup=_raw("v2.1-image", "meta/tasks.jsonl", b'{"task_index": 0, "task": "a"}\n{oops\n')),
    Case("stats-wrong-length-v3", f"holds {_size('v3', 'action') - 1} values of 'q01' for 'action', but meta/info.json "
         f"declares {_size('v3', 'action')}", setup=_short_stats("v3")),
    Case("stats-wrong-length-v2.0", f"stats.json' holds {_size('v2.0-image', 'actions') - 1} values of 'mean' for 'actions'",
         setup=_short_stats("v2.0-image")),
    Case("stats-wrong-length-v2.1", f"episodes_stats.jsonl' holds {_size('v2.1-image', 'actions') - 1} values of 'mean'",
         setup=_short_stats("v2.1-image")),
    Case("stats-wrong-length-align", "recompute the stats", setup=_short_stats("v3", "align")),
    Case("stats-nan", "stats.json' holds a non-finite 'q99' for 'observation.state'", setup=_nan_stats),
    Case("episode-lengths", "meta/episodes.jsonl' disagree with the data files (episode 1 in", setup=_episode_lengths),
    Case("episode-file-missing", f"{Path(_last_episode_file('v2.0-image')).name}' is missing", setup=_missing_episode_file),
    Case("action-inf", "file-000.parquet' holds a non-finite 'action'", setup=_nonfinite(float("inf"))),
    Case("action-nan", "or pass --allow-nonfinite", setup=_nonfinite(float("nan"))),
]


@pytest.mark.fixture  # the v2 rows copy the ROCKET_LEROBOT_V2_FIXTURE datasets
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_dataset_is_one_line(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    check(case, tmp_path)
    assert not (tmp_path / "run").exists(), "a refused run left its folder behind"
