"""Third-party packages as users install them: broken ones never stop `rocket`, plugin commands show and run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import rocket_core.registry as registry_module
from rocket_cli.main import app
from tests.fake_dist import BROKEN_DISTS, fake_dist
from tests.unit.test_registry import HELLO

REPO = Path(__file__).resolve().parents[2]
DRY_RUN = ["align", "--vla", "openvla", "--teacher", "vggt", "--preset", "tiny", "--dry-run"]
runner = CliRunner()


def _problems(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("problem: ")]


@pytest.mark.parametrize("dist", sorted(BROKEN_DISTS))
def test_each_broken_package_leaves_plugins_and_a_builtin_dry_run_working(
        dist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry_points, modules, expected = BROKEN_DISTS[dist]
    fake_dist(tmp_path, dist, entry_points, modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "_CACHED", None)  # discover again, with the package installed
    try:
        listing = runner.invoke(app, ["plugins"])
        assert listing.exit_code == 0, listing.output
        assert _problems(listing.output) == [f"problem: {expected}"]
        assert "openvla" in listing.output and "vggt" in listing.output
        dry = runner.invoke(app, DRY_RUN)
        assert dry.exit_code == 0, dry.output
        assert "VLA openvla: 4 blocks" in dry.output and "projector rocket" in dry.output
    finally:
        for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
            del sys.modules[name]


@pytest.mark.slow
def test_installed_packages_in_a_fresh_process(tmp_path: Path) -> None:
    """All five broken packages and one command package at once, through `python -m rocket_cli` as a user runs it."""
    for dist, (entry_points, modules, _) in BROKEN_DISTS.items():
        fake_dist(tmp_path, dist, entry_points, modules)
    fake_dist(tmp_path, "rocket-hello", {"rocket.commands": {"hello": "thirdparty_hello"}}, {"thirdparty_hello": HELLO})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]), "COLUMNS": "80"}

    def rocket(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rocket_cli", *args], capture_output=True, text=True, env=env,
                              timeout=300, cwd=tmp_path)

    listing = rocket("plugins")
    assert listing.returncode == 0, listing.stderr
    assert sorted(_problems(listing.stdout)) == sorted(f"problem: {p}" for _, _, p in BROKEN_DISTS.values())
    assert any(line.split()[:3] == ["command", "hello", "rocket-hello"] for line in listing.stdout.splitlines())

    helped = rocket("--help")
    assert helped.returncode == 0 and "Commands from rocket-hello" in helped.stdout
    assert "Greet someone, from a plugin." in helped.stdout
    hello = rocket("hello", "--name", "rocket")
    assert (hello.returncode, hello.stdout) == (0, "hello rocket\n"), hello.stderr

    dry = rocket(*DRY_RUN)
    assert dry.returncode == 0, dry.stderr
    ambiguous = rocket(*DRY_RUN, "--projector", "shared")
    assert ambiguous.returncode == 2
    assert ambiguous.stderr.strip().splitlines() == [
        "error: projector plugin 'shared' is ambiguous: it is registered by built-in (rocket_plugins.projectors.builtin) "
        "and by rocket-duplicate (thirdparty_dup); uninstall or rename one of them"]
