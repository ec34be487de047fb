"""The built wheel as a user installs it: only `rocket*` import names, and the quickstart runs from elsewhere.

A fresh venv sees the packages of the interpreter running the tests (a `.pth` file lists its site folders, so no
torch download, inside a virtualenv or not: `--system-site-packages` would see only the base Python) and gets our
wheel with `--no-deps`; the venv's own copy wins over any editable install of the repository.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a clean copy: an in-place build would package whatever a stale `build/` still holds."""
    source = tmp_path_factory.mktemp("src") / "rocket"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "runs",
                                                                 "__pycache__", ".pytest_cache"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(source)], check=True, capture_output=True, text=True, timeout=300)
    (whl,) = out.glob("rocket_vla-*.whl")
    return whl


def test_wheel_installs_only_rocket_names(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        (top_level,) = [n for n in zf.namelist() if n.endswith(".dist-info/top_level.txt")]
        names = zf.read(top_level).decode().split()
        files = zf.namelist()
    assert sorted(names) == ["rocket_cli", "rocket_core", "rocket_plugins", "rocket_recipes"]
    assert {n.split("/")[0] for n in files} == set(names) | {top_level.split("/")[0]}
    assert "rocket_recipes/openvla-libero-rocket.yaml" in files
    assert "rocket_core/data/bundled/meta/info.json" in files


@pytest.mark.slow
def test_quickstart_runs_from_a_fresh_venv_elsewhere(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    (purelib,) = {Path(p) for p in env_dir.glob("lib/python*/site-packages")}
    ours = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    assert ours, sys.path
    # Plain path lines: the folders' own .pth files (our editable install's import hook) are not run.
    (purelib / "outer.pth").write_text("\n".join(ours) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True,
                   capture_output=True, text=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    res = subprocess.run([str(env_dir / "bin" / "rocket"), "align", "--vla", "openvla", "--teacher", "vggt",
                          "--preset", "tiny", "--max-steps", "2"], cwd=work, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    where = subprocess.run([str(python), "-c", "import rocket_plugins; print(rocket_plugins.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert str(env_dir) in where
    assert list(work.glob("runs/openvla-vggt-*/checkpoints/latest"))
