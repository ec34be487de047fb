"""Entry point `rocket` -> `benchmarks = "rocket_plugins.benchmarks.plugin"`: the built-in benchmark plugins."""
from __future__ import annotations

from typing import Callable

from rocket_core.hookspecs import hookimpl
from rocket_plugins.benchmarks.blocks import BlocksBenchmark
from rocket_plugins.benchmarks.libero import LiberoBenchmark
from rocket_plugins.benchmarks.libero_plus import LiberoPlusBenchmark
from rocket_plugins.benchmarks.robotwin import RoboTwinBenchmark
from rocket_plugins.benchmarks.toy import ToyBenchmark

BENCHMARKS = (LiberoBenchmark, LiberoPlusBenchmark, RoboTwinBenchmark, ToyBenchmark, BlocksBenchmark)


@hookimpl
def register_benchmarks(register: Callable[[type], None]) -> None:
    for bench in BENCHMARKS:
        register(bench)
