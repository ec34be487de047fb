"""Parity of our OpenVLA against the reference's tiny random model (the fixture's config and tolerances).

Every size comes from the fixture's config.json and every case from its inputs file, so the same test
runs against any fixture of this format (`ROCKET_OPENVLA_FIXTURE`).
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rocket_plugins.vla.openvla.modeling import OpenVLA, OpenVLAConfig
from tests.conftest import SHARED_FIXTURES, fixture_dir

FIXTURE = fixture_dir("ROCKET_OPENVLA_FIXTURE", SHARED_FIXTURES / "openvla" / "tiny")
pytestmark = pytest.mark.skipif(not (FIXTURE / "config.json").is_file(), reason=f"no OpenVLA fixture at {FIXTURE}")


def _config() -> dict:
    return json.loads((FIXTURE / "config.json").read_text())


def _cases() -> list[str]:
    if not (FIXTURE / "inputs.safetensors").is_file():
        return []
    return sorted({k.split(".")[0] for k in load_file(str(FIXTURE / "inputs.safetensors"))})


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def model(request: pytest.FixtureRequest) -> OpenVLA:
    """The fixture's model, with the reference's eager attention and with our default sdpa."""
    cfg = _config()
    vla_cfg = OpenVLAConfig.from_hf(
        {**cfg["openvla_config"], "text_config": cfg["text_config"]},
        cfg["timm_create_model_kwargs"],
        attn_implementation=request.param,
    )
    m = OpenVLA(vla_cfg).eval()
    m.load_state_dict(load_file(str(FIXTURE / "model.safetensors")), strict=True)
    return m


def test_config_sizes_match_fixture(model: OpenVLA) -> None:
    vision, vocab = _config()["vision"], _config()["vocab"]
    assert model.config.patches_per_image == vision["num_patches_per_image"]
    assert model.config.vision_dim == vision["fused_vision_dim"]
    assert model.config.featurizer.feature_block == vision["featurizer_block_index_used"]
    assert model.config.fused_featurizer.feature_block == vision["fused_featurizer_block_index_used"]
    assert model.config.fused_featurizer.mlp_hidden == vision["fused_featurizer_mlp_hidden"]
    assert model.config.action_vocab_size == vocab["vocab_size_for_action_decoding"]
    assert model.config.action_token_begin == vocab["action_token_begin_idx_used"]


@pytest.mark.parametrize("case", _cases())
def test_forward_matches_reference(model: OpenVLA, case: str) -> None:
    cfg = _config()
    inputs = {k.split(".", 1)[1]: v for k, v in load_file(str(FIXTURE / "inputs.safetensors")).items() if k.startswith(case + ".")}
    expected = {k.split(".", 1)[1]: v for k, v in load_file(str(FIXTURE / "expected.safetensors")).items() if k.startswith(case + ".")}
    tol_v = cfg["suggested_tolerance"]["vision_patches_and_projector_features"]
    tol_h = cfg["suggested_tolerance"]["hidden_states_and_logits"]
    with torch.no_grad():
        patches = model.vision_backbone(inputs["pixel_values"])
        out = model(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
        _, mask, labels, _ = model.embed(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
    torch.testing.assert_close(patches, expected["vision_patches"], **tol_v)
    torch.testing.assert_close(out.projector_features, expected["projector_features"], **tol_v)
    torch.testing.assert_close(mask, expected["multimodal_attention_mask"].to(mask.dtype), rtol=0, atol=0)
    torch.testing.assert_close(labels, expected["multimodal_labels"].to(labels.dtype), rtol=0, atol=0)
    num_states = sum(k.startswith("hidden_states.") for k in expected)
    assert len(out.hidden_states) == num_states == model.config.num_layers + 1
    for k in range(num_states):
        torch.testing.assert_close(out.hidden_states[k], expected[f"hidden_states.{k}"], **tol_h)
    torch.testing.assert_close(out.logits, expected["logits"], **tol_h)
    torch.testing.assert_close(out.loss, expected["loss"], atol=cfg["suggested_tolerance"]["loss"]["atol"], rtol=0)
