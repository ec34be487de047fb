"""The CLI starts without torch: importing `rocket_cli.main`, `rocket --help` and `rocket X --help` (issue 15).

Each probe runs in a fresh interpreter and reports which heavy packages ended up in `sys.modules`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rocket_cli.main import BUILTIN_COMMANDS
from tests.fake_dist import fake_dist

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import contextlib, io, sys
if sys.argv[1:]:
    from rocket_cli.main import app
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            app(sys.argv[1:])
        except SystemExit as exc:
            assert not exc.code, f"exit {exc.code}"
else:
    import rocket_cli.main
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers"})))
"""
def heavy_modules(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env,
                            timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_cli_main_imports_no_torch() -> None:
    assert heavy_modules() == ""


def test_rocket_help_imports_no_torch() -> None:
    assert heavy_modules("--help") == ""


def test_rocket_version_imports_no_torch() -> None:
    assert heavy_modules("--version") == ""


@pytest.mark.parametrize("command", list(BUILTIN_COMMANDS))
def test_command_help_imports_no_torch(command: str) -> None:
    assert heavy_modules(command, "--help") == ""


@pytest.mark.parametrize("group,command", [("profile", "cka"), ("cache", "build"), ("data", "inspect"),
                                           ("plugins", "check"), ("teacher", "preview")])
def test_subcommand_help_imports_no_torch(group: str, command: str) -> None:
    assert heavy_modules(group, command, "--help") == ""


def test_a_command_module_that_imports_torch_is_reported(tmp_path: Path) -> None:
    """Command modules load for `--help` and every plugin command: importing torch there is a listed problem."""
    fake_dist(tmp_path, "rocket-heavy", {"rocket.commands": {"heavy": "thirdparty_heavy"}}, {"thirdparty_heavy": """
        import torch
        from rocket_core import hookimpl

        @hookimpl
        def register_commands(cli):
            pass
        """})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    probe = "from rocket_cli.main import plugin_commands; print([p.line() for p in plugin_commands()[0].problems])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str([
        "rocket-heavy (thirdparty_heavy): imports torch when loaded, which slows `rocket --help` and every plugin "
        "command; import it inside the command function"])


@pytest.mark.slow
def test_plugins_listing_reads_only_metadata() -> None:
    """`rocket plugins` lists every built-in without importing torch; `--shapes` is what loads model code."""
    assert heavy_modules("plugins") == ""
    assert "torch" in heavy_modules("plugins", "--shapes")


def test_builtin_plugin_modules_import_without_torch() -> None:
    """Listing plugins costs metadata only: every built-in entry-point module loads without torch/transformers."""
    from importlib.metadata import entry_points

    modules = sorted({ep.value for ep in entry_points(group="rocket")} | {
        "rocket_plugins.vla.openvla", "rocket_plugins.vla.pi0", "rocket_plugins.vla.pi05",
        "rocket_plugins.teachers.vggt", "rocket_plugins.teachers.hf",
        "rocket_plugins.projectors.builtin", "rocket_plugins.benchmarks.plugin"})
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "from rocket_core.registry import load_registry\n"
            "assert len(load_registry().records()) >= 14\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing plugin modules pulled in {result.stdout.strip()}"
