"""`rocket eval --setup X` asks first (issue 15, point 6): system packages are listed, installed only with --yes."""
from __future__ import annotations

import os
import subprocess
from typing import Any, Callable

import pytest
import typer
from typer.testing import CliRunner

from rocket_core.eval import envs
from rocket_core.eval.envs import apt_install, install_steps, system_installs

SUDO = "" if os.geteuid() == 0 else "sudo "


@pytest.fixture
def debian(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """A Debian machine where libfoo is missing; records every command that would change the system."""
    ran: list[list[str]] = []
    monkeypatch.setattr(envs.shutil, "which", lambda name: f"/usr/bin/{name}" if name in ("dpkg-query", "sudo") else None)

    def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
        if cmd[0] == "dpkg-query":
            installed = cmd[-1] != "libfoo"
            return subprocess.CompletedProcess(cmd, 0 if installed else 1, "install ok installed" if installed else "", "")
        ran.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(envs.subprocess, "run", run)
    return ran


def test_without_yes_the_command_is_printed_and_nothing_installed(debian: list[list[str]]) -> None:
    lines: list[str] = []
    apt_install(["libbar", "libfoo"], lines.append)
    assert debian == []
    assert lines == ["system packages needed: libfoo",
                     f"not installing them without --yes; to install them yourself run: {SUDO}apt-get update -qq && "
                     f"{SUDO}apt-get install -y --no-install-recommends libfoo"]


def test_with_yes_they_are_installed(debian: list[list[str]]) -> None:
    with system_installs(True):
        apt_install(["libbar", "libfoo"], lambda m: None)
    assert [c[c.index("apt-get"):] for c in debian if "apt-get" in c] == [
        ["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "--no-install-recommends", "libfoo"]]
    debian.clear()
    apt_install(["libfoo"], lambda m: None)  # the permission ends with the block
    assert debian == []


def test_dnf_line_uses_fedora_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envs.shutil, "which", lambda name: f"/usr/bin/{name}" if name in ("dnf", "rpm") else None)
    monkeypatch.setattr(envs.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", ""))
    assert install_steps(["libosmesa6", "libvulkan1"]) == (
        ["mesa-libOSMesa", "vulkan-loader"], [["dnf", "install", "-y", "mesa-libOSMesa", "vulkan-loader"]])


def test_eval_setup_cli_passes_yes(debian: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    import rocket_core.eval.base as base
    from rocket_cli import eval as eval_cmd

    class Bench:
        name = "fake"

        @classmethod
        def setup(cls, log: Callable[[str], None], force: bool, assets: bool) -> dict[str, Any]:
            apt_install(["libfoo"], log)
            log("python part done")
            return {"environment": "here"}

    monkeypatch.setattr(base, "find_benchmark", lambda name: (Bench, None))
    app = typer.Typer()
    eval_cmd.register(app)

    @app.callback()
    def _cb() -> None:
        pass

    asked = CliRunner().invoke(app, ["eval", "--setup", "fake"])
    assert asked.exit_code == 0, asked.output
    assert "system packages needed: libfoo" in asked.output and "not installing them without --yes" in asked.output
    assert "python part done" in asked.output and debian == []
    agreed = CliRunner().invoke(app, ["eval", "--setup", "fake", "--yes"])
    assert agreed.exit_code == 0 and any("install" in c for c in debian)
