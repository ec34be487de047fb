"""Checkpoint writing without a model: atomic `latest`, immutable latest step, resume rules, manifest."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rocket_core.train.checkpoint as ck
from rocket_core.errors import RocketError
from rocket_core.specs import RunSpec

PLUGINS = {"vla": {"name": "openvla"}, "teacher": {"name": "vggt"}, "projector": {"name": "rocket"}}


def _data(step: int, **spec: object) -> ck.CheckpointData:
    w = torch.full((4, 3), float(step))
    return ck.CheckpointData(
        step=step, samples_seen=2 * step, trainable={"vla.w": w}, projector=None, ema=None,
        optimizer={"state": {0: {"exp_avg": torch.zeros(4, 3)}}, "param_groups": []}, scheduler={},
        rng={"cpu": torch.get_rng_state()}, spec=RunSpec.model_validate({**PLUGINS, **spec}), extra={"world_size": 1},
        files={"conventions.json": '{"frame": "base"}'},
    )


def test_save_then_load_round_trip_with_a_manifest_of_every_file(tmp_path: Path) -> None:
    path = ck.save_checkpoint(tmp_path, _data(3))
    assert ck.latest_name(tmp_path) == "step-000003"
    doc = json.loads((path / "manifest.json").read_text())
    assert set(doc["files"]) == {p.name for p in path.iterdir()} - {"manifest.json"}
    assert "conventions.json" in doc["files"] and doc["step"] == 3
    assert doc["files"]["optimizer.pt"]["tensors"]["optimizer.state.0.exp_avg"] == {"shape": [4, 3], "dtype": "float32"}
    loaded = ck.load_checkpoint(tmp_path)
    assert loaded.step == 3 and torch.equal(loaded.trainable["vla.w"], torch.full((4, 3), 3.0))
    assert loaded.files == {"conventions.json": '{"frame": "base"}'} and loaded.path == path


def test_a_failing_save_leaves_the_previous_latest_and_no_temp(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ck.save_checkpoint(tmp_path, _data(1))

    def dies(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ck, "write_manifest", dies)
    with pytest.raises(OSError):
        ck.save_checkpoint(tmp_path, _data(2))
    assert ck.latest_name(tmp_path) == "step-000001" and ck.load_checkpoint(tmp_path).step == 1
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-000001"]


def test_the_latest_checkpoint_is_never_rewritten_and_orphans_are_replaced(tmp_path: Path) -> None:
    first = ck.save_checkpoint(tmp_path, _data(2))
    before = (first / "trainable.safetensors").read_bytes()
    data = _data(2)
    data.trainable = {"vla.w": torch.zeros(4, 3)}
    assert ck.save_checkpoint(tmp_path, data) == first and (first / "trainable.safetensors").read_bytes() == before
    orphan = tmp_path / "checkpoints" / "step-000005"  # renamed into place, killed before `latest` moved
    orphan.mkdir()
    (orphan / "junk").write_text("x")
    (tmp_path / "checkpoints" / ".tmp-step-000004-99").mkdir()
    assert [p.name for p in ck.clean_stale(tmp_path)] == [".tmp-step-000004-99"]
    ck.save_checkpoint(tmp_path, _data(5))
    assert not (orphan / "junk").exists() and ck.load_checkpoint(tmp_path).step == 5


def test_resume_rules() -> None:
    saved = _data(4, training={"max_steps": 4})
    ck.check_resume(saved, RunSpec.model_validate({**PLUGINS, "training": {"max_steps": 9, "save_every": 2, "log_every": 3}}), 1)
    with pytest.raises(RocketError, match=r"training.lora.rank: 32 -> 8"):
        ck.check_resume(saved, RunSpec.model_validate({**PLUGINS, "training": {"max_steps": 9, "lora": {"rank": 8}}}), 1)
    with pytest.raises(RocketError, match=r"data.dataset: None -> 'x'"):
        ck.check_resume(saved, RunSpec.model_validate({**PLUGINS, "data": {"dataset": "x"}, "training": {"max_steps": 9}}), 1)
    with pytest.raises(RocketError, match="below the checkpoint's step 4"):
        ck.check_resume(saved, RunSpec.model_validate({**PLUGINS, "training": {"max_steps": 3}}), 1)
    with pytest.raises(RocketError, match="resume with --num-processes 1"):
        ck.check_resume(saved, RunSpec.model_validate({**PLUGINS, "training": {"max_steps": 9}}), 2)


def test_extra_files_may_not_replace_checkpoint_files(tmp_path: Path) -> None:
    data = _data(1)
    data.files = {"state.json": "{}"}
    with pytest.raises(RocketError, match="would replace a checkpoint file"):
        ck.save_checkpoint(tmp_path, data)
    assert ck.latest_name(tmp_path) is None and not list((tmp_path / "checkpoints").iterdir())
