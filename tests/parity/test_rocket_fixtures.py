"""Golden cases from the ROCKET reference, run generically: every setting and shape comes from cases.json.

The folder comes from ROCKET_ALIGN_FIXTURES (default ../shared/fixtures/rocket); each case is dispatched
on its `kind`, and an unknown kind fails rather than passing silently.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rocket_core.align.head import AlignmentHead
from rocket_core.align.layout import pooled_grid
from rocket_core.align.loss import cosine_loss
from rocket_core.align.pooling import bilinear_pool, sincos_2d
from rocket_core.align.projector import AlignProjector, matryoshka_widths
from rocket_core.analysis.similarity import gradient_conflict, token_mean_cosine
from rocket_core.registry import get_registry
from rocket_core.select.balanced import balanced_branch, balanced_layers
from rocket_core.select.cka import cka_matrix, hungarian_match, linear_cka
from rocket_core.specs import ProjectorSpec
from rocket_plugins.vla.openvla.policy import vision_slice as openvla_vision_slice
from rocket_plugins.vla.paligemma.preprocess import align_mask as pi0_align_mask, vision_slice as pi0_vision_slice
from tests.conftest import SHARED_FIXTURES, fixture_dir, needs_fixture
from tests.helpers import random_pool, reference_cache_keys

ROOT = fixture_dir("ROCKET_ALIGN_FIXTURES", SHARED_FIXTURES / "rocket")
INDEX = ROOT / "cases.json"
CASES: list[dict[str, Any]] = json.loads(INDEX.read_text())["cases"] if INDEX.is_file() else []

# Tolerances of the fixture README.
PROJ = dict(rtol=1e-5, atol=1e-5)
POOL = dict(rtol=1e-5, atol=5e-5)
LOSS_ATOL = 1e-6


def _tensors(case: dict[str, Any]) -> dict[str, torch.Tensor]:
    return load_file(str(ROOT / case["file"])) if case.get("file") else {}


def _inputs(tensors: dict[str, torch.Tensor], skip: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if not k.startswith("expected.") and k not in skip}


def _layer_key(index: int) -> str:
    return "m1" if index == -1 else str(index)


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str, **tol: float) -> None:
    torch.testing.assert_close(actual.detach(), expected, msg=lambda m: f"{what}: {m}", **tol)


def _scalar(actual: torch.Tensor | float, expected: torch.Tensor | float, what: str) -> None:
    a = float(actual.detach()) if isinstance(actual, torch.Tensor) else float(actual)
    e = float(expected)
    assert abs(a - e) <= LOSS_ATOL, f"{what}: {a} vs {e}"


def check_align_projector(case: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    p = case["params"]
    kwargs = p["constructor_kwargs"]
    ratios, widths = matryoshka_widths(
        p["full_hidden_dim"],
        p["num_layers"],
        kwargs.get("width_ratios"),
        kwargs.get("use_matryoshka", True),  # the openpi copy has no switch: ratios always apply
        kwargs.get("shallow_to_deep_increase", True),
    )
    assert widths == p["layer_hidden_dims"] == case["expected"]["layer_hidden_dims"]
    assert ratios == pytest.approx(case["expected"]["width_ratios"], abs=1e-15)
    proj = AlignProjector(
        p["llm_dim"], p["out_dim"], p["full_hidden_dim"], widths, p["use_vlm_norm"], p.get("layer_norm_eps") or 1e-5
    )
    proj.load_state_dict(_inputs(t, ("x", "target", "align_mask")), strict=True)
    mask = t.get("align_mask")
    for j, index in enumerate(p["eval_layer_indices"]):
        out = proj(t["x"], layer_index=index)
        _close(out, t[f"expected.out.layer_{_layer_key(index)}"], f"projector output at layer_index {index}", **PROJ)
        _scalar(cosine_loss(out, t["target"], mask), t["expected.losses"][j], f"loss at layer_index {index}")


def check_matryoshka_widths(case: dict[str, Any], _: dict[str, torch.Tensor]) -> None:
    for entry in case["expected"]:
        args = dict(entry["input"])
        ratios, widths = matryoshka_widths(args.pop("hidden_dim"), args.pop("num_layers"), **args)
        assert widths == entry["layer_hidden_dims"], entry
        assert ratios == pytest.approx(entry["width_ratios"], abs=1e-15), entry


def check_custom_pooling(case: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    p = case["params"]
    assert p["pooling_func"] == "bilinear"
    grid, image_hw = (p["patch_h"], p["patch_w"]), (p["img_h"], p["img_w"])
    oh, ow = pooled_grid(p["frames"], grid, p["reference_len"])
    assert (oh, ow, p["frames"] * oh * ow) == (p["out_h"], p["out_w"], p["out_tokens"])
    pooled = bilinear_pool(t["hidden"], grid, p["reference_len"], image_hw, p["use_vggt_pe"])
    _close(pooled, t["expected.pooled"], "pooled tokens", **POOL)
    if p["use_vggt_pe"]:
        pe = 0.1 * sincos_2d(p["dim"], grid, image_hw)
        _close(pe, t["expected.pos_embed_added"], "positional embedding", rtol=0, atol=1e-6)


def check_random_pooling_shapes(case: dict[str, Any], _: dict[str, torch.Tensor]) -> None:
    gen = torch.Generator().manual_seed(0)
    for entry in case["expected"]:
        i = entry["input"]
        total = i["S"] * i["ph"] * i["pw"]
        # token k carries the value k everywhere, so the output reveals which tokens were drawn
        tokens = torch.arange(total, dtype=torch.float32).repeat_interleave(i["D"]).reshape(1, i["S"], -1, i["D"])
        out = random_pool(tokens.expand(i["B"], -1, -1, -1), i["ref"], gen)
        assert list(out.shape) == entry["output_shape"]
        drawn = out[0, :, 0]
        assert torch.all(drawn[1:] >= drawn[:-1]), "indices must be sorted"
        replacement = entry["mode"].startswith("with replacement")
        assert replacement == (i["ref"] > total)
        if not replacement:
            assert drawn.unique().numel() == i["ref"], "without replacement, every token at most once"


def check_balanced_layers(case: dict[str, Any], _: dict[str, torch.Tensor]) -> None:
    for entry in case["expected"]:
        assert balanced_layers(entry["n_layers"], entry["n_keep"]) == entry["indices"], entry
        assert balanced_branch(entry["n_layers"], entry["n_keep"]) == entry["branch"], entry


def check_cka(case: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    value = linear_cka(t["X"], t["Y"])
    assert math.isfinite(value)
    for expected in t["expected.cka"]:  # [debiased=False, debiased=True]: the flag cancels
        assert abs(value - float(expected)) <= 1e-5, (value, float(expected))


def check_cka_layer_matching(case: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    p, e = case["params"], case["expected"]
    rows = {layer: t[f"vla.{layer}"] for layer in p["vla_layers"]}
    cols = {layer: t[f"teacher.{layer}"] for layer in p["vggt_layers"]}
    sim = cka_matrix(rows, cols)
    np.testing.assert_allclose(sim, t["expected.cka_matrix"].double().numpy(), rtol=0, atol=1e-5)
    match = hungarian_match(sim, sorted(rows), sorted(cols))
    assert [(a, b) for a, b, _ in match.pairs] == [(h["vla_layer"], h["vggt_layer"]) for h in e["hungarian_pairs"]]
    assert match.average_similarity == pytest.approx(e["average_matched_similarity"], abs=1e-5)
    assert match.best_column_per_row == {b["vla_layer"]: b["vggt_layer"] for b in e["best_vggt_per_vla_row"]}


def _strategy_for(p: dict[str, Any]) -> ProjectorSpec:
    """Map the reference's construction flags onto our strategies (independent = the 20 % quirk by default)."""
    matryoshka = p.get("use_matryoshka") is not False
    if p["share_projector"]:
        name = "rocket" if matryoshka else "shared"
    else:
        name = "independent"
    return ProjectorSpec(
        name=name,
        use_vlm_norm=p["use_vlm_norm"],
        width_ratios=p.get("width_ratios_arg"),
        shallow_to_deep_increase=p.get("shallow_to_deep_increase", True),
        reference_width_quirk=matryoshka,
    )


def check_align_step(case: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    p, kind = case["params"], case["kind"]
    num_pairs, dim_in = p["num_layer_pairs"], p["llm_dim"]
    out_dim = p.get("teacher_dim", 2 * p["vggt_dim"])
    spec = _strategy_for(p)
    bank = get_registry().get("projector", spec.name).build(num_pairs, dim_in, out_dim, spec, p["ensemble_size"])
    expected_widths = [w[0] if isinstance(w, list) else w for w in p["layer_hidden_dims"]]
    assert bank.pair_widths() == expected_widths
    bank.load_state_dict({k: v for k, v in t.items() if k[0].isdigit()}, strict=True)

    if kind == "openvla_align_step":
        window = openvla_vision_slice(p["vision_length"], shift=p["gain_feat_1move"])
        mask = None
    else:
        window = pi0_vision_slice(p["num_images"], p["tokens_per_image"])
        mask = pi0_align_mask(t["image_masks"], t["token_padding_mask"])
        assert torch.equal(mask, t["expected.align_mask"])
    num_tokens = window.stop - window.start

    hidden = [t[f"vla_hidden.{i}"].clone().requires_grad_(True) for i in range(num_pairs)]
    states = [h[:, window] for h in hidden]
    for i, s in enumerate(states):
        assert torch.equal(s, t[f"expected.vision_hidden.{i}"]), f"vision slice of pair {i} is not bit-identical"
    teacher = [t[f"teacher_raw.{i}"][:, :, p["patch_start_idx"] :] for i in range(num_pairs)]
    head = AlignmentHead(
        bank, num_tokens, (p["patch_h"], p["patch_w"]), (p["img_h"], p["img_w"]), p["pooling_func"], p["use_vggt_pe"]
    )
    targets = head.pool_targets(teacher)
    for i in range(num_pairs):
        _close(targets[i], t[f"expected.pooled_target.{i}"], f"pooled target of pair {i}", **POOL)

    out = head(states, targets=targets, token_mask=mask)
    for i in range(num_pairs):
        _scalar(out.pair_losses[i], t["expected.layer_losses"][i], f"loss of pair {i}")
    for i, row in enumerate(case["expected"].get("ensemble_losses", [])):
        for j, value in enumerate(row):
            _scalar(out.ensemble_losses[i, j], value, f"loss of pair {i}, ensemble member {j}")
    _scalar(out.loss, t["expected.align_loss"][0], "align_loss")
    total = p["action_loss"] + p["align_loss_coeff"] * out.loss
    _scalar(total, t["expected.total_loss"][0], "total_loss")

    total.backward()
    grads = {name: prm.grad for name, prm in bank.named_parameters()}
    grads.update({f"vla_hidden.{i}": h.grad for i, h in enumerate(hidden)})
    prefix = "expected.grad_total."
    expected_grads = {k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}
    assert set(expected_grads) == set(grads)
    for name, expected in expected_grads.items():
        atol = 1e-6 * float(expected.abs().max())
        _close(grads[name], expected, f"gradient of {name}", rtol=1e-4, atol=atol)


def check_grad_conflict(case: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    _close(gradient_conflict(t["layer_grads"], case["params"]["eps"]), t["expected.cos_matrix"], "cosines", rtol=0,
           atol=1e-6)


def check_projector_similarity(case: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    _close(token_mean_cosine(t["layer_features"]), t["expected.similarity"], "similarity", rtol=0, atol=1e-6)


def check_cache_key(case: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    assert reference_cache_keys(t["pixel_values_f32"]) == case["expected"]["keys_from_f32"]
    assert reference_cache_keys(t["pixel_values_bf16"]) == case["expected"]["keys_from_bf16"]


def check_slicing(case: dict[str, Any], _: dict[str, torch.Tensor]) -> None:
    for entry in case["expected"]:
        window = openvla_vision_slice(entry["vision_length"], shift=entry["gain_feat_1move"])
        assert (window.start, window.stop) == (entry["slice_start"], entry["slice_stop_exclusive"]), entry


CHECKS: dict[str, Callable[[dict[str, Any], dict[str, torch.Tensor]], None]] = {
    "align_projector": check_align_projector,
    "align_projector_masked": check_align_projector,
    "matryoshka_widths": check_matryoshka_widths,
    "custom_pooling": check_custom_pooling,
    "random_pooling_shapes": check_random_pooling_shapes,
    "get_balanced_layers": check_balanced_layers,
    "cka": check_cka,
    "cka_layer_matching": check_cka_layer_matching,
    "openvla_align_step": check_align_step,
    "pi0_align_step": check_align_step,
    "grad_conflict": check_grad_conflict,
    "projector_similarity": check_projector_similarity,
    "cache_key": check_cache_key,
    "slicing": check_slicing,
}


@needs_fixture(ROOT, "ROCKET_ALIGN_FIXTURES", present=INDEX.is_file())
def test_fixture_folder_has_cases() -> None:
    assert CASES, f"no cases found in {INDEX} (set ROCKET_ALIGN_FIXTURES to a fixture folder)"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_reference_case(case: dict[str, Any]) -> None:
    check = CHECKS.get(case["kind"])
    assert check is not None, f"unknown case kind '{case['kind']}'"
    check(case, _tensors(case))
