"""Finding a benchmark plugin by the name a user types (`libero`, `libero_spatial`, `libero_plus` ...).

The benchmark contract itself is `rocket_core.contracts.BenchmarkAdapter`; benchmarks, built-in or
third-party, come only through the registry.
"""
from __future__ import annotations

from rocket_core.contracts import BenchmarkAdapter
from rocket_core.errors import RocketError


def installed_benchmarks() -> dict[str, type[BenchmarkAdapter]]:
    """Every registered benchmark plugin by name."""
    from rocket_core.registry import get_registry

    return {n: r.cls for n, r in get_registry().plugins["benchmark"].items()}


def find_benchmark(name: str) -> tuple[type[BenchmarkAdapter], str | None]:
    """`libero` / `libero_spatial` / `libero_plus` ... -> (plugin class, suite or None)."""
    known = installed_benchmarks()
    if name in known:
        return known[name], None
    for bench in sorted(known, key=len, reverse=True):
        if name.startswith(bench + "_") and name[len(bench) + 1:] in known[bench].suites:
            return known[bench], name[len(bench) + 1:]
    from rocket_core.registry import suggestion

    options = ", ".join(f"{n} ({'/'.join(b.suites)})" for n, b in sorted(known.items()))
    names = [*known, *(f"{n}_{suite}" for n, b in known.items() for suite in b.suites)]
    raise RocketError(f"unknown benchmark '{name}'{suggestion(name, names)}; available: {options or 'none installed'}")
