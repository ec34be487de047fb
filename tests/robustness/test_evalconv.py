"""Hostile inputs of OFT-format folders, conventions files and `rocket export`: one error line, exit 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.robustness.harness import Case, check


def _oft_folder(stats: str, conventions: dict | None = None):
    def setup(tmp: Path) -> tuple[str, ...]:
        folder = tmp / "oft"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "action_head--1_checkpoint.pt").write_bytes(b"")
        (folder / "dataset_statistics.json").write_text(stats)
        if conventions is not None:
            (folder / "conventions.json").write_text(json.dumps(conventions))
        return ("serve", "--checkpoint", str(folder), "--port", "0")
    return setup


GOOD_STATS = json.dumps({"libero_spatial_no_noops": {"action": {"q01": [0.0] * 7, "q99": [1.0] * 7}}})
CASES = [
    Case("stats-not-json", "dataset_statistics.json' is unreadable", setup=_oft_folder("{not json")),
    Case("stats-without-bounds", "no dataset with action q01/q99", setup=_oft_folder(json.dumps({"x": {"action": {}}}))),
    Case("stats-length-mismatch", "lengths differ", setup=_oft_folder(json.dumps(
        {"s": {"action": {"q01": [0.0] * 7, "q99": [1.0] * 6}}}))),
    Case("conventions-bad-gripper", "gripper.kind", setup=_oft_folder(GOOD_STATS, {"source": "x", "gripper": {"kind": "banana"}})),
    Case("conventions-from-the-future", "newer than this rocket", setup=_oft_folder(GOOD_STATS, {"source": "x", "version": 99})),
    Case("export-no-merge", "drop --no-merge-lora", args=("export", "--checkpoint", "nowhere", "-o", "out", "--no-merge-lora")),
    Case("export-no-checkpoint", "'nowhere' does not exist", args=("export", "--checkpoint", "nowhere", "-o", "out")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
