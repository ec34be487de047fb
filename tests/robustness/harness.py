"""Table-driven hostile-input checks: every row must end in one error line and its exit code, never a traceback.

Each area (CLI/specs, data, checkpoints, serve) keeps its own table in its own test module and runs its rows
through `run_rocket` + `assert_one_line_error`, so every row is checked the same way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from typer.testing import CliRunner


@dataclass(frozen=True)
class Case:
    """One hostile input: `args` for `rocket`, built by `setup(tmp_path)` when it needs files first."""

    id: str
    fragment: str  # a piece of the expected one-line message (case-insensitive)
    args: tuple[str, ...] = ()
    setup: Callable[[Path], tuple[str, ...]] | None = None
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)


def run_rocket(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `rocket ARGS` in-process (fast: torch is imported once) and return (exit code, stdout + stderr)."""
    from rocket_cli.main import app

    old = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)
    finally:
        os.chdir(old)
    text = result.output  # stdout and stderr interleaved, as a terminal shows them
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += f"\nTraceback: {type(result.exception).__name__}: {result.exception}"
    return result.exit_code, text


def assert_one_line_error(code: int, output: str, fragment: str, expected_code: int = 2) -> None:
    """Exit code as expected, one `error:` line holding `fragment`, no traceback."""
    assert "Traceback" not in output, output
    assert code == expected_code, f"exit {code} (expected {expected_code}): {output}"
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line, got: {output!r}"
    assert fragment.lower() in errors[0].lower(), f"{fragment!r} not in {errors[0]!r}"


def check(case: Case, tmp_path: Path) -> None:
    """Run one table row in `tmp_path` and check it; also that nothing was left half-written (`*.tmp`)."""
    args = case.setup(tmp_path) if case.setup is not None else case.args
    code, output = run_rocket(*args, cwd=tmp_path, env=case.env or None)
    if case.code == 2:
        assert_one_line_error(code, output, case.fragment)
    else:
        assert code == case.code and case.fragment.lower() in output.lower(), output
    assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left behind"
