"""Our LeRobot v3 reader against datasets written (and read back) by the real LeRobot.

Each subfolder of the fixture holding `expected.safetensors` is a dataset (image mode: PNG in parquet,
video mode: AV1 mp4). Every key, shape, camera, delta and fps comes from the fixture files, so another
fixture set in this format can be checked: `ROCKET_LEROBOT_FIXTURE=<folder> pytest tests -k lerobot`.
Tolerances (fixture README): image mode and all non-image values exact; decoded video frames within
1e-6 of LeRobot's (PyAV/libdav1d, float rounding only) and mean-abs < 0.02 of the pixels written (lossy AV1).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from rocket_core.data import LeRobotReader, Normalizer
from tests.conftest import SHARED_FIXTURES, fixture_dir

FIXTURE = fixture_dir("ROCKET_LEROBOT_FIXTURE", SHARED_FIXTURES / "lerobot-dataset")
MODES = sorted(p.parent.name for p in FIXTURE.glob("*/expected.safetensors"))
pytestmark = pytest.mark.skipif(not MODES, reason=f"no LeRobot fixture at {FIXTURE}")
VIDEO_ATOL = 1e-6
VIDEO_MEANABS_VS_ORIGINAL = 0.02


@pytest.fixture(scope="module", params=MODES)
def case(request: pytest.FixtureRequest) -> dict:
    root = FIXTURE / request.param
    with safe_open(str(root / "expected.safetensors"), "pt") as f:
        meta = f.metadata() or {}
    expected = load_file(str(root / "expected.safetensors"))
    return {"root": root, "reader": LeRobotReader(root), "expected": expected, "meta": meta}


def _is_video(reader: LeRobotReader, key: str) -> bool:
    return reader.features[key]["dtype"] == "video"


def _assert_matches(reader: LeRobotReader, key: str, got: torch.Tensor, exp: torch.Tensor, where: str) -> float:
    """Same dtype and shape; exact, or within VIDEO_ATOL for decoded video frames. Returns the max abs error."""
    assert (got.dtype, got.shape) == (exp.dtype, exp.shape), f"{where} {key}: {got.dtype}{list(got.shape)} != {exp.dtype}{list(exp.shape)}"
    err = (got.double() - exp.double()).abs().max().item() if got.numel() else 0.0
    limit = VIDEO_ATOL if _is_video(reader, key) else 0.0
    assert err <= limit, f"{where} {key}: max abs err {err:.3g} > {limit}"
    return err


def test_metadata_matches(case: dict) -> None:
    reader, meta = case["reader"], case["meta"]
    info = json.loads((case["root"] / "meta" / "info.json").read_text())
    assert len(reader) == info["total_frames"] == len(json.loads(meta["tasks"]))
    lengths = [reader.episode_bounds(e)[1] - reader.episode_bounds(e)[0] for e in range(reader.num_episodes)]
    assert lengths == json.loads(meta["episode_lengths"])
    assert reader.fps == float(meta.get("fps", info["fps"]))
    assert reader.camera_keys == [k for k in json.loads(meta["item_keys"]) if f"original.{k}" in case["expected"]]


def test_every_item_matches_lerobot(case: dict) -> None:
    reader, expected, meta = case["reader"], case["expected"], case["meta"]
    tasks, keys = json.loads(meta["tasks"]), json.loads(meta["item_keys"])
    for index in range(len(reader)):
        item = reader.item(index)
        assert list(item) == keys
        assert item["task"] == tasks[index]
        for key in keys:
            if key != "task":
                _assert_matches(reader, key, item[key], expected[key][index], f"item {index}")


def test_chunks_match_lerobot(case: dict) -> None:
    """Delta-timestamp windows: stacked values, `<key>_is_pad`, and the other keys unchanged."""
    reader, expected, meta = case["reader"], case["expected"], case["meta"]
    deltas = json.loads(meta["delta_timestamps"])
    keys = json.loads(meta["chunk_item_keys"])
    for row, index in enumerate(expected["chunk.indices"].tolist()):
        item = reader.item(index, deltas)
        assert list(item) == keys
        for key in keys:
            if key == "task":
                continue
            exp = expected[f"chunk.{key}"][row] if key in deltas or key.endswith("_is_pad") else expected[key][index]
            _assert_matches(reader, key.removesuffix("_is_pad"), item[key], exp, f"chunk at {index}")


def test_padding_repeats_episode_edge(case: dict) -> None:
    """Padded slots are flagged exactly when outside the episode and hold a copy of its first/last frame."""
    reader, expected, meta = case["reader"], case["expected"], case["meta"]
    deltas = json.loads(meta["delta_timestamps"])
    lengths = json.loads(meta["episode_lengths"])
    padded = 0
    for row, index in enumerate(expected["chunk.indices"].tolist()):
        episode, frame = int(expected["episode_index"][index]), int(expected["frame_index"][index])
        first = index - frame
        item = reader.item(index, deltas)
        for key, seconds in deltas.items():
            offsets = np.round(np.asarray(seconds) * reader.fps).astype(int)
            want_pad = (frame + offsets < 0) | (frame + offsets >= lengths[episode])
            assert expected[f"chunk.{key}_is_pad"][row].tolist() == want_pad.tolist()
            source = first + np.clip(frame + offsets, 0, lengths[episode] - 1)
            for slot, src in enumerate(source):
                _assert_matches(reader, key, item[key][slot], expected[key][src], f"chunk at {index} slot {slot}")
            padded += int(want_pad.sum())
    assert padded > 0, "the fixture's chunks include no padded slot"


def test_frames_vs_written_pixels(case: dict) -> None:
    """Image mode returns exactly the pixels written; lossy video stays close on average."""
    reader, expected = case["reader"], case["expected"]
    rows = np.arange(len(reader))
    for key in reader.camera_keys:
        original = expected[f"original.{key}"].numpy()
        frames = reader.frames(key, rows)
        if _is_video(reader, key):
            assert np.abs(frames / 255 - original / 255).mean() < VIDEO_MEANABS_VS_ORIGINAL
        else:
            np.testing.assert_array_equal(frames, original)


def test_quantile_normalisation_uses_stats_json(case: dict) -> None:
    """q01 -> -1 and q99 -> +1 per dimension (a constant one -> -1), from the dataset's own meta/stats.json."""
    reader = case["reader"]
    stats = json.loads((case["root"] / "meta" / "stats.json").read_text())
    vectors = [k for k, f in reader.features.items() if f["dtype"].startswith("float") and k != "timestamp"]
    assert vectors
    for key in vectors:
        norm = Normalizer.from_stats(reader.stats, key, "quantile")
        q01, q99 = torch.tensor(stats[key]["q01"]), torch.tensor(stats[key]["q99"])
        spread = q99 > q01
        torch.testing.assert_close(norm.normalize(q01), -torch.ones_like(q01), atol=1e-6, rtol=0)
        torch.testing.assert_close(norm.normalize(q99), torch.where(spread, 1.0, -1.0), atol=1e-6, rtol=0)
