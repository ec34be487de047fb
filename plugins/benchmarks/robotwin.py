"""`robotwin`: RoboTwin 2.0 (placeholder, filled below)."""
from __future__ import annotations

from typing import ClassVar

from rocket_core.eval.base import Benchmark


class RoboTwinBenchmark(Benchmark):
    name = "robotwin"
    description = "RoboTwin 2.0 (50 dual-arm tasks, SAPIEN)"
    suites: ClassVar[tuple[str, ...]] = ("clean", "randomized")
    sim_module = "plugins.benchmarks.robotwin_sim"
    env_name: ClassVar[str | None] = "robotwin"
