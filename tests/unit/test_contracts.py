"""The plugin contracts hold: the core never imports a plugin, plugins list without torch, and a plugin that
breaks its contract fails in one line (exit 2, no run folder) at `rocket plugins check` and `rocket align`."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch
from pydantic import BaseModel, ConfigDict
from typer.testing import CliRunner

import rocket_core.registry as registry_module
import rocket_plugins.projectors.builtin as builtin_projectors
import tests.toy_plugins as toy
from rocket_cli.main import app
from rocket_core import hookimpl
from rocket_core.contract_check import check_plugin
from rocket_core.contracts import VLAInfo, VLAOutput
from rocket_core.engine import plan_run
from rocket_core.errors import RocketError
from rocket_core.registry import Registry
from rocket_core.specs import VLASpec, build_spec
from rocket_plugins.projectors.builtin import RocketProjector

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an `import` / `from ... import` statement names (nested and TYPE_CHECKING ones too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def test_the_core_imports_no_plugin() -> None:
    files = sorted((ROOT / "rocket_core").rglob("*.py"))
    assert len(files) > 40  # the walk really covers the core
    offenders = [f"{f.relative_to(ROOT)}:{line} imports {name}" for f in files for line, name in _imported_modules(f)
                 if name.split(".")[0] in ("plugins", "rocket_plugins")]
    assert not offenders, offenders


def test_the_import_walk_sees_nested_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from rocket_plugins.vla import openvla\n    import rocket_plugins.teachers\n")
    assert [name for _, name in _imported_modules(bad)] == ["rocket_plugins.vla", "rocket_plugins.teachers"]


def test_eval_family_comes_from_the_plugin() -> None:
    from rocket_plugins.vla.openvla import OpenVLAAdapter
    from rocket_plugins.vla.pi0 import Pi0Adapter
    from rocket_plugins.vla.pi05 import Pi05Adapter

    assert OpenVLAAdapter.info(VLASpec(name="openvla", preset="tiny")).eval_family == "openvla-oft"
    for adapter in (Pi0Adapter, Pi05Adapter):
        assert adapter.info(VLASpec(name=adapter.name, preset="tiny")).eval_family == "openpi"


# ---- deliberately wrong VLAs --------------------------------------------------------------------------------


class _Broken(toy.ToyVLAModel):
    def bend(self, out: VLAOutput) -> Any:
        raise NotImplementedError

    def forward_align(self, batch: Any, layers: Sequence[int]) -> Any:
        return self.bend(super().forward_align(batch, layers))


class OneTokenShort(_Broken):
    def bend(self, out: VLAOutput) -> VLAOutput:
        return VLAOutput(out.action_loss, {k: v[:, 1:] for k, v in out.vision_states.items()}, out.token_mask)


class WrongWidth(_Broken):
    def bend(self, out: VLAOutput) -> VLAOutput:
        return VLAOutput(out.action_loss, {k: v[..., :-2] for k, v in out.vision_states.items()}, out.token_mask)


class MissingLayer(_Broken):
    def bend(self, out: VLAOutput) -> VLAOutput:
        last = max(out.vision_states, default=None)
        return VLAOutput(out.action_loss, {k: v for k, v in out.vision_states.items() if k != last}, out.token_mask)


class TupleOutput(_Broken):
    def bend(self, out: VLAOutput) -> tuple[Any, ...]:
        return out.action_loss, out.vision_states


WRONG = {"one-token-short": (OneTokenShort, "vision tokens per sample, expected 32"),
         "wrong-width": (WrongWidth, "width 30, expected info().hidden_size 32"),
         "missing-layer": (MissingLayer, "lacks requested layer(s) [4]"),
         "tuple-output": (TupleOutput, "expected a rocket_core.contracts.VLAOutput, got tuple")}


def _wrong_adapter(name: str) -> type[toy.ToyVLA]:
    model_cls = WRONG[name][0]

    class Wrong(toy.ToyVLA):
        @classmethod
        def build(cls, spec: VLASpec) -> Any:
            return model_cls(cls.info(spec))

    Wrong.name = name
    return Wrong


class _WrongVLAs:
    @hookimpl
    def register_vlas(self, register: Any) -> None:
        for name in WRONG:
            register(_wrong_adapter(name))


@pytest.fixture
def wrong_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    reg = Registry()
    reg.register_module(toy, "toy (tests.toy_plugins)")
    reg.register_module(builtin_projectors, "built-in (rocket_plugins.projectors.builtin)")
    reg.register_module(_WrongVLAs(), "wrong (tests.unit.test_contracts)")
    monkeypatch.setattr(registry_module, "_CACHED", reg)
    return reg


def _errors(output: str) -> list[str]:
    assert "Traceback" not in output, output
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_the_toy_plugins_pass_the_check(wrong_registry: Registry) -> None:
    for kind, name in (("vla", "toy-vla"), ("teacher", "toy-teacher"), ("projector", "rocket")):
        result = runner.invoke(app, ["plugins", "check", kind, name])
        assert result.exit_code == 0, result.output
        assert f"{kind} '{name}': contract ok" in result.output


@pytest.mark.parametrize("name", sorted(WRONG))
def test_plugins_check_names_the_breach(wrong_registry: Registry, name: str) -> None:
    result = runner.invoke(app, ["plugins", "check", "vla", name])
    errors = _errors(result.output)
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and f"VLA '{name}' forward_align" in errors[0] and WRONG[name][1] in errors[0], errors


@pytest.mark.parametrize("name", sorted(WRONG))
def test_align_stops_a_wrong_vla_before_the_first_step(wrong_registry: Registry, name: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["align", "--vla", name, "--teacher", "toy-teacher", "--max-steps", "2",
                                 "--batch-size", "2"])
    errors = _errors(result.output)
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and WRONG[name][1] in errors[0], errors
    assert not (tmp_path / "runs").exists(), list((tmp_path / "runs").rglob("*"))


class Raising(_Broken):
    def bend(self, out: VLAOutput) -> VLAOutput:
        return out.vision_states[99]


def test_align_reports_a_raising_vla_in_one_line(wrong_registry: Registry, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    class RaisingVLA(toy.ToyVLA):
        name = "raising"

        @classmethod
        def build(cls, spec: VLASpec) -> Any:
            return Raising(cls.info(spec))

    wrong_registry._add("vla", RaisingVLA, "test")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["align", "--vla", "raising", "--teacher", "toy-teacher", "--max-steps", "1"])
    errors = _errors(result.output)
    assert result.exit_code == 2 and errors == ["error: VLA 'raising' bend raised KeyError: 99 (test_contracts.py:"
                                                + errors[0].rsplit(":", 1)[-1]], result.output
    assert not (tmp_path / "runs").exists()


def test_dry_run_checks_the_token_count_from_info(wrong_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    class ThreeCameras(toy.ToyVLA):
        name = "three-cameras"

        @classmethod
        def info(cls, spec: VLASpec) -> VLAInfo:
            base = super().info(spec)
            return VLAInfo(**{**base.__dict__, "num_vision_tokens": 47, "num_images": 3})

    wrong_registry._add("vla", ThreeCameras, "test")
    result = runner.invoke(app, ["align", "--vla", "three-cameras", "--teacher", "toy-teacher", "--dry-run"])
    errors = _errors(result.output)
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "num_vision_tokens (47) must be num_images (3) x the tokens of one camera" in errors[0]


def test_plan_run_checks_the_pooled_grid(wrong_registry: Registry) -> None:
    class BigTokens(toy.ToyVLA):
        name = "big-tokens"

        @classmethod
        def info(cls, spec: VLASpec) -> VLAInfo:
            return VLAInfo(**{**super().info(spec).__dict__, "num_vision_tokens": 2 * 50})

    wrong_registry._add("vla", BigTokens, "test")
    spec = build_spec(None, {"vla": {"name": "big-tokens"}, "teacher": {"name": "toy-teacher"},
                             "projector": {"name": "rocket"}})
    with pytest.raises(RocketError, match=r"num_vision_tokens is 100 but 2 cameras x the 6x6 teacher grid pooled to "
                                          r"7x7 gives 98 targets"):
        plan_run(spec, wrong_registry)
    random = spec.model_copy(update={"alignment": spec.alignment.model_copy(update={"pooling": "random"})})
    assert plan_run(random, wrong_registry).vla_info.num_vision_tokens == 100  # random pooling takes any count


def test_a_raising_plugin_is_one_line() -> None:
    class Raises(toy.ToyVLA):
        name = "raises"

        @classmethod
        def build(cls, spec: VLASpec) -> Any:
            raise ValueError("boom\nsecond line")

    (line,) = check_plugin("vla", Raises)
    assert line.startswith("vla 'raises' build raised ValueError: boom second line (test_contracts.py:")


# ---- typed projector options --------------------------------------------------------------------------------


class ScaledOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: float = 1.0


class ScaledProjector(RocketProjector):
    name = "scaled"
    options_model = ScaledOptions

    @classmethod
    def build(cls, num_pairs: int, in_dim: int, out_dim: int, spec: Any, ensemble_size: int) -> Any:
        bank = super().build(num_pairs, in_dim, out_dim, spec, ensemble_size)
        scale = cls.parse_options(spec.options).scale
        with torch.no_grad():
            for p in bank.parameters():
                p.mul_(scale)
        return bank


def test_projector_options_are_typed_by_the_plugin(wrong_registry: Registry) -> None:
    wrong_registry._add("projector", ScaledProjector, "test")
    names = {"vla": {"name": "toy-vla"}, "teacher": {"name": "toy-teacher"}}
    plan = plan_run(build_spec(None, {"projector": {"name": "scaled", "options": {"scale": 0.5}}}, names),
                    wrong_registry)
    assert plan.spec.projector.options == {"scale": 0.5}
    with pytest.raises(RocketError) as err:
        plan_run(build_spec(None, {"projector": {"name": "scaled", "options": {"scael": 2}}}, names), wrong_registry)
    assert str(err.value) == "invalid scaled options: scael: Extra inputs are not permitted (got 2)"
    with pytest.raises(RocketError, match="plugin 'rocket' takes no options, got scale; remove them"):
        plan_run(build_spec(None, {"projector": {"name": "rocket", "options": {"scale": 2}}}, names), wrong_registry)
