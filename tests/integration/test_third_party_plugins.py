"""docs/plugins.md's example, taken from the page itself: it passes the contract check, and installed as a
third-party distribution (dist-info on sys.path) its VLA, teacher, projector (with options) and command
show up in `rocket` and train."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import rocket_core.registry as registry_module
import rocket_plugins.projectors.builtin as builtin_projectors
from rocket_cli.main import app
from rocket_core import hookspecs
from rocket_core.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "plugins.md"
runner = CliRunner()


def doc_files() -> dict[str, str]:
    """`<!-- file: NAME -->` followed by a python block: the files the guide's example consists of."""
    found = re.findall(r"<!-- file: (\S+) -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    return {name: body for name, body in found}


def test_the_guide_has_the_example_files() -> None:
    assert set(doc_files()) == {"my_rocket_plugins.py", "my_rocket_models.py", "my_rocket_commands.py"}


@pytest.fixture
def doc_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The guide's plugins registered in this process (as their entry point would)."""
    for name, body in doc_files().items():
        (tmp_path / name).write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_rocket_plugins

    reg = Registry()
    reg.register_module(builtin_projectors, "built-in (rocket_plugins.projectors.builtin)")
    reg.register_module(my_rocket_plugins, "docs/plugins.md example")
    monkeypatch.setattr(registry_module, "_CACHED", reg)
    yield reg
    for name in ("my_rocket_plugins", "my_rocket_models", "my_rocket_commands"):
        sys.modules.pop(name, None)


def test_the_guides_example_passes_the_contract_check(doc_registry: Registry) -> None:
    for kind, name in (("vla", "patch-vla"), ("teacher", "patch-teacher"), ("projector", "damped")):
        result = runner.invoke(app, ["plugins", "check", kind, name])
        assert result.exit_code == 0, result.output
        assert f"{kind} '{name}': contract ok" in result.output


def test_the_guides_option_errors_are_one_line(doc_registry: Registry, tmp_path: Path) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump({"projector": {"name": "damped", "options": {"init_scael": 0.25}}}))
    result = runner.invoke(app, ["align", "--vla", "patch-vla", "--teacher", "patch-teacher", "-c", str(spec),
                                 "--preset", "tiny", "--dry-run"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == ["error: invalid damped options: init_scael: Extra inputs are not permitted (got 0.25)"]
    result = runner.invoke(app, ["align", "--vla", "patch-vla", "--teacher", "patch-teacher", "--preset", "huge",
                                 "--dry-run"])
    assert result.exit_code == 2 and "unknown patch-vla preset 'huge'; available: tiny" in result.output


# ---- the same files as an installed third-party distribution --------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway installed distribution: its modules plus a dist-info with both entry-point groups."""
    root = tmp_path_factory.mktemp("site")
    for name, body in doc_files().items():
        (root / name).write_text(body)
    info = root / "rocket_patch_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rocket-patch-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rocket]\npatch = my_rocket_plugins\n\n"
                                           "[rocket.commands]\npatch = my_rocket_commands\n")
    return root


def _rocket(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rocket_cli", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.mark.slow
def test_a_third_party_distribution_lists_and_trains(site: Path, tmp_path: Path) -> None:
    listed = _rocket(site, tmp_path, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = {(p["kind"], p["name"]): p["source"] for p in json.loads(listed.stdout)["plugins"]
            if p["source"].startswith("rocket-patch-plugins")}
    assert set(mine) == {("vla", "patch-vla"), ("teacher", "patch-teacher"), ("projector", "damped"),
                         ("command", "patch")}, mine
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"projector": {"name": "damped",
                                                                     "options": {"init_scale": 0.25}}}))
    run = _rocket(site, tmp_path, "align", "--vla", "patch-vla", "--teacher", "patch-teacher", "-c", "run.yaml",
                  "--preset", "tiny", "--max-steps", "2", "--batch-size", "2", "-o", "run")
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(m["align_loss"] > 0 for m in metrics)
    spec = yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())
    assert spec["projector"] == {**spec["projector"], "name": "damped", "options": {"init_scale": 0.25}}
    assert spec["vla"]["name"] == "patch-vla" and spec["teacher"]["name"] == "patch-teacher"


@pytest.mark.skipif(not hasattr(hookspecs, "register_commands"), reason="the register_commands hook is not built yet")
def test_a_third_party_command_shows_in_help_and_runs(site: Path, tmp_path: Path) -> None:
    helped = _rocket(site, tmp_path, "--help")
    assert helped.returncode == 0 and "patch-tokens" in helped.stdout, helped.stdout + helped.stderr
    ran = _rocket(site, tmp_path, "patch-tokens", "--cameras", "3")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "patch-vla: 3 cameras x 16 tokens = 48 vision tokens"
