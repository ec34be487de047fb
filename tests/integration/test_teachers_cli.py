"""`rocket teacher preview` and `rocket pull`, through a local typer app (as cli/main.py will mount them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from rocket_cli import pull, teacher
from tests.conftest import SHARED_FIXTURES, fixture_dir

FIXTURE = fixture_dir("ROCKET_VGGT_FIXTURE", SHARED_FIXTURES / "vggt" / "tiny")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    teacher.register(app)
    pull.register(app)
    return app


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        path = tmp_path / f"frame{i}.png"
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _check_png(path: Path) -> None:
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 600  # 2 rows x 3 panels
    assert pixels.std() > 20  # not blank: inputs, colour maps and labels are drawn
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500


@pytest.mark.parametrize("source", ["preset", pytest.param("checkpoint", marks=pytest.mark.fixture)])
def test_vggt_teacher_preview_writes_png(app: typer.Typer, images: list[str], tmp_path: Path, source: str) -> None:
    if source == "checkpoint" and not (FIXTURE / "model.safetensors").is_file():
        pytest.skip(f"no VGGT fixture at {FIXTURE}")
    flags = ["--preset", "tiny"] if source == "preset" else ["--checkpoint", str(FIXTURE)]
    out = tmp_path / "preview.png"
    result = CliRunner().invoke(app, ["teacher", "preview", "--teacher", "vggt", "--images", *images, "-o", str(out), *flags])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    _check_png(out)


def test_vggt_teacher_preview_errors_are_one_line(app: typer.Typer, images: list[str], tmp_path: Path) -> None:
    runner = CliRunner()
    out = str(tmp_path / "x.png")
    odd = tmp_path / "odd.png"
    Image.new("RGB", (30, 20)).save(odd)
    cases = [
        (["--images", images[0], str(odd), "-o", out, "--preset", "tiny"], "images differ in size"),
        (["--images", str(tmp_path / "none.png"), "-o", out, "--preset", "tiny"], "does not exist"),
        (["--images", images[0], "-o", out, "--teacher", "dinov2", "--preset", "tiny"], "no depth head"),
        (["--images", images[0], "-o", out, "--checkpoint", str(tmp_path / "nope")], "does not exist"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["teacher", "preview", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not Path(out).exists()


def test_teachers_pull_resolves_plugin_names_and_repo_ids(app: typer.Typer, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    commit = "c" * 40
    repo = tmp_path / "models--facebook--VGGT-1B"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    assert pull.pull_target("vggt") == ("facebook/VGGT-1B", ("model.safetensors", "config.json"))
    assert pull.pull_target("dinov2")[0] == "facebook/dinov2-base"
    assert pull.pull_target("someone/model") == ("someone/model", None)
    assert pull.pull_target("hf://someone/model") == ("someone/model", None)

    runner = CliRunner()
    result = runner.invoke(app, ["pull", "vggt"])  # cached: offline pull succeeds and names the folder
    assert result.exit_code == 0, result.output
    assert "facebook/VGGT-1B" in result.output and commit in result.output.replace("\n", "")
    result = runner.invoke(app, ["pull", "vggt", "--revision", "v2"])
    assert result.exit_code == 2 and "cannot download 'facebook/VGGT-1B' at revision 'v2'" in result.output
    assert "rocket pull" not in result.output and "set HF_HUB_OFFLINE=0" in result.output  # not what just failed
    result = runner.invoke(app, ["pull", "no-such-plugin"])
    assert result.exit_code == 2 and "neither a plugin with default weights" in result.output
