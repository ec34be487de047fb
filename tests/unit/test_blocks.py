"""The `blocks` benchmark (issue 21): the bundled dataset's world in closed loop.

The scripted expert must succeed on every scene (protocol seeds and others), a random policy must not; the
grasp and release rules hold at their edges; `rocket eval --policy expert --record` writes exactly the frames,
states and actions the episodes produced; and the bundled dataset is the expert's episodes under its seed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rocket_core.data import LeRobotReader, bundled_dataset_path
from rocket_core.eval.protocol import Protocol
from rocket_core.eval.rollout import run_episode
from rocket_core.eval.worker import local_policy
from rocket_plugins.benchmarks import blocks_world as world
from rocket_plugins.benchmarks.blocks import BUNDLED_SEED, EVAL_SEED, BlocksBenchmark
from tests.robustness.harness import run_rocket

PROTOCOL = BlocksBenchmark.protocol("pick_place", "")


def _success_rate(protocol: Protocol, policy: str, tasks: range = range(len(world.TASKS))) -> float:
    """Success over `tasks` x the protocol's trials, in-process, with a worker-side policy."""
    wins = []
    for task in tasks:
        env = world.BlocksEnv(task, protocol)
        for ep in range(protocol.trials_per_task):
            infer = local_policy(policy, env, protocol.action_dim, [protocol.seed, task, ep, 1])
            wins.append(run_episode(env, infer, protocol, ep)["success"])
    return float(np.mean(wins))


def test_protocol_is_pinned_on_held_out_scenes() -> None:
    assert (PROTOCOL.seed, PROTOCOL.trials_per_task, PROTOCOL.max_steps, PROTOCOL.wait_steps) == (EVAL_SEED, 5, 120, 0)
    assert EVAL_SEED != BUNDLED_SEED
    assert PROTOCOL.cameras == world.CAMERAS and PROTOCOL.resize_size == PROTOCOL.render_size == world.SIZE
    assert [t["instruction"] for t in world.list_tasks("pick_place")][:2] == [
        "put the red block on the green plate", "put the red block on the blue plate"]


@pytest.mark.parametrize("seed", [EVAL_SEED, 0, 1, 987654321])
def test_the_expert_succeeds_on_every_scene(seed: int) -> None:
    assert _success_rate(PROTOCOL.replace(seed=seed), "expert") == 1.0


def test_a_random_policy_almost_never_succeeds() -> None:
    """Measured: 0 of the protocol's 60 episodes. A grasp needs the gripper to close within 0.06 of a block
    and 0.1 above the table, then open over the plate: a random walk of 120 steps rarely does both."""
    assert _success_rate(PROTOCOL, "random") <= 0.05


def _world_over_target(z: float, offset: float = 0.0) -> world.World:
    w = world.sample_world(np.random.default_rng(3), task=0)
    w.pos = np.array([*(w.blocks[w.target] + [offset, 0.0]), z])
    return w


def _act(w: world.World, move: tuple[float, float, float] = (0.0, 0.0, 0.0), grip: float = -1.0) -> bool:
    return world.step(w, np.array([*move, 0.0, 0.0, 0.0, grip]))


def test_a_grasp_needs_the_gripper_low_and_over_the_block() -> None:
    too_high = _world_over_target(world.GRASP_HEIGHT + 0.02)
    _act(too_high, grip=1.0)
    off_block = _world_over_target(world.GRASP_Z, offset=world.GRASP_RADIUS + 0.02)
    _act(off_block, grip=1.0)
    assert too_high.held is None and off_block.held is None
    for _ in range(5):
        _act(off_block, grip=1.0)
    assert off_block.opening == 0.0  # closed on nothing: the fingers shut completely

    already_closed = _world_over_target(world.HIGH_Z)  # closing high, then coming down closed, catches nothing
    _act(already_closed, grip=1.0)
    while already_closed.pos[2] > world.GRASP_Z:
        _act(already_closed, (0.0, 0.0, -1.0), grip=1.0)
    assert already_closed.held is None

    good = _world_over_target(world.GRASP_HEIGHT, offset=world.GRASP_RADIUS - 0.01)
    _act(good, grip=1.0)
    assert good.held == good.target
    for _ in range(4):
        _act(good, (0.5, 0.0, 1.0), grip=1.0)  # carried along; the fingers stop on the block
    np.testing.assert_allclose(good.blocks[good.target], good.pos[:2])
    assert good.opening == pytest.approx(world.FINGER_CLOSED)


def test_only_the_target_released_over_the_plate_succeeds() -> None:
    w = _world_over_target(world.GRASP_Z)
    _act(w, grip=1.0)
    lifted = w.pos.copy()
    assert not _act(w, (0.0, 0.0, 1.0), grip=-1.0)  # released off the plate: dropped, no success
    assert w.held is None and np.allclose(w.blocks[w.target], lifted[:2])

    other = world.sample_world(np.random.default_rng(3), task=0)
    wrong = 1 - other.target
    other.pos = np.array([*other.blocks[wrong], world.GRASP_Z])
    _act(other, grip=1.0)
    assert other.held == wrong
    other.pos = np.array([*other.plate_xy, world.PLACE_Z])
    assert not _act(other, grip=-1.0) and other.held is None  # the other block on the plate is no success

    w.pos = np.array([*w.blocks[w.target], world.GRASP_Z])
    _act(w, grip=-1.0)
    _act(w, grip=1.0)
    edge = w.plate_xy + [world.PLATE_RADIUS - 0.01, 0.0]
    w.pos = np.array([*edge, world.PLACE_Z])
    assert _act(w, grip=-1.0) and w.success  # the target released within the plate's radius


def test_actions_are_clipped_to_the_workspace() -> None:
    w = _world_over_target(world.HIGH_Z)
    for _ in range(40):
        _act(w, (1.0, -1.0, 1.0))
    np.testing.assert_allclose(w.pos, [world.WORKSPACE[1, 0], world.WORKSPACE[0, 1], world.WORKSPACE[1, 2]])


def test_the_bundled_dataset_is_the_expert_under_its_seed() -> None:
    """Compared as data (decoded frames, float32 state and action, tasks, episode bounds), not as file bytes:
    PNG and parquet bytes depend on the zlib/pyarrow versions, what training reads does not."""
    reader = LeRobotReader(bundled_dataset_path())
    episodes = world.expert_episodes(PROTOCOL.replace(seed=BUNDLED_SEED), reader.num_episodes)
    cameras = [f"observation.images.{c}" for c in world.CAMERAS]
    for e, episode in enumerate(episodes):
        lo, hi = reader.episode_bounds(e)
        assert hi - lo == len(episode["steps"]) and reader.task(lo) == episode["task"]
        rows = np.arange(lo, hi)
        for slot, camera in enumerate(cameras):
            assert np.array_equal(reader.frames(camera, rows), np.stack([s["images"][slot] for s in episode["steps"]]))
        states = np.stack([s["state"] for s in episode["steps"]]).astype(np.float32)
        actions = np.stack([s["action"] for s in episode["steps"]]).astype(np.float32)
        assert np.array_equal(reader.column("observation.state")[lo:hi], states)
        assert np.array_equal(reader.column("action")[lo:hi], actions)


@pytest.mark.sim
def test_eval_expert_records_exactly_what_the_episodes_produced(tmp_path: Path) -> None:
    """`rocket eval --benchmark blocks --policy expert --record`: success 1.0 in results.json; the recording
    holds each step's frames, state and action bit for bit, and `rocket data inspect` / `align` read it."""
    record, out = tmp_path / "demos", tmp_path / "eval"
    code, text = run_rocket("eval", "--benchmark", "blocks", "--policy", "expert", "--seed", "5", "--tasks", "0,7",
                            "--episodes", "0,1", "--videos", "none", "--no-progress", "--record", str(record),
                            "-o", str(out))
    assert code == 0, text
    assert json.loads((out / "results.json").read_text())["overall"] == {"episodes": 4, "successes": 4,
                                                                        "success_rate": 1.0}
    reader = LeRobotReader(record)
    assert reader.num_episodes == 4
    protocol = PROTOCOL.replace(seed=5)
    for e, (task, ep) in enumerate([(0, 0), (0, 1), (7, 0), (7, 1)]):
        env = world.BlocksEnv(task, protocol)
        steps = run_episode(env, env.expert, protocol, ep, trace=True)["trace"]
        lo, hi = reader.episode_bounds(e)
        assert hi - lo == len(steps) and reader.task(lo) == env.instruction
        for slot, camera in enumerate(world.CAMERAS):
            assert np.array_equal(reader.frames(camera, np.arange(lo, hi)), np.stack([s["images"][slot] for s in steps]))
        assert np.array_equal(reader.column("state")[lo:hi], np.stack([s["state"] for s in steps]).astype(np.float32))
        assert np.array_equal(reader.column("actions")[lo:hi], np.stack([s["action"] for s in steps]).astype(np.float32))
    code, text = run_rocket("data", "inspect", str(record))
    assert code == 0 and "put the blue block on the green plate" in text, text
    code, text = run_rocket("align", "--preset", "tiny", "--dry-run", "--data", str(record), cwd=tmp_path)
    assert code == 0, text
