"""`toy`: a simulator-free benchmark (numpy point reaching) to smoke-test a served policy and the eval
machinery anywhere; not a measure of anything."""
from __future__ import annotations

from typing import ClassVar

from rocket_core.contracts import BenchmarkAdapter, Check
from rocket_core.eval.protocol import GripperMap, Protocol


class ToyBenchmark(BenchmarkAdapter):
    name = "toy"
    description = "Simulator-free point reaching (tests, smoke checks of rocket serve); no physics"
    suites: ClassVar[tuple[str, ...]] = ("reach",)
    sim_module = "rocket_plugins.benchmarks.toy_sim"

    @classmethod
    def protocol(cls, suite: str, family: str) -> Protocol:
        cls.check_suite(suite)
        return Protocol(name="toy", benchmark="toy", suite=suite, trials_per_task=4, seed=7, env_seed=0,
                        max_steps=30, wait_steps=2, wait_action=(0.0,) * 7, render_size=32,
                        cameras=("top", "side"), rotate_180=False, resize_size=32, resize_method="lanczos",
                        proprio="position(2)+zeros(6)", open_loop_steps=4, action_dim=7, gripper=GripperMap())

    @classmethod
    def doctor(cls, quick: bool = False) -> list[Check]:
        return [Check("benchmark toy", True, "runs in this Python (numpy only)")]
