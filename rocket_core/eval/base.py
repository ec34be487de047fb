"""The benchmark plugin contract: a simulator run as a client of `rocket serve`.

A benchmark names its suites, pins its protocol presets, says which Python runs its simulator (ours
when its dependencies fit, otherwise an isolated environment that `setup` creates and fills) and which
import-light module (`sim_module`, run by `rocket_core.eval.worker`) lists tasks and makes environments.
`doctor` returns real probes, one line each, with the fix.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from rocket_core import contracts
from rocket_core.errors import RocketError
from rocket_core.eval.envs import IsolatedEnv
from rocket_core.eval.protocol import Protocol

REPO_ROOT = Path(__file__).resolve().parents[2]

# Once `contracts.BenchmarkAdapter` exists (plugin kind "benchmark"), benchmarks subclass it so the
# registry accepts them; until then they are plain plugins found by `find_benchmark`.
_Base: type = getattr(contracts, "BenchmarkAdapter", contracts._Plugin)


@dataclass(frozen=True)
class Check:
    """One `rocket doctor` line."""

    name: str
    ok: bool | None  # None: not applicable / informational
    detail: str
    fix: str = ""


class Benchmark(_Base):  # type: ignore[misc, valid-type]
    """Base class of benchmark plugins."""

    suites: ClassVar[tuple[str, ...]] = ()
    sim_module: ClassVar[str] = ""
    env_name: ClassVar[str | None] = None  # isolated environment name; None: runs in this Python
    setup_hint: ClassVar[str] = ""

    @classmethod
    def protocol(cls, suite: str, family: str) -> Protocol:
        raise NotImplementedError

    @classmethod
    def check_suite(cls, suite: str) -> str:
        if suite not in cls.suites:
            raise RocketError(f"benchmark '{cls.name}' has no suite '{suite}'; suites: {', '.join(cls.suites)}")
        return suite

    @classmethod
    def env(cls) -> IsolatedEnv | None:
        return IsolatedEnv(cls.env_name) if cls.env_name else None

    @classmethod
    def python(cls) -> str:
        env = cls.env()
        if env is None:
            return sys.executable
        if not env.ready():
            raise RocketError(f"benchmark '{cls.name}' is not set up (no environment at {env.path}); "
                              f"run: rocket eval --setup {cls.name}")
        return str(env.python)

    @classmethod
    def worker_env(cls) -> dict[str, str]:
        """Environment variables of a worker process (PYTHONPATH reaches this repository's light modules)."""
        path = os.environ.get("PYTHONPATH", "")
        return {"PYTHONPATH": str(REPO_ROOT) + (os.pathsep + path if path else "")}

    @classmethod
    def setup(cls, log: Callable[[str], None] = print, force: bool = False, assets: bool = False) -> dict[str, Any]:
        """Create and fill what the benchmark needs; returns a summary. Default: nothing to do."""
        return {"benchmark": cls.name, "environment": "this Python"}

    @classmethod
    def doctor(cls, quick: bool = False) -> list[Check]:
        """Probes of this benchmark (`quick`: no simulator start)."""
        return []

    @classmethod
    def group_of(cls, task: dict[str, Any]) -> str | None:
        """The results table a task belongs to besides its suite (LIBERO-Plus: perturbation dimension)."""
        return task.get("group")


def builtin_benchmarks() -> dict[str, type[Benchmark]]:
    """The benchmark plugins of this package (before the registry knows the kind)."""
    from plugins.benchmarks import BENCHMARKS

    return {b.name: b for b in BENCHMARKS}


def find_benchmark(name: str) -> tuple[type[Benchmark], str | None]:
    """`libero` / `libero_spatial` / `libero_plus` ... -> (plugin class, suite or None)."""
    try:
        from rocket_core.registry import KINDS, get_registry

        found = dict(get_registry().plugins.get("benchmark", {})) if "benchmark" in KINDS else {}
        known: dict[str, type[Benchmark]] = {n: r.cls for n, r in found.items()}
    except RocketError:
        known = {}
    for n, b in builtin_benchmarks().items():
        known.setdefault(n, b)
    if name in known:
        return known[name], None
    for bench in sorted(known, key=len, reverse=True):
        if name.startswith(bench + "_") and name[len(bench) + 1:] in known[bench].suites:
            return known[bench], name[len(bench) + 1:]
    options = ", ".join(f"{n} ({'/'.join(b.suites)})" for n, b in sorted(known.items()))
    raise RocketError(f"unknown benchmark '{name}'; available: {options}")
