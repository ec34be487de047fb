"""Static checks: `ruff check .` and `mypy` (configured in pyproject.toml) pass on the repository.

Marked `static`. Without ruff or mypy installed the test skips, except under CI=true, where a missing tool
fails: CI installs the `dev` extra, which has both. mypy keeps its cache in .mypy_cache (gitignored), so a
warm run takes seconds; a cold one about a minute.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import on_ci

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.static


def _run(tool: str, *args: str) -> None:
    if importlib.util.find_spec(tool) is None:
        if on_ci():
            pytest.fail(f"{tool} is not installed; CI=true requires it (pip install -e '.[dev]')")
        pytest.skip(f"{tool} is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", tool, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"{tool} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


def test_ruff_check_passes() -> None:
    _run("ruff", "check", ".")


def test_mypy_passes() -> None:
    _run("mypy")  # what to check, and how strictly: [tool.mypy] in pyproject.toml
