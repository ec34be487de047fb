"""VGGT parity against a reference fixture (config.json, model.safetensors, inputs, expected outputs).

Every size comes from the fixture's config.json and tensors, so any tiny VGGT in this format can be
checked: `ROCKET_VGGT_FIXTURE=<folder> pytest tests -k vggt`. Tolerances are the fixture README's
strict tier (same fp32 math on CPU).
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from rocket_core.specs import TeacherSpec
from rocket_core.vision import normalize
from rocket_plugins.teachers.vggt import VGGTTeacher
from rocket_plugins.teachers.vggt.config import config_from_reference
from rocket_plugins.teachers.vggt.model import VGGT, patch_positions
from rocket_plugins.teachers.vggt.teacher import load_checkpoint
from tests.conftest import SHARED_FIXTURES, fixture_dir

FIXTURE = fixture_dir("ROCKET_VGGT_FIXTURE", SHARED_FIXTURES / "vggt" / "tiny")
pytestmark = pytest.mark.skipif(not (FIXTURE / "expected.safetensors").is_file(), reason=f"no VGGT fixture at {FIXTURE}")

TOL = {"tok": (5e-6, 1e-5), "pose": (5e-5, 1e-5), "dense": (2e-4, 2e-5)}
CASES = {"": "images", "square.": "images_square"}


def assert_close(got: torch.Tensor, exp: torch.Tensor, group: str, key: str) -> float:
    """|got - exp| <= atol + rtol |exp| elementwise; returns the max abs error for the report."""
    assert got.shape == exp.shape, f"{key}: shape {tuple(got.shape)} != {tuple(exp.shape)}"
    atol, rtol = TOL[group]
    err = (got.double() - exp.double()).abs()
    ratio = (err / (atol + rtol * exp.double().abs())).max().item()
    assert ratio <= 1.0, f"{key}: max abs err {err.max().item():.3g}, tolerance ratio {ratio:.3g}"
    return err.max().item()


@pytest.fixture(scope="module")
def fixture() -> dict:
    config = json.loads((FIXTURE / "config.json").read_text())
    model = VGGT(config_from_reference(config), heads=True).eval()
    load_checkpoint(model, load_file(str(FIXTURE / "model.safetensors")), "fixture")
    with safe_open(str(FIXTURE / "expected.safetensors"), "pt") as f:
        meta = f.metadata() or {}
    inputs = load_file(str(FIXTURE / "inputs.safetensors"))
    with torch.no_grad():
        outputs = {prefix: model(inputs[name]) for prefix, name in CASES.items()}
    return {
        "config": config,
        "model": model,
        "inputs": inputs,
        "expected": load_file(str(FIXTURE / "expected.safetensors")),
        "meta": meta,
        "outputs": outputs,
    }


def test_vggt_fixture_config_is_read(fixture: dict) -> None:
    model, cfg = fixture["model"], fixture["config"]
    assert model.config.embed_dim == cfg["aggregator"]["embed_dim"]
    assert model.config.depth == cfg["aggregator"]["depth"]
    assert model.config.patch_start_idx == int(fixture["expected"]["patch_start_idx"])
    if "patch_start_idx" in fixture["meta"]:
        assert model.config.patch_start_idx == int(fixture["meta"]["patch_start_idx"])
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == cfg.get("num_parameters", n_params)
    assert len(model.state_dict()) == cfg.get("num_state_dict_keys", len(model.state_dict()))


@pytest.mark.parametrize("prefix", list(CASES))
def test_vggt_parity_features(fixture: dict, prefix: str) -> None:
    exp, feats = fixture["expected"], fixture["outputs"][prefix]["features"]
    n_layers = len([k for k in exp if k.startswith(f"{prefix}features.")])
    assert n_layers == fixture["config"]["aggregator"]["depth"] == len(feats)
    for i, got in enumerate(feats):
        assert_close(got, exp[f"{prefix}features.{i}"], "tok", f"{prefix}features.{i}")


@pytest.mark.parametrize("prefix", list(CASES))
def test_vggt_parity_heads(fixture: dict, prefix: str) -> None:
    exp, out = fixture["expected"], fixture["outputs"][prefix]
    assert_close(out["pose_enc"], exp[f"{prefix}pose_enc"], "pose", "pose_enc")
    n_iter = len([k for k in exp if k.startswith(f"{prefix}pose_enc_list.")])
    assert n_iter == len(out["pose_enc_list"])
    for k, got in enumerate(out["pose_enc_list"]):
        assert_close(got, exp[f"{prefix}pose_enc_list.{k}"], "pose", f"pose_enc_list.{k}")
    for key in ("depth", "depth_conf", "world_points", "world_points_conf"):
        assert_close(out[key], exp[prefix + key], "dense", prefix + key)


@pytest.mark.parametrize("prefix", list(CASES))
def test_vggt_parity_intermediates(fixture: dict, prefix: str) -> None:
    """Patch embed, its interpolated position embedding, the aggregator input and the RoPE positions."""
    exp, model = fixture["expected"], fixture["model"]
    images = fixture["inputs"][CASES[prefix]]
    b, s, _, h, w = images.shape
    agg = model.aggregator
    captured: dict[str, torch.Tensor] = {}
    hook = agg.frame_blocks[0].register_forward_pre_hook(lambda _m, args: captured.update(tokens=args[0], pos=args[1]))
    try:
        with torch.no_grad():
            pos_embed = agg.patch_embed.position_embedding(h, w)
            patches = agg.patch_embed(normalize(images).reshape(b * s, 3, h, w))
            agg(images, [0])
    finally:
        hook.remove()
    assert_close(pos_embed, exp[f"{prefix}debug.dino_pos_embed_interp"], "tok", "dino_pos_embed_interp")
    assert_close(patches, exp[f"{prefix}debug.dino_x_norm_patchtokens"], "tok", "dino_x_norm_patchtokens")
    assert_close(captured["tokens"], exp[f"{prefix}debug.aggregator_tokens_in"], "tok", "aggregator_tokens_in")
    ps = model.config.patch_size
    rope = patch_positions(b * s, h // ps, w // ps, model.config.patch_start_idx, images.device)
    assert torch.equal(rope, exp[f"{prefix}debug.rope_pos"])
    assert torch.equal(captured["pos"], exp[f"{prefix}debug.rope_pos"])


def test_vggt_teacher_extract_matches_fixture(fixture: dict) -> None:
    """The adapter, built from the fixture folder, returns the reference patch tokens at native size."""
    exp, start = fixture["expected"], int(fixture["expected"]["patch_start_idx"])
    teacher = VGGTTeacher.build(TeacherSpec(name="vggt", checkpoint=str(FIXTURE)))
    depth = teacher.info.num_layers
    images = fixture["inputs"]["images_square"]  # native size: the teacher's resize is the identity
    assert teacher.info.image_size == tuple(images.shape[-2:])
    out = teacher.extract(images, [0, -1])
    assert set(out) == {0, -1}
    assert_close(out[0], exp["square.features.0"][:, :, start:], "tok", "extract layer 0")
    assert_close(out[-1], exp[f"square.features.{depth - 1}"][:, :, start:], "tok", "extract layer -1")
    assert out[-1].shape[-1] == teacher.info.feature_dim
    assert out[-1].shape[2] == teacher.info.patch_grid[0] * teacher.info.patch_grid[1]

