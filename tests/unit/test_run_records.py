"""A run records where its plugins came from, says how to continue, and a resume says from which step (issue 20)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import rocket_core.registry as registry_module
import rocket_plugins.projectors.builtin as builtin_projectors
import tests.toy_plugins as toy
from rocket_core.publish import model_card
from rocket_core.registry import Registry
from tests.robustness.harness import assert_one_line_error, run_rocket

TOY_PACKAGE = ("rocket-toy", "1.2")


def _registry(monkeypatch: pytest.MonkeyPatch, with_toy: bool) -> Registry:
    reg = Registry()
    reg.register_module(builtin_projectors, "built-in (rocket_plugins.projectors.builtin)", ("rocket-vla", "0.1.0"))
    if with_toy:
        reg.register_module(toy, "rocket-toy (tests.toy_plugins)", TOY_PACKAGE)
    monkeypatch.setattr(registry_module, "_CACHED", reg)
    return reg


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One toy step, trained once for the module's tests: (run folder, what `rocket align` printed)."""
    monkeypatch = pytest.MonkeyPatch()
    _registry(monkeypatch, with_toy=True)
    folder = tmp_path_factory.mktemp("records") / "run"
    code, out = run_rocket("align", "--vla", "toy-vla", "--teacher", "toy-teacher", "--max-steps", "1",
                           "--batch-size", "2", "-o", str(folder))
    monkeypatch.undo()
    assert code == 0, out
    return folder, out


def test_the_checkpoint_and_model_card_record_the_plugin_packages(run: tuple[Path, str]) -> None:
    folder, _ = run
    (state,) = folder.glob("checkpoints/*/state.json")
    plugins = json.loads(state.read_text())["plugins"]
    assert plugins["vla"] == {"name": "toy-vla", "package": "rocket-toy", "version": "1.2"}
    assert plugins["projector"] == {"name": "rocket", "package": "rocket-vla", "version": "0.1.0"}
    assert "vla `toy-vla` from rocket-toy 1.2" in model_card(folder)


def test_the_summary_says_what_to_do_next(run: tuple[Path, str]) -> None:
    folder, out = run
    assert f"next: rocket plot {folder} · rocket serve --checkpoint {folder} · rocket push --checkpoint {folder}" in out


def test_a_missing_plugin_names_its_package(run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _registry(monkeypatch, with_toy=False)
    code, out = run_rocket("align", "--resume", str(run[0]), "--max-steps", "2")
    assert_one_line_error(code, out, "unknown vla plugin 'toy-vla': it came from package rocket-toy==1.2; "
                                     "pip install rocket-toy==1.2")


def test_resume_says_from_which_step(run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _registry(monkeypatch, with_toy=True)
    code, out = run_rocket("align", "--resume", str(run[0]), "--max-steps", "3", "--dry-run")
    assert code == 0, out
    assert f"resuming {run[0]} from step 1 of 3" in out
