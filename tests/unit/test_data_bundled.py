"""The bundled synthetic dataset: a well-formed LeRobot v3 dataset, small, with learnable, consistent labels."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rocket_core.data import DataSpec, LeRobotReader, VLADataset, bundled_dataset_path

BUDGET_BYTES = 5 * 1024 * 1024
ROOT = bundled_dataset_path()


@pytest.fixture(scope="module")
def reader() -> LeRobotReader:
    return LeRobotReader(ROOT)


def test_within_size_budget() -> None:
    size = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert 0 < size < BUDGET_BYTES


def test_layout_matches_what_lerobot_writes(reader: LeRobotReader) -> None:
    info = json.loads((ROOT / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["video_path"] is None
    assert len(reader) == info["total_frames"] and reader.num_episodes == info["total_episodes"] >= 2
    assert len(reader.tasks) == info["total_tasks"]
    assert [info["features"][k]["dtype"] for k in reader.camera_keys] == ["image", "image"]
    data = pq.read_table(next(ROOT.glob("data/chunk-*/file-*.parquet")))
    assert b"huggingface" in data.schema.metadata
    assert data.column(reader.camera_keys[0])[0]["bytes"].as_py().startswith(b"\x89PNG")
    assert json.loads(pq.read_schema(ROOT / "meta/tasks.parquet").metadata[b"pandas"])["index_columns"] == ["task"]
    episodes = pq.read_table(next(ROOT.glob("meta/episodes/chunk-*/file-*.parquet"))).to_pylist()
    frames = reader.column("frame_index")
    for e, row in enumerate(episodes):
        lo, hi = reader.episode_bounds(e)
        assert (row["dataset_from_index"], row["dataset_to_index"], row["length"]) == (lo, hi, hi - lo)
        assert frames[lo:hi].tolist() == list(range(hi - lo))
        assert row["tasks"] == [reader.task(lo)]
        np.testing.assert_allclose(row["stats/action/mean"], reader.column("action")[lo:hi].mean(0), atol=1e-6)


def test_stats_json_describes_the_data(reader: LeRobotReader) -> None:
    for key in ("observation.state", "action"):
        values = reader.column(key).astype(np.float64)
        stats = reader.stats[key]
        np.testing.assert_allclose(stats["mean"], values.mean(0), atol=1e-6)
        np.testing.assert_allclose(stats["q01"], np.quantile(values, 0.01, axis=0), atol=1e-6)
        np.testing.assert_allclose(stats["q99"], np.quantile(values, 0.99, axis=0), atol=1e-6)
        assert stats["count"].tolist() == [len(reader)]
    image = reader.camera_keys[0]
    pixels = reader.frames(image, np.arange(0, len(reader), 97)) / 255
    assert reader.stats[image]["mean"].shape == (3, 1, 1)
    np.testing.assert_allclose(reader.stats[image]["mean"].ravel(), pixels.reshape(-1, 3).mean(0), atol=0.02)


def test_actions_are_the_motion_between_frames(reader: LeRobotReader) -> None:
    """Translation actions are the next frame's end-effector displacement, one common scale for all frames;
    the gripper command (+1 close, -1 open) drives the fingers."""
    state, action = reader.column("observation.state"), reader.column("action")
    moves, commands = [], []
    for e in range(reader.num_episodes):
        lo, hi = reader.episode_bounds(e)
        moves.append(np.diff(state[lo:hi, :3], axis=0))
        commands.append(action[lo : hi - 1])
        assert np.abs(action[hi - 1, :3]).max() == 0  # the last frame holds still
    move, command = np.concatenate(moves), np.concatenate(commands)
    scale = (move * command[:, :3]).sum() / (command[:, :3] ** 2).sum()
    np.testing.assert_allclose(move, scale * command[:, :3], atol=1e-6)
    assert 0.01 < scale and np.abs(command[:, :3]).max() <= 1.0 + 1e-6
    finger_change = np.concatenate([np.diff(state[slice(*reader.episode_bounds(e)), 6]) for e in range(reader.num_episodes)])
    assert (finger_change[command[:, -1] > 0] <= 0).all() and (finger_change[command[:, -1] < 0] >= 0).all()
    assert set(np.unique(command[:, -1]).tolist()) == {-1.0, 1.0}


def test_default_spec_reads_the_bundled_dataset() -> None:
    dataset = VLADataset(DataSpec(), seed=0)
    assert dataset.reader.root == ROOT.resolve() and len(dataset) > 0
    assert dataset.slots == ["image", "wrist_image"]


def test_computed_statistics_equal_the_shipped_ones(tmp_path: Path) -> None:
    """Without meta/stats.json the pipeline computes what LeRobot shipped (q01/q99, mean, std, min, max)."""
    shipped = VLADataset(DataSpec(), seed=0, progress=False)
    assert shipped.stats_source == "dataset"
    copy = Path(shutil.copytree(ROOT, tmp_path / "ds"))
    (copy / "meta/stats.json").unlink()
    computed = VLADataset(DataSpec(dataset=str(copy)), seed=0, progress=False)
    assert computed.stats_source.startswith(f"computed {copy / '.rocket'}")
    for key in ("observation.state", "action"):
        for name in ("q01", "q99", "mean", "std", "min", "max"):
            np.testing.assert_allclose(computed.group_stats["all"][key][name], shipped.group_stats["all"][key][name],
                                       atol=1e-6, err_msg=f"{key} {name}")
