"""`libero_plus`: LIBERO-Plus robustness variants (placeholder, filled below)."""
from __future__ import annotations

from typing import ClassVar

from plugins.benchmarks.libero import LiberoBenchmark


class LiberoPlusBenchmark(LiberoBenchmark):
    name = "libero_plus"
    description = "LIBERO-Plus: 7 perturbation dimensions over the LIBERO suites"
    sim_module = "plugins.benchmarks.libero_plus_sim"
    env_name: ClassVar[str | None] = "libero_plus"
