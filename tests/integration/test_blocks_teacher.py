"""scripts/train_blocks_teacher.py end to end, and the shipped `blocks` VGGT teacher against the random tiny one."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from rocket_core.specs import TeacherSpec
from rocket_plugins.teachers.vggt import VGGTTeacher

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "plugins" / "teachers" / "vggt" / "blocks"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_blocks_teacher", ROOT / "scripts" / "train_blocks_teacher.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_short_run_writes_a_folder_the_teacher_plugin_loads(tmp_path: Path) -> None:
    _script().main(["--out", str(tmp_path), "--steps", "2", "--batch", "2", "--held-out", "2", "--seed", "3"])
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["steps"] == 2 and record["seed"] == 3 and np.isfinite(record["final_loss"])
    assert set(record["held_out"]) == {"samples", "random_tiny", "constant_per_camera", "trained"}
    spec = TeacherSpec(name="vggt", preset="tiny", checkpoint=str(tmp_path))
    images = torch.rand(1, 2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    feats = VGGTTeacher.build(spec).extract(images, [0, -1])
    random = VGGTTeacher.build(TeacherSpec(name="vggt", preset="tiny")).extract(images, [-1])
    assert feats[-1].shape == (1, 2, 64, 128) and all(torch.isfinite(f).all() for f in feats.values())
    assert not torch.equal(feats[-1], random[-1])  # the trained weights were loaded, not the seeded init
    depth = VGGTTeacher.build(spec, heads=True).predict(images)["depth"]
    assert depth.shape == (1, 2, 112, 112, 1) and bool((depth > 0).all())
