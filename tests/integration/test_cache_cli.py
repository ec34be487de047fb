"""`rocket cache build`: projected size first, refusal when it does not fit, and the cache it writes is
the one a `rocket align` run of the same spec looks up."""
from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

import rocket_core.registry as registry_module
import rocket_plugins.projectors.builtin as builtin_projectors
import tests.toy_plugins as toy
from rocket_cli.cache import register
from rocket_core.data import VLADataset
from rocket_core.engine import plan_run
from rocket_core.registry import Registry
from rocket_core.specs import build_spec
from rocket_core.train.cache import TeacherCache
from rocket_core.train.trainer import data_spec_for

runner = CliRunner()
Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    reg = Registry()
    reg.register_module(toy, "toy (tests.toy_plugins)")
    reg.register_module(builtin_projectors, "built-in (rocket_plugins.projectors.builtin)")
    monkeypatch.setattr(registry_module, "_CACHED", reg)
    local = typer.Typer()
    register(local)
    return local


def _build(app: typer.Typer, root: Path, *extra: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["cache", "build", "--teacher", "toy-teacher", "--layers", "0,1,-1", "--limit", "6",
                               "--dtype", "fp32", "--cache-dir", str(root), "--no-progress", *extra])


def test_prints_the_projected_size_and_refuses_what_does_not_fit(app: typer.Typer, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 5000, 5000))
    result = _build(app, tmp_path / "cache")
    assert result.exit_code == 2, result.output
    # 3 layers x 2 cameras x 36 patches x 16 channels x 4 bytes = 13824 bytes + 512 header bound per sample
    assert "projected size: 6 samples x 14.3 kB = 86.0 kB (6 to compute, 86.0 kB to write)" in result.output
    assert "needs 86.0 kB but only 5.0 kB is free" in result.output and "Traceback" not in result.output
    assert result.output.index("projected size") < result.output.index("error:")
    assert not (tmp_path / "cache").exists()


def test_builds_the_cache_a_run_of_the_same_spec_finds(app: typer.Typer, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    result = _build(app, root)
    assert result.exit_code == 0, result.output
    assert "done: 6 computed, 0 already cached, 0 corrupt" in result.output
    again = _build(app, root)
    assert "(0 to compute" in again.output and "done: 0 computed, 6 already cached" in again.output

    spec = build_spec(None, {"vla": {"name": "toy-vla"}, "teacher": {"name": "toy-teacher"}, "projector": {"name": "rocket"}})  # augmenting: grids
    plan = plan_run(spec)
    cache = TeacherCache.for_run(plan, VLADataset(data_spec_for(plan), seed=7), root, dtype="fp32")
    assert cache.layout.kind == "grid" and all(cache.store.exists(r) for r in range(6))
    assert f"cache {cache.store.dir}" in result.output.replace("\n", "")

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"vla": {"name": "toy-vla"}, "teacher": {"name": "toy-teacher"}}))
    by_config = runner.invoke(app, ["cache", "build", "--config", str(config), "--limit", "6", "--dtype", "fp32",
                                    "--cache-dir", str(root), "--no-progress"])
    assert by_config.exit_code == 0, by_config.output
    assert "done: 0 computed, 6 already cached" in by_config.output


def test_pooled_build_and_bad_input(app: typer.Typer, tmp_path: Path) -> None:
    result = _build(app, tmp_path, "--tokens", "32", "--dtype", "fp16")
    assert result.exit_code == 0, result.output
    assert "pooled targets [3, 32, 16] fp16" in result.output.replace("\n", " ")
    bad = runner.invoke(app, ["cache", "build", "--teacher", "toy-teacher", "--layers", "0,7", "--cache-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "layer 7 is out of range" in bad.output
    none = runner.invoke(app, ["cache", "build", "--teacher", "toy-teacher", "--cache-dir", str(tmp_path)])
    assert none.exit_code == 2 and "pass --layers" in none.output
