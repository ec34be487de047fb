"""Benchmark plugins (`rocket eval`). Import-light: simulator modules (`*_sim.py`) run inside the
benchmarks' own environments, so this package imports nothing heavy; `plugin` registers the classes."""
from __future__ import annotations


def __getattr__(name: str):  # BENCHMARKS on demand, so `plugins.benchmarks.libero_sim` stays light
    if name == "BENCHMARKS":
        from plugins.benchmarks.plugin import BENCHMARKS

        return BENCHMARKS
    raise AttributeError(name)
