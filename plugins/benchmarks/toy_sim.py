"""Simulator of the `toy` benchmark: a point moved by actions[:2] (x 0.1) must reach a goal (numpy only)."""
from __future__ import annotations

from typing import Any

import numpy as np

from rocket_core.eval.protocol import Protocol
from rocket_core.eval.rollout import prepare_image

TASKS = [("reach the left corner", (-0.8, -0.8)), ("reach the right corner", (0.8, 0.8)),
         ("reach the centre", (0.0, 0.0))]


def list_tasks(suite: str, protocol: Protocol | None = None) -> list[dict[str, Any]]:
    return [{"index": i, "name": f"reach_{i}", "instruction": text, "num_init_states": 50}
            for i, (text, _) in enumerate(TASKS)]


class ToyEnv:
    def __init__(self, task: int, protocol: Protocol) -> None:
        self.instruction, goal = TASKS[task]
        self.goal = np.asarray(goal)
        self.protocol = protocol
        self.task = task
        self.pos = np.zeros(2)

    def reset(self, episode_index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.protocol.env_seed, self.task, episode_index])
        self.pos = rng.uniform(-1, 1, size=2)
        return self._obs()

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], bool]:
        self.pos = np.clip(self.pos + 0.1 * np.asarray(action[:2], dtype=np.float64), -1, 1)
        return self._obs(), bool(np.linalg.norm(self.pos - self.goal) < 0.1)

    def _obs(self) -> dict[str, Any]:
        size = self.protocol.render_size
        img = np.zeros((size, size, 3), np.uint8)
        for (x, y), colour in ((self.pos, (255, 0, 0)), (self.goal, (0, 255, 0))):
            r, c = int((y + 1) / 2 * (size - 1)), int((x + 1) / 2 * (size - 1))
            img[max(r - 1, 0): r + 2, max(c - 1, 0): c + 2] = colour
        return {"top": img, "side": img[:, ::-1].copy(), "pos": self.pos.copy()}

    def policy_observation(self, obs: dict[str, Any]) -> dict[str, Any]:
        images = [prepare_image(obs[c], self.protocol) for c in self.protocol.cameras]
        return {"images": images, "state": np.concatenate([obs["pos"], np.zeros(6)]).astype(np.float32)}

    def frame(self, obs: dict[str, Any]) -> np.ndarray:
        return obs["top"]

    def close(self) -> None:
        pass


def make_env(suite: str, task: int, protocol: Protocol) -> ToyEnv:
    return ToyEnv(task, protocol)
