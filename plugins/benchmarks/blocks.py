"""`blocks`: the bundled dataset's pick-and-place world as a closed-loop benchmark (numpy + PIL, this
Python). A policy trained on the bundled data (or on `rocket eval --benchmark blocks --policy expert
--record` demos) is evaluated on held-out scenes: the protocol's seed differs from the bundled dataset's."""
from __future__ import annotations

from typing import ClassVar

from rocket_core.contracts import BenchmarkAdapter, Check
from rocket_core.eval.protocol import GripperMap, Protocol

BUNDLED_SEED = 0  # scenes of rocket_core/data/bundled (scripts/make_bundled_dataset.py)
EVAL_SEED = 1000  # scenes of the pinned protocol; record demos with any other --seed


class BlocksBenchmark(BenchmarkAdapter):
    name = "blocks"
    description = "The bundled dataset's pick-and-place world (PIL cameras, scripted expert); CPU, seconds"
    suites: ClassVar[tuple[str, ...]] = ("pick_place",)
    sim_module = "rocket_plugins.benchmarks.blocks_world"
    checkpoint_conventions = True  # commands -1 open / +1 close, frames stored as rendered
    expert = True

    @classmethod
    def protocol(cls, suite: str, family: str) -> Protocol:
        """12 tasks (block colour x plate colour) x 5 scenes; the expert needs at most 86 steps."""
        cls.check_suite(suite)
        return Protocol(name="blocks", benchmark="blocks", suite=suite, trials_per_task=5, seed=EVAL_SEED,
                        env_seed=0, max_steps=120, wait_steps=0, render_size=128, cameras=("image", "wrist_image"),
                        rotate_180=False, resize_size=128, resize_method="lanczos",
                        proprio="eef_pos+axis_angle+gripper_qpos", open_loop_steps=4, action_dim=7,
                        gripper=GripperMap(),
                        notes="scene of episode k of task t: numpy default_rng([seed, t, k]); env_seed unused")

    @classmethod
    def doctor(cls, quick: bool = False) -> list[Check]:
        return [Check("benchmark blocks", True, "runs in this Python (numpy + PIL)")]
