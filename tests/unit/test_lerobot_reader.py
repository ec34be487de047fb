"""The LeRobot reader on the bundled dataset: delta windows (negative deltas, state deltas), bad input, fingerprint."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rocket_core.data import (
    DataSpec,
    LeRobotReader,
    VLADataset,
    bundled_dataset_path,
    dataset_fingerprint,
    delta_offsets,
)
from rocket_core.errors import RocketError
from tests.conftest import SHARED_FIXTURES, fixture_dir, missing_fixture_reason

DATA_FILE = Path("data/chunk-000/file-000.parquet")


@pytest.fixture(scope="module")
def reader() -> LeRobotReader:
    return LeRobotReader(bundled_dataset_path())


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled dataset."""
    return Path(shutil.copytree(bundled_dataset_path(), tmp_path / "ds"))


def test_delta_window_pads_with_episode_edges(reader: LeRobotReader) -> None:
    """Negative and positive deltas on action and state: clamped to the episode, flagged, never crossing episodes."""
    lo, hi = reader.episode_bounds(1)
    period = 1 / reader.fps
    deltas = {"action": [-3 * period, -period, 0.0, period], "observation.state": [-period, 0.0, 2 * period]}
    action, state = reader.column("action"), reader.column("observation.state")

    first = reader.item(lo + 1, deltas)
    assert first["action_is_pad"].tolist() == [True, False, False, False]
    torch.testing.assert_close(first["action"], torch.from_numpy(action[[lo, lo, lo + 1, lo + 2]]), atol=0, rtol=0)
    assert first["observation.state_is_pad"].tolist() == [False, False, False]

    last = reader.item(hi - 1, deltas)
    assert last["action_is_pad"].tolist() == [False, False, False, True]
    assert last["observation.state_is_pad"].tolist() == [False, False, True]
    torch.testing.assert_close(last["observation.state"], torch.from_numpy(state[[hi - 2, hi - 1, hi - 1]]), atol=0, rtol=0)
    assert not np.array_equal(state[hi - 1], state[hi])  # the neighbouring episode differs, so the copy is the edge


def test_camera_delta_stacks_frames(reader: LeRobotReader) -> None:
    key = reader.camera_keys[0]
    lo, _ = reader.episode_bounds(0)
    item = reader.item(lo, {key: [-1 / reader.fps, 0.0]})
    height, width, _ = reader.frame_shape(key)
    assert item[key].shape == (2, 3, height, width)
    assert item[f"{key}_is_pad"].tolist() == [True, False]
    assert torch.equal(item[key][0], item[key][1])


def test_delta_off_the_frame_grid_is_refused() -> None:
    assert delta_offsets([-0.2, 0.0, 0.1], fps=10).tolist() == [-2, 0, 1]
    with pytest.raises(RocketError, match="not a multiple of 1/fps"):
        delta_offsets([0.05], fps=10)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nonexistent/rocket-dataset", "does not exist"),
        ("someone/rocket-dataset-not-in-cache", "offline"),
    ],
)
def test_bad_sources(source: str, message: str) -> None:
    with pytest.raises(RocketError, match=message):
        LeRobotReader(source)


def test_folder_without_metadata(tmp_path: Path) -> None:
    with pytest.raises(RocketError, match="no meta/info.json"):
        LeRobotReader(tmp_path)


def test_old_format_is_refused(copy: Path) -> None:
    info = json.loads((copy / "meta/info.json").read_text())
    (copy / "meta/info.json").write_text(json.dumps(info | {"codebase_version": "v1.6"}))
    with pytest.raises(RocketError, match="v1.6; supported: v2.0, v2.1, v3.0; convert"):
        LeRobotReader(copy)


def test_broken_json_and_missing_tasks(copy: Path) -> None:
    (copy / "meta/tasks.parquet").unlink()
    with pytest.raises(RocketError, match="tasks.parquet' is missing"):
        LeRobotReader(copy)
    (copy / "meta/info.json").write_text("{")
    with pytest.raises(RocketError, match="not valid JSON"):
        LeRobotReader(copy)


def test_truncated_parquet(copy: Path) -> None:
    data = (copy / DATA_FILE).read_bytes()
    (copy / DATA_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(RocketError, match="cannot read the dataset's parquet"):
        LeRobotReader(copy)


def test_corrupt_image_names_the_frame(copy: Path) -> None:
    table = pq.read_table(copy / DATA_FILE)
    key = "observation.images.image"
    cells = table.column(key).to_pylist()
    cells[3] = {"bytes": b"not a png", "path": cells[3]["path"]}
    table = table.set_column(table.schema.get_field_index(key), key, pa.array(cells, table.schema.field(key).type))
    pq.write_table(table, copy / DATA_FILE)
    reader = LeRobotReader(copy)
    reader.item(2)
    with pytest.raises(RocketError, match="frame 3 .* is corrupt"):
        reader.item(3)


@pytest.mark.fixture
def test_missing_video_file(tmp_path: Path) -> None:
    fixture = fixture_dir("ROCKET_LEROBOT_FIXTURE", SHARED_FIXTURES / "lerobot-dataset") / "video_mode"
    if not fixture.is_dir():
        pytest.skip(missing_fixture_reason(fixture, "ROCKET_LEROBOT_FIXTURE"))
    root = Path(shutil.copytree(fixture, tmp_path / "video"))
    reader = LeRobotReader(root)
    next(p for p in (root / "videos").rglob("*.mp4")).unlink()
    with pytest.raises(RocketError, match="is missing"):
        reader.item(0)


def test_unknown_camera_lists_the_available_ones(reader: LeRobotReader) -> None:
    with pytest.raises(RocketError, match="camera 'top'.*available cameras: observation.images.image"):
        VLADataset(DataSpec(cameras={"0": "top"}), seed=0, reader=reader)


def test_fingerprint_tracks_content_not_location(copy: Path, tmp_path: Path) -> None:
    original = dataset_fingerprint(bundled_dataset_path())
    assert len(original) == 32
    assert dataset_fingerprint(copy) == original
    info = json.loads((copy / "meta/info.json").read_text())
    (copy / "meta/info.json").write_text(json.dumps(info | {"robot_type": "other"}))
    changed_meta = dataset_fingerprint(copy)
    assert changed_meta != original
    with (copy / DATA_FILE).open("ab") as f:
        f.write(b"\0")
    assert dataset_fingerprint(copy) not in (original, changed_meta)
