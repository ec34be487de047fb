"""The `rocket` command as users run it: exit codes, one-line errors, files written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import rocket_core.registry as registry_module
import rocket_plugins.projectors.builtin as builtin_projectors
import tests.toy_plugins as toy
from rocket_cli.main import app
from rocket_core.registry import Registry

runner = CliRunner()


@pytest.fixture
def toy_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    reg = Registry()
    reg.register_module(toy, "toy (tests.toy_plugins)")
    reg.register_module(builtin_projectors, "built-in (rocket_plugins.projectors.builtin)")
    monkeypatch.setattr(registry_module, "_CACHED", reg)
    return reg


def _rocket(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it (a fresh process: real entry-point discovery)."""
    return subprocess.run([sys.executable, "-m", "rocket_cli", *args], capture_output=True, text=True, timeout=120)


def test_plugins_json_lists_projector_strategies() -> None:
    result = _rocket("plugins", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    projectors = {p["name"] for p in data["plugins"] if p["kind"] == "projector"}
    assert projectors >= {"rocket", "shared", "independent", "single"}
    assert all({"kind", "name", "version", "source", "description"} <= set(p) for p in data["plugins"])


def test_unknown_plugin_exits_2_with_one_line() -> None:
    result = _rocket("align", "--vla", "nope", "--teacher", "nope", "--dry-run")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown vla plugin 'nope'" in lines[0] and "available vla plugins" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_select_layers_follows_balanced_rule(tmp_path: Path) -> None:
    out = tmp_path / "layers.yaml"
    result = runner.invoke(app, ["select-layers", "--vla-layers", "32", "--teacher-layers", "24", "-k", "10",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text())
    assert doc["vla"] == [3, 6, 10, 13, 16, 19, 22, 26, 29, 32]  # blocks 2,5,9,...,31 shifted by 1
    assert doc["teacher"] == [1, 4, 6, 9, 11, 13, 16, 18, 21, 23]
    eight = runner.invoke(app, ["select-layers", "--vla-layers", "32", "--teacher-layers", "24", "-k", "8"])
    assert yaml.safe_load(eight.output[eight.output.index("vla:"):]) == {
        "vla": [4, 8, 12, 16, 20, 24, 28, 32], "teacher": [2, 5, 8, 11, 14, 17, 20, 23]}


def test_select_layers_from_plugins_feeds_align(toy_registry: Registry, tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    result = runner.invoke(app, ["select-layers", "--vla", "toy-vla", "--teacher", "toy-teacher", "-k", "2",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    plan = runner.invoke(app, ["align", "--vla", "toy-vla", "--teacher", "toy-teacher", "--layers", str(out),
                               "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "2 layer pairs" in plan.output


def test_align_dry_run_prints_plan(toy_registry: Registry, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("projector:\n  name: shared\nalignment:\n  coefficient: 0.25\n")
    result = runner.invoke(app, ["align", "--vla", "toy-vla", "--teacher", "toy-teacher", "--config", str(config),
                                 "--projector", "rocket", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "projector rocket" in result.output  # the flag beats the file
    assert "action + 0.25 x align" in result.output  # the file value survives
    assert "864 parameters" in result.output  # LayerNorm 64 + fc1 528 + fc2 272


def test_align_bad_layer_exits_2(toy_registry: Registry) -> None:
    result = runner.invoke(app, ["align", "--vla", "toy-vla", "--teacher", "toy-teacher", "--layers", "1,7:0,1",
                                 "--dry-run"])
    assert result.exit_code == 2
    assert "valid indices are 0..4" in result.output


def test_pull_a_benchmark_fetches_its_assets_or_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKET_ENVS", str(tmp_path / "envs"))  # no isolated environments there
    robotwin = runner.invoke(app, ["pull", "robotwin"])
    assert robotwin.exit_code == 2 and "run `rocket eval --setup robotwin` first" in robotwin.output
    toy = runner.invoke(app, ["pull", "toy"])
    assert toy.exit_code == 2 and "benchmark 'toy' has no assets to pull" in toy.output
