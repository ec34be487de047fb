"""The `blocks` world: two coloured blocks and a plate on a table, a gripper moved by 7-D actions, two
PIL-rendered cameras and a scripted expert (numpy + PIL only: it is also the benchmark's simulator module).

It is the world of the bundled dataset (scripts/make_bundled_dataset.py records the expert here), so a
policy trained on that data sees the same frames, state and action units in closed loop.

Kinematics, one step per action: the end effector moves by action[:3] * MAX_STEP, clipped to WORKSPACE;
the rotation dims are ignored (the gripper keeps pointing down); action[6] > 0 closes the gripper, <= 0
opens it. Closing an open gripper grasps the nearest block if the gripper is at most GRASP_HEIGHT above the
table and its centre within GRASP_RADIUS of the block's; a grasped block moves with the gripper and opening
drops it on the table below. Releasing the task's block within PLATE_RADIUS of the plate's centre is the
success (it ends the episode). The fingers follow the last command by FINGER_SPEED a step, stopping on a
grasped block at FINGER_CLOSED.
State (8-D, LIBERO layout): end-effector xyz, axis-angle orientation (3), the two finger positions.
Cameras (SIZE x SIZE): a fixed top-down view of [-1.2, 1.2]^2 (height shown by size and a ground shadow)
and a wrist view centred on the gripper (zoom grows as it descends); `geometry` gives each frame's ground-truth
depth and world point maps (what the `blocks` VGGT teacher is trained on: scripts/train_blocks_teacher.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from rocket_core.eval.protocol import Protocol
from rocket_core.eval.rollout import prepare_image, run_episode

SIZE = 128  # pixels per side, both cameras
MAX_STEP = 0.08  # world units the gripper moves per step at most (action 1.0)
HIGH_Z, GRASP_Z, PLACE_Z = 0.6, 0.05, 0.15  # the expert's travel, grasp and release heights
WORKSPACE = np.array([[-1.0, -1.0, 0.02], [1.0, 1.0, 0.8]])  # (low, high) corner of the end effector
GRASP_HEIGHT, GRASP_RADIUS = 0.1, 0.06  # a grasp needs z <= GRASP_HEIGHT and xy within GRASP_RADIUS of a block
PLATE_RADIUS, BLOCK_HALF = 0.2, 0.08
FINGER_OPEN, FINGER_CLOSED, FINGER_SPEED = 0.04, 0.012, 0.01  # finger position: open, on a block; per step
ORIENTATION = (np.pi, 0.0, 0.0)  # gripper pointing down
TOLERANCE = 1e-6  # the expert's "arrived"
COLORS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (230, 200, 30)}
TABLE, SHADOW, FINGER = (196, 176, 146), (120, 105, 85), (60, 60, 60)
CAMERAS = ("image", "wrist_image")
STATE_NAMES = ["x", "y", "z", "ax", "ay", "az", "finger_left", "finger_right"]
ACTION_NAMES = ["dx", "dy", "dz", "dax", "day", "daz", "gripper"]
TASKS = [(block, plate) for block in COLORS for plate in COLORS if plate != block]  # (block colour, plate colour)


def instruction(task: int) -> str:
    block, plate = TASKS[task]
    return f"put the {block} block on the {plate} plate"


@dataclass
class World:
    """The full state of one episode (what the expert reads; a policy sees only `observe`)."""

    colors: tuple[str, str]  # of the two blocks
    target: int  # the block the task names
    plate_color: str
    plate_xy: np.ndarray
    pos: np.ndarray  # end effector xyz
    blocks: np.ndarray  # (2, 2) block centres on the table (a held one: under the gripper)
    opening: float = FINGER_OPEN
    closed: bool = False  # the last gripper command
    held: int | None = None
    success: bool = False


def sample_world(rng: np.random.Generator, task: int) -> World:
    """The task's block, another of a third colour, the plate and a start pose, all at least 0.45 apart."""
    block, plate = TASKS[task]
    other = str(rng.choice([c for c in COLORS if c not in (block, plate)]))
    while True:
        points = rng.uniform(-0.85, 0.85, size=(4, 2))
        gaps = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(4) * 9
        if gaps.min() > 0.45:
            break
    target = int(rng.integers(2))
    colors = (block, other) if target == 0 else (other, block)
    return World(colors, target, plate, points[2].copy(), np.array([*points[3], HIGH_Z]), points[:2].copy())


def _grasped(world: World) -> int | None:
    """The block a closing gripper catches here, if any."""
    if world.pos[2] > GRASP_HEIGHT:
        return None
    gaps = np.linalg.norm(world.blocks - world.pos[:2], axis=1)
    nearest = int(np.argmin(gaps))
    return nearest if gaps[nearest] <= GRASP_RADIUS else None


def step(world: World, action: np.ndarray) -> bool:
    """Apply one 7-D action to `world` (in place): move, then close (grasp) or open (release); returns success."""
    action = np.asarray(action, dtype=np.float64)
    world.pos = np.clip(world.pos + action[:3] * MAX_STEP, WORKSPACE[0], WORKSPACE[1])
    close = bool(action[6] > 0)
    if world.held is not None:
        world.blocks[world.held] = world.pos[:2]
        if not close:
            released, world.held = world.held, None
            over_plate = float(np.linalg.norm(world.pos[:2] - world.plate_xy)) <= PLATE_RADIUS
            world.success = released == world.target and over_plate
    elif close and not world.closed:
        world.held = _grasped(world)
    world.closed = close
    goal = (FINGER_CLOSED if world.held is not None else 0.0) if close else FINGER_OPEN
    world.opening = float(world.opening + np.clip(goal - world.opening, -FINGER_SPEED, FINGER_SPEED))
    return world.success


def _move(world: World, goal: Any, grip: float) -> np.ndarray:
    """The action heading for `goal` at most MAX_STEP per step, with gripper command `grip`."""
    delta = np.asarray(goal, dtype=np.float64) - world.pos
    delta *= min(1.0, MAX_STEP / max(float(np.linalg.norm(delta)), 1e-12))
    return np.array([*(delta / MAX_STEP), 0.0, 0.0, 0.0, grip])


def expert_action(world: World) -> np.ndarray:
    """The scripted expert's next action, read off the world's state (closed loop): up to HIGH_Z, over the
    block, down, close until the fingers settle, up, over the plate, down to PLACE_Z, open."""
    holding = world.held == world.target
    if world.held is not None and not holding:
        return _move(world, world.pos, -1.0)  # let go of the wrong block
    if holding and world.opening > FINGER_CLOSED + TOLERANCE:
        return _move(world, world.pos, 1.0)  # the fingers are still closing on the block
    xy, low, grip = (world.plate_xy, PLACE_Z, 1.0) if holding else (world.blocks[world.target], GRASP_Z, -1.0)
    if np.linalg.norm(world.pos[:2] - xy) > TOLERANCE:
        climbing = world.pos[2] < HIGH_Z - TOLERANCE
        return _move(world, [*world.pos[:2], HIGH_Z] if climbing else [*xy, HIGH_Z], grip)
    if world.pos[2] > low + TOLERANCE:
        return _move(world, [*xy, low], grip)
    if world.closed and not holding:
        return _move(world, world.pos, -1.0)  # closed on nothing: open before grasping
    return _move(world, world.pos, -grip)  # at the bottom: close on the block, or open over the plate


# What the cameras see, for the depth and point maps (`geometry`). The heights are this module's choice (render
# shows height only by size): blocks are cubes; a held block keeps the offset from the gripper at which the expert
# grasps it; the fingers stand at their tips' height (the end effector's z); the shadow lies on the table.
TOP_CAMERA_Z = 2.0  # the fixed top-down camera: orthographic, looking down from this height
WRIST_ABOVE = 1 / 3  # wrist camera height above the end effector: a 0.6 half-width per unit of depth gives 0.2 + 0.6 z
PLATE_Z, BLOCK_HEIGHT = 0.01, 2 * BLOCK_HALF  # plate top and block top above the table (z = 0)


@dataclass(frozen=True)
class _Shape:
    """One filled PIL primitive of a frame (pixel box) and the height of its top surface."""

    ellipse: bool
    box: tuple[float, float, float, float]
    color: tuple[int, int, int]
    z: float


def _square(center: tuple[float, float], half: float, color: tuple[int, int, int], z: float) -> _Shape:
    return _Shape(False, (center[0] - half, center[1] - half, center[0] + half, center[1] + half), color, z)


def _view(world: World, wrist: bool) -> tuple[float, np.ndarray]:
    """The camera's half-width on the table and its centre (x, y)."""
    return (0.2 + 0.6 * float(world.pos[2]), world.pos[:2]) if wrist else (1.2, np.zeros(2))


def _shapes(world: World, wrist: bool) -> list[_Shape]:
    """Everything drawn over the table, in paint order: one list for both the RGB frame and the geometry."""
    pos = world.pos
    half_view, center = _view(world, wrist)
    scale = SIZE / (2 * half_view)

    def to_px(xy: np.ndarray) -> tuple[float, float]:
        return (xy[0] - center[0]) * scale + SIZE / 2, (center[1] - xy[1]) * scale + SIZE / 2

    px, py = to_px(world.plate_xy)
    radius = PLATE_RADIUS * scale
    shapes = [_Shape(True, (px - radius, py - radius, px + radius, py + radius), COLORS[world.plate_color], PLATE_Z)]
    for i, (color, xy) in enumerate(zip(world.colors, world.blocks)):
        if i != world.held:
            shapes.append(_square(to_px(xy), BLOCK_HALF * scale, COLORS[color], BLOCK_HEIGHT))
    held = None if world.held is None else COLORS[world.colors[world.held]]
    held_z = float(pos[2]) + BLOCK_HEIGHT - GRASP_Z
    if wrist:
        if held is not None:  # right under the camera, so larger than blocks on the table
            shapes.append(_square((SIZE / 2, SIZE / 2), BLOCK_HALF * scale * (1 + 0.5 / half_view), held, held_z))
        gap = SIZE * (0.1 + 3 * world.opening)
        for side in (-1, 1):
            x = SIZE / 2 + side * gap
            shapes.append(_Shape(False, (x - SIZE * 0.05, SIZE * 0.7, x + SIZE * 0.05, SIZE), FINGER, float(pos[2])))
        return shapes
    gx, gy = to_px(pos[:2])
    grow = 1 + 0.8 * pos[2]
    shapes.append(_Shape(True, (gx - 0.07 * scale, gy - 0.07 * scale, gx + 0.07 * scale, gy + 0.07 * scale), SHADOW, 0.0))
    if held is not None:
        shapes.append(_square((gx, gy), BLOCK_HALF * scale * grow, held, held_z))
    unit = scale * grow
    for side in (-1, 1):
        fx = gx + side * (0.05 + 2 * world.opening) * unit
        box = (fx - 0.025 * unit, gy - 0.09 * unit, fx + 0.025 * unit, gy + 0.09 * unit)
        shapes.append(_Shape(False, box, FINGER, float(pos[2])))
    return shapes


def _paint(shapes: list[_Shape], mode: str, background: Any, fills: list[Any]) -> np.ndarray:
    image = Image.new(mode, (SIZE, SIZE), background)
    draw = ImageDraw.Draw(image)
    for shape, fill in zip(shapes, fills):
        (draw.ellipse if shape.ellipse else draw.rectangle)(list(shape.box), fill=fill)
    return np.asarray(image)


def render(world: World, wrist: bool) -> np.ndarray:
    """One camera frame, uint8 (SIZE, SIZE, 3). Third-person: fixed top-down view; wrist: centred on the gripper."""
    shapes = _shapes(world, wrist)
    return _paint(shapes, "RGB", TABLE, [s.color for s in shapes])


def geometry(world: World, wrist: bool) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth depth (SIZE, SIZE) and world points (SIZE, SIZE, 3), float32, of the frame `render` draws.

    Both cameras are orthographic and look straight down (as `render` draws: sizes on the table do not depend
    on distance), the top-down one from TOP_CAMERA_Z, the wrist one from WRIST_ABOVE over the end effector.
    Each pixel shows the surface `render` paints there (the same primitives, painted as labels), so depth is
    camera height minus that surface's height, and the point is the pixel's table position (pixel i at PIL
    coordinate i) at that height: world frame, z up, table at z = 0.
    """
    shapes = _shapes(world, wrist)
    labels = _paint(shapes, "L", 0, list(range(1, len(shapes) + 1)))
    z = np.array([0.0, *(s.z for s in shapes)], dtype=np.float32)[labels]
    half_view, center = _view(world, wrist)
    coords = (np.arange(SIZE, dtype=np.float32) - SIZE / 2) * (2 * half_view / SIZE)
    x, y = np.meshgrid(center[0] + coords, center[1] - coords)
    camera_z = float(world.pos[2]) + WRIST_ABOVE if wrist else TOP_CAMERA_Z
    points = np.stack([x, y, z], axis=-1).astype(np.float32)
    return (camera_z - z).astype(np.float32), points


def observe(world: World) -> dict[str, Any]:
    """Both camera frames and the 8-D state, as the bundled dataset stores them."""
    state = np.array([*world.pos, *ORIENTATION, world.opening, -world.opening], dtype=np.float32)
    return {"image": render(world, False), "wrist_image": render(world, True), "state": state}


# ---- the simulator module of `rocket eval` (rocket_core.eval.worker) ------------------------------------------
def list_tasks(suite: str, protocol: Protocol | None = None) -> list[dict[str, Any]]:
    return [{"index": i, "name": f"{block}_on_{plate}", "instruction": instruction(i)}
            for i, (block, plate) in enumerate(TASKS)]


class BlocksEnv:
    """One task of the world; episode k's scene is drawn from numpy's default_rng([protocol.seed, task, k])."""

    world: World  # set by reset

    def __init__(self, task: int, protocol: Protocol) -> None:
        self.task, self.protocol, self.instruction = task, protocol, instruction(task)

    def reset(self, episode_index: int) -> dict[str, Any]:
        self.world = sample_world(np.random.default_rng([self.protocol.seed, self.task, episode_index]), self.task)
        return observe(self.world)

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], bool]:
        success = step(self.world, action)
        return observe(self.world), success

    def recording(self, obs: dict[str, Any]) -> dict[str, Any]:
        """What `--record` stores: the rendered frames (not the policy's crop) and the state."""
        return {"images": [obs[c] for c in CAMERAS], "state": obs["state"]}

    def policy_observation(self, obs: dict[str, Any]) -> dict[str, Any]:
        return {"images": [prepare_image(obs[c], self.protocol) for c in self.protocol.cameras], "state": obs["state"]}

    def frame(self, obs: dict[str, Any]) -> np.ndarray:
        return np.concatenate([obs[c] for c in CAMERAS], axis=1)

    def expert(self, request: dict[str, Any]) -> np.ndarray:
        """`rocket eval --policy expert`: one action of the scripted expert, from the world's current state."""
        return expert_action(self.world)[None]

    def close(self) -> None:
        pass


def make_env(suite: str, task: int, protocol: Protocol) -> BlocksEnv:
    return BlocksEnv(task, protocol)


def expert_episodes(protocol: Protocol, count: int) -> list[dict[str, Any]]:
    """`count` expert episodes, each `{"task", "steps": [{"images", "state", "action"}, ...]}`: episode e is
    task e % len(TASKS) at scene index e // len(TASKS), what `rocket eval --policy expert --record` stores."""
    episodes = []
    for e in range(count):
        env = BlocksEnv(e % len(TASKS), protocol)
        result = run_episode(env, env.expert, protocol, e // len(TASKS), trace=True)
        if not result["success"]:
            raise RuntimeError(f"the expert failed episode {e} (seed {protocol.seed}): a bug in the world or expert")
        episodes.append({"task": env.instruction, "steps": result["trace"]})
    return episodes
