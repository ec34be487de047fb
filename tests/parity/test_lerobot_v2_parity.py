"""Our reader on LeRobot v2.0 / v2.1 datasets against what the real LeRobot returned for them.

`ROCKET_LEROBOT_V2_FIXTURE` names the PARENT folder (default ../shared/fixtures/lerobot-v2); every subfolder
holding `dataset/` and `expected.safetensors` is a variant (v2.0-image, v2.1-image, v2.1-video, ...) and runs.
Keys, shapes, fps, versions and deltas come from the fixture files. Tolerances (fixture README): image mode
and every non-camera value exact; video frames within 4/255 of LeRobot's (a different YUV->RGB conversion
may move a few levels; measured 0 with PyAV/libdav1d).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from rocket_core.data import LeRobotReader
from tests.conftest import SHARED_FIXTURES, fixture_dir, needs_fixture

PARENT = fixture_dir("ROCKET_LEROBOT_V2_FIXTURE", SHARED_FIXTURES / "lerobot-v2")
VARIANTS = sorted(p.parent.name for p in PARENT.glob("*/expected.safetensors") if (p.parent / "dataset").is_dir())
pytestmark = needs_fixture(PARENT, "ROCKET_LEROBOT_V2_FIXTURE", present=bool(VARIANTS))
VIDEO_ATOL = 4 / 255 + 1e-6
DTYPES = {"float32": torch.float32, "int64": torch.int64, "bool": torch.bool}


@pytest.fixture(scope="module", params=VARIANTS)
def case(request: pytest.FixtureRequest) -> dict:
    root = PARENT / request.param
    with safe_open(str(root / "expected_chunks.safetensors"), "pt") as f:
        chunk_meta = f.metadata() or {}
    return {
        "root": root,
        "reader": LeRobotReader(root / "dataset"),
        "info": json.loads((root / "dataset" / "meta" / "info.json").read_text()),
        "expected": load_file(str(root / "expected.safetensors")),
        "chunks": load_file(str(root / "expected_chunks.safetensors")),
        "json": json.loads((root / "expected.json").read_text()),
        "deltas": {k.removeprefix("delta_timestamps_"): json.loads(v)
                   for k, v in chunk_meta.items() if k.startswith("delta_timestamps_")},
    }


def _expected(case: dict, key: str, index: int, reader: LeRobotReader) -> torch.Tensor:
    """LeRobot's value; cameras are stored as uint8 k and LeRobot returned float32(k) / 255 bit for bit."""
    value = case["expected"][f"{key}/{index:04d}"]
    return value.float() / 255 if key in reader.camera_keys else value


def _assert_close(reader: LeRobotReader, key: str, got: torch.Tensor, exp: torch.Tensor, where: str) -> None:
    assert (got.dtype, tuple(got.shape)) == (exp.dtype, tuple(exp.shape)), \
        f"{where} {key}: {got.dtype}{list(got.shape)} != {exp.dtype}{list(exp.shape)}"
    limit = VIDEO_ATOL if reader.features.get(key, {}).get("dtype") == "video" else 0.0
    err = (got.double() - exp.double()).abs().max().item() if got.numel() else 0.0
    assert err <= limit, f"{where} {key}: max abs err {err:.3g} > {limit:.3g}"


def test_metadata_matches(case: dict) -> None:
    reader, info, meta = case["reader"], case["info"], case["json"]
    assert reader.version == info["codebase_version"] == meta["written_by"]["codebase_version"]
    assert reader.fps == float(info["fps"]) == float(meta["fps"])
    assert len(reader) == info["total_frames"] == meta["num_frames"]
    assert reader.num_episodes == info["total_episodes"] == len(meta["episode_lengths"])
    lengths = [reader.episode_bounds(e)[1] - reader.episode_bounds(e)[0] for e in range(reader.num_episodes)]
    assert lengths == meta["episode_lengths"]
    assert [reader.episode_task(e) for e in range(reader.num_episodes)] == meta["episode_tasks"]
    assert reader.camera_keys == [k for k, f in info["features"].items() if f["dtype"] in ("image", "video")]
    for key in reader.camera_keys:
        assert reader.frame_shape(key) == tuple(meta["image_shape_hwc"])


def test_every_item_matches_lerobot(case: dict) -> None:
    reader, meta = case["reader"], case["json"]
    returned = meta["returned_keys"]
    for index, row in enumerate(meta["items"]):
        item = reader.item(index)
        assert list(item) == list(returned), f"item {index}: keys {list(item)}"
        assert item["task"] == row["task"]
        for key, spec in returned.items():
            if key == "task":
                continue
            got = item[key]
            assert (got.dtype, list(got.shape)) == (DTYPES[spec["dtype"]], spec["shape"]), f"item {index} {key}"
            _assert_close(reader, key, got, _expected(case, key, index, reader), f"item {index}")
            if key in row:
                assert got.item() == pytest.approx(row[key], abs=0)


def test_chunks_match_lerobot(case: dict) -> None:
    """Delta windows as LeRobot returns them: values and `<key>_is_pad`, at every index."""
    reader, chunks, deltas = case["reader"], case["chunks"], case["deltas"]
    assert deltas, "expected_chunks.safetensors names no delta_timestamps_* in its metadata"
    indices = sorted({int(name.rsplit("/", 1)[1]) for name in chunks})
    assert indices == list(range(len(reader)))
    for index in indices:
        item = reader.item(index, deltas)
        for key in deltas:
            _assert_close(reader, key, item[key], chunks[f"{key}/{index:04d}"], f"chunk at {index}")
            assert torch.equal(item[f"{key}_is_pad"], chunks[f"{key}_is_pad/{index:04d}"]), f"chunk at {index}"


def test_padding_repeats_the_episode_end(case: dict) -> None:
    """Offset k at row i reads min(i + k, end - 1), flagged when i + k >= end: the episode's last action,
    never zeros and never the next episode (README, "Chunk padding")."""
    reader, chunks, deltas, meta = case["reader"], case["chunks"], case["deltas"], case["json"]
    padded = 0
    for key, seconds in deltas.items():
        offsets = np.round(np.asarray(seconds) * reader.fps).astype(int)
        values = reader.column(key)
        for index, row in enumerate(meta["items"]):
            start = index - row["frame_index"]
            end = start + meta["episode_lengths"][row["episode_index"]]
            want_pad = index + offsets >= end
            assert chunks[f"{key}_is_pad/{index:04d}"].tolist() == want_pad.tolist()
            source = np.minimum(index + offsets, end - 1)
            np.testing.assert_array_equal(chunks[f"{key}/{index:04d}"].numpy(), values[source])
            padded += int(want_pad.sum())
    assert padded > 0, "the fixture's chunks include no padded slot"


def test_shipped_stats_describe_the_data(case: dict) -> None:
    """v2.0's stats.json and v2.1's aggregated episodes_stats.jsonl give the data's own min/max/mean/std."""
    reader = case["reader"]
    assert reader.stats, "the variant ships no statistics"
    for key, feature in reader.features.items():
        if key in reader.camera_keys or not feature["dtype"].startswith("float"):
            continue
        values = reader.column(key).astype(np.float64).reshape(len(reader), -1)
        for name, want in (("min", values.min(0)), ("max", values.max(0)), ("mean", values.mean(0)), ("std", values.std(0))):
            np.testing.assert_allclose(reader.stats[key][name].reshape(-1), want, atol=1e-6, err_msg=f"{key} {name}")
