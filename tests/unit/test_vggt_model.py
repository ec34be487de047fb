"""VGGT structure and loading: key-for-key with VGGT-1B, strict checkpoint loading, frozen early-exit extraction."""
from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from rocket_core.errors import RocketError
from rocket_core.specs import TeacherSpec
from rocket_plugins.teachers.vggt import VGGTTeacher
from rocket_plugins.teachers.vggt.config import TINY, VGGT_1B, config_from_reference
from rocket_plugins.teachers.vggt.model import VGGT
from rocket_plugins.teachers.vggt.teacher import load_checkpoint
from tests.conftest import SHARED_FIXTURES, fixture_dir

MANIFEST = SHARED_FIXTURES / "vggt" / "manifest-vggt-1b.json"  # always the shared one, whatever the tiny fixture
FIXTURE = fixture_dir("ROCKET_VGGT_FIXTURE", SHARED_FIXTURES / "vggt" / "tiny")
needs_fixture = pytest.mark.skipif(not (FIXTURE / "model.safetensors").is_file(), reason=f"no VGGT fixture at {FIXTURE}")


def _meta_state(heads: bool) -> list[tuple[str, tuple[int, ...]]]:
    with torch.device("meta"):
        model = VGGT(VGGT_1B, heads=heads)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.skipif(not MANIFEST.is_file(), reason=f"no VGGT-1B manifest at {MANIFEST}")
def test_vggt_1b_state_dict_matches_manifest_key_for_key() -> None:
    manifest = json.loads(MANIFEST.read_text())
    keys, numel = manifest["num_keys_by_group"], manifest["numel_by_top_level_prefix"]
    expected = [(e["name"], tuple(e["shape"])) for e in manifest["state_dict"] if not e["name"].startswith("track_head.")]
    got = _meta_state(heads=True)
    assert len(expected) == manifest["num_state_dict_entries"] - keys["track_head"]
    assert got == expected  # names, shapes and module order
    n_params = sum(torch.Size(shape).numel() for _, shape in got)
    assert n_params == manifest["total_parameters"] - numel["track_head"]
    aggregator = [e for e in expected if e[0].startswith("aggregator.")]
    assert _meta_state(heads=False) == aggregator
    assert len(aggregator) == sum(n for group, n in keys.items() if group.startswith("aggregator."))


def test_vggt_info_needs_no_weights() -> None:
    info = VGGTTeacher.info(TeacherSpec(name="vggt"))
    assert (info.num_layers, info.feature_dim, info.patch_grid, info.image_size) == (24, 2048, (37, 37), (518, 518))
    tiny = VGGTTeacher.info(TeacherSpec(name="vggt", preset="tiny"))
    assert (tiny.num_layers, tiny.feature_dim) == (TINY.depth, 2 * TINY.embed_dim)
    assert tiny.patch_grid == (TINY.img_size // 14,) * 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TeacherSpec(name="vggt", preset="huge"), "unknown VGGT preset 'huge'"),
        (TeacherSpec(name="vggt", preset="tiny", options={"resolution": 5}), "unknown option(s) resolution"),
        (TeacherSpec(name="vggt", preset="tiny", options={"resize": "stretch"}), "resize='stretch' is invalid"),
        (TeacherSpec(name="vggt", checkpoint="./no/such/folder"), "checkpoint path './no/such/folder' does not exist"),
    ],
)
def test_vggt_bad_spec_is_one_clear_error(spec: TeacherSpec, message: str) -> None:
    with pytest.raises(RocketError, match=message.replace("(", r"\(").replace(")", r"\)")):
        VGGTTeacher.build(spec)


def test_vggt_default_checkpoint_offline_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(RocketError, match=r"facebook/VGGT-1B.*not in the local Hugging Face cache.*`rocket pull vggt`"):
        VGGTTeacher.build(TeacherSpec(name="vggt"))


@needs_fixture
def test_vggt_feature_only_load_ignores_heads_but_not_aggregator_keys() -> None:
    config = config_from_reference(json.loads((FIXTURE / "config.json").read_text()))
    full = load_file(str(FIXTURE / "model.safetensors"))
    features_only = VGGT(config, heads=False)
    load_checkpoint(features_only, full, "full")  # head keys are ignored
    assert torch.equal(features_only.aggregator.camera_token, full["aggregator.camera_token"])
    assert features_only.camera_head is None and not any(k.startswith("depth_head.") for k in features_only.state_dict())

    removed = f"aggregator.frame_blocks.{config.depth - 1}.attn.qkv.weight"
    with pytest.raises(RocketError, match=rf"missing 1 key\(s\): {re.escape(removed)}"):
        load_checkpoint(VGGT(config, heads=False), {k: v for k, v in full.items() if k != removed}, "cut")

    bad = dict(full, **{"aggregator.register_token": full["aggregator.register_token"][:, :1]})
    with pytest.raises(RocketError, match=r"wrong shape.*aggregator\.register_token"):
        load_checkpoint(VGGT(config, heads=False), bad, "bad")

    # A heads model ignores exactly the track head (not in this implementation) and nothing else.
    with_track = dict(full, **{"track_head.fnet.norm.weight": torch.ones(3)})
    load_checkpoint(VGGT(config, heads=True), with_track, "with track head")
    with pytest.raises(RocketError, match=r"1 unknown key\(s\): encoder\.extra"):
        load_checkpoint(VGGT(config, heads=True), dict(full, **{"encoder.extra": torch.ones(1)}), "foreign")
    with pytest.raises(RocketError, match=r"missing \d+ key\(s\): camera_head\."):
        load_checkpoint(VGGT(config, heads=True), {k: v for k, v in full.items() if k.startswith("aggregator.")}, "features only")


@needs_fixture
def test_vggt_full_checkpoint_missing_aggregator_key_fails_through_the_adapter(tmp_path) -> None:
    state = load_file(str(FIXTURE / "model.safetensors"))
    removed = "aggregator.global_blocks.0.ls2.gamma"
    del state[removed]
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((FIXTURE / "config.json").read_text())
    with pytest.raises(RocketError, match=rf"missing 1 key\(s\): {re.escape(removed)}"):
        VGGTTeacher.build(TeacherSpec(name="vggt", checkpoint=str(tmp_path)))


@needs_fixture
def test_vggt_loads_pt_file_with_weights_only(tmp_path) -> None:
    state = load_file(str(FIXTURE / "model.safetensors"))
    torch.save(state, tmp_path / "vggt.pt")
    (tmp_path / "config.json").write_text((FIXTURE / "config.json").read_text())
    teacher = VGGTTeacher.build(TeacherSpec(name="vggt", checkpoint=str(tmp_path / "vggt.pt")))
    assert torch.equal(teacher.model.aggregator.camera_token, state["aggregator.camera_token"])


def test_vggt_extract_is_frozen_early_exit_and_selective() -> None:
    teacher = VGGTTeacher.build(TeacherSpec(name="vggt", preset="tiny"))
    teacher.train()  # a trainer switching modes must not unfreeze the teacher
    assert not teacher.training and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())

    calls: list[int] = []
    for i, block in enumerate(teacher.model.aggregator.global_blocks):
        block.register_forward_hook(lambda *_a, i=i: calls.append(i))
    images = torch.rand(2, 3, 3, 90, 120, requires_grad=True)  # any size: the teacher resizes
    out = teacher.extract(images, [1])
    assert calls == [0, 1]  # stops after the deepest requested layer
    info = teacher.info
    grid = info.image_size[1] // 14
    rows = round(90 * info.image_size[1] / 120 / 14)  # crop mode keeps a wide image wide
    assert list(out) == [1] and out[1].shape == (2, 3, rows * grid, info.feature_dim)
    assert out[1].grad_fn is None

    calls.clear()
    everything = teacher.extract(images, [0, 1, -1])
    assert calls == list(range(info.num_layers))
    assert list(everything) == [0, 1, -1]
    torch.testing.assert_close(everything[1], out[1], rtol=0, atol=0)
    assert not torch.equal(everything[0], everything[-1])
    with pytest.raises(RocketError, match=r"layer\(s\) \[4\] out of range"):
        teacher.extract(images, [4])


def test_vggt_tiny_preset_is_reproducible_and_pad_mode_is_square() -> None:
    a = VGGTTeacher.build(TeacherSpec(name="vggt", preset="tiny"))
    b = VGGTTeacher.build(TeacherSpec(name="vggt", preset="tiny", options={"resize": "pad"}))
    assert torch.equal(a.model.aggregator.camera_token, b.model.aggregator.camera_token)
    images = torch.rand(1, 2, 3, 90, 120)
    side = a.info.patch_grid[0]
    assert b.extract(images, [-1])[-1].shape[2] == side * side
