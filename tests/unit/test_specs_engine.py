"""Specs from files and flags, layer-map resolution and validation before any heavy work."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import rocket_plugins.projectors.builtin as builtin_projectors
import tests.toy_plugins as toy
from rocket_core.engine import plan_run
from rocket_core.errors import RocketError
from rocket_core.registry import Registry
from rocket_core.select.layermap import parse_layers, read_layer_map, write_layer_map
from rocket_core.specs import LayerMap, RunSpec, build_spec

NAMES = {"vla": {"name": "toy-vla"}, "teacher": {"name": "toy-teacher"}, "projector": {"name": "rocket"}}

@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.register_module(toy)
    reg.register_module(builtin_projectors)
    return reg


def _spec(**overrides: object) -> RunSpec:
    return build_spec(None, overrides, NAMES)


@pytest.mark.parametrize("suffix,text", [
    (".yaml", "alignment:\n  coefficient: 0.25\nprojector:\n  name: shared\n"),
    (".toml", "[alignment]\ncoefficient = 0.25\n[projector]\nname = 'shared'\n"),
    (".json", json.dumps({"alignment": {"coefficient": 0.25}, "projector": {"name": "shared"}})),
])
def test_config_files_and_flag_overrides(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    spec = build_spec(path, {"projector": {"name": "independent"}}, NAMES)
    assert spec.alignment.coefficient == 0.25  # from the file
    assert spec.projector.name == "independent"  # the flag wins
    assert spec.alignment.ensemble_size == 1  # default kept


@pytest.mark.parametrize("text,message", [
    ("alignment:\n  coefficient: -1\n", "alignment.coefficient: Input should be greater than or equal to 0"),
    ("alignment:\n  colour: red\n", "alignment.colour: Extra inputs are not permitted"),
    ("- a\n- b\n", "must hold a mapping"),
    ("alignment: [unclosed\n", "is not valid YAML"),
])
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RocketError) as err:
        build_spec(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_specs_name_no_plugin() -> None:
    """The quickstart's plugin names are CLI defaults (shown in --help), not spec defaults."""
    with pytest.raises(RocketError) as err:
        build_spec(None, {})
    assert all(f"{kind}: Field required" in str(err.value) for kind in ("vla", "teacher", "projector"))


def test_missing_config_file() -> None:
    with pytest.raises(RocketError, match="does not exist"):
        build_spec("no/such/file.yaml")


def test_default_layers_resolve_minus_one(registry: Registry) -> None:
    plan = plan_run(_spec(), registry)
    assert plan.layers == LayerMap(vla=[1, 2, 4], teacher=[0, 1, 2])  # teacher -1 -> last layer
    assert plan.spec.layers == plan.layers  # saved resolved
    assert plan.widths == [3, 9, 16]  # Matryoshka prefixes of hidden = teacher width 16
    # LayerNorm(32) + fc1 (32->16) + fc2 (16->16)
    assert plan.projector_params == 2 * 32 + (32 * 16 + 16) + (16 * 16 + 16)


def test_independent_strategy_counts_one_projector_per_pair(registry: Registry) -> None:
    plan = plan_run(_spec(projector={"name": "independent"}), registry)
    assert plan.widths == [16, 16, 16]
    quirk = plan_run(_spec(projector={"name": "independent", "reference_width_quirk": True}), registry)
    assert quirk.widths == [3, 3, 3]
    assert plan.projector_params == 3 * (2 * 32 + (32 * 16 + 16) + (16 * 16 + 16))


def test_balanced_layers_use_adapter_counts(registry: Registry) -> None:
    plan = plan_run(_spec(layers="balanced:2"), registry)
    assert plan.layers == LayerMap(vla=[2, 4], teacher=[1, 2])  # blocks (1, 3) + offset 1; teacher drops 0


@pytest.mark.parametrize("layers,message", [
    ("1,9:0,1", "VLA 'toy-vla' layer 9 is out of range: valid indices are 0..4"),
    ("1,2:0,5", "teacher 'toy-teacher' layer 5 is out of range: valid indices are 0..2"),
    ("2,1:0,1", "must be strictly increasing"),
    ("1,2:0", "has 2 VLA layers but 1 teacher layers"),
    ("layers please", "cannot read --layers"),
])
def test_bad_layer_maps(registry: Registry, layers: str, message: str) -> None:
    with pytest.raises(RocketError) as err:
        plan_run(_spec(layers=layers), registry)
    assert message in str(err.value)


def test_single_projector_takes_one_pair(registry: Registry) -> None:
    with pytest.raises(RocketError, match="at most 1 pair"):
        plan_run(_spec(projector={"name": "single"}), registry)
    assert plan_run(_spec(projector={"name": "single"}, layers="4:-1"), registry).widths == [16]


def test_width_ratios_need_one_per_pair(registry: Registry) -> None:
    with pytest.raises(RocketError, match="3 pairs"):
        plan_run(_spec(projector={"width_ratios": [0.5, 1.0]}), registry)
    assert plan_run(_spec(projector={"width_ratios": [0.25, 0.5, 1.0]}), registry).widths == [4, 8, 16]


def test_layer_map_file_round_trip(tmp_path: Path) -> None:
    path = write_layer_map(tmp_path / "maps" / "m.yaml", LayerMap(vla=[4, 8], teacher=[2, 5]), {"rule": "x"})
    assert read_layer_map(path) == LayerMap(vla=[4, 8], teacher=[2, 5])
    assert parse_layers(str(path), 32, 24) == LayerMap(vla=[4, 8], teacher=[2, 5])
    assert not list(path.parent.glob("*.tmp"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("vla: [1, 2]\n")
    with pytest.raises(RocketError, match="layer map .*teacher"):
        read_layer_map(bad)


@pytest.mark.parametrize("strategy", ["rocket", "shared", "independent", "single"])
def test_plan_layout_without_torch_equals_the_built_bank(strategy: str) -> None:
    """The dry run's arithmetic (`layout`) must describe exactly the bank `build` makes."""
    cls = builtin_projectors.__dict__[{"rocket": "RocketProjector", "shared": "SharedProjector",
                                       "independent": "IndependentProjector", "single": "SingleProjector"}[strategy]]
    pairs = 1 if strategy == "single" else 5
    spec = RunSpec.model_validate({**NAMES, "projector": {"name": strategy, "use_vlm_norm": True}}).projector
    bank = cls.build(pairs, 24, 40, spec, 2)
    assert cls.layout(pairs, 24, 40, spec, 2) == (bank.pair_widths(), sum(p.numel() for p in bank.parameters()))


def test_a_strategy_that_builds_another_bank_gets_its_measured_layout() -> None:
    """A subclass overriding `build` must not be planned with the built-in arithmetic."""
    from rocket_core.align.projector import ProjectorBank

    class Wide(builtin_projectors.RocketProjector):
        @classmethod
        def build(cls, num_pairs, in_dim, out_dim, spec, ensemble_size):  # type: ignore[no-untyped-def]
            wide = spec.model_copy(update={"hidden_dim": 3 * out_dim})
            return ProjectorBank.create(num_pairs, in_dim, out_dim, wide, ensemble_size, True, True)

    spec = RunSpec.model_validate({**NAMES, "projector": {"name": "rocket"}}).projector
    widths, params = Wide.layout(4, 32, 16, spec, 1)
    assert widths == Wide.build(4, 32, 16, spec, 1).pair_widths() == [9, 22, 35, 48]
    assert params != builtin_projectors.RocketProjector.layout(4, 32, 16, spec, 1)[1]
