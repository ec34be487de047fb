"""The `blocks` world's depth and point maps describe exactly the frames `render` draws, pixel for pixel."""
from __future__ import annotations

import numpy as np
import pytest

from rocket_plugins.benchmarks import blocks_world as bw


def _scene(seed: int, z: float, held: int | None) -> bw.World:
    world = bw.sample_world(np.random.default_rng(seed), seed % len(bw.TASKS))
    world.pos = np.array([*world.pos[:2], z])
    if held is not None:
        world.held, world.closed, world.opening = held, True, bw.FINGER_CLOSED
        world.blocks[held] = world.pos[:2]
    return world


@pytest.mark.parametrize(("seed", "z", "held"), [(0, 0.6, None), (1, 0.05, 0), (2, 0.3, 1), (3, 0.8, None)])
@pytest.mark.parametrize("wrist", [False, True])
def test_every_pixel_has_the_height_of_the_surface_render_paints(seed: int, z: float, held: int | None, wrist: bool) -> None:
    world = _scene(seed, z, held)
    image = bw.render(world, wrist)
    depth, points = bw.geometry(world, wrist)
    assert depth.shape == (bw.SIZE, bw.SIZE) and points.shape == (bw.SIZE, bw.SIZE, 3)
    height = {bw.TABLE: 0.0, bw.SHADOW: 0.0, bw.COLORS[world.plate_color]: bw.PLATE_Z, bw.FINGER: z}
    for i, name in enumerate(world.colors):  # a held block keeps the offset at which it was grasped
        height[bw.COLORS[name]] = z + bw.BLOCK_HEIGHT - bw.GRASP_Z if i == held else bw.BLOCK_HEIGHT
    expected = np.zeros((bw.SIZE, bw.SIZE), dtype=np.float32)
    for color, h in height.items():
        expected[(image == color).all(-1)] = h
    assert sum((image == c).all(-1).sum() for c in height) == bw.SIZE**2  # no pixel of another colour
    np.testing.assert_allclose(points[..., 2], expected, atol=1e-6)
    camera = z + bw.WRIST_ABOVE if wrist else bw.TOP_CAMERA_Z
    np.testing.assert_allclose(depth, camera - expected, atol=1e-6)
    if not wrist:  # both blocks and the plate are in view, so their heights were checked
        assert all((image == bw.COLORS[c]).all(-1).any() for c in (*world.colors, world.plate_color))


def test_points_map_pixels_to_the_table_positions_render_uses() -> None:
    world = _scene(4, 0.4, None)
    _, top = bw.geometry(world, wrist=False)
    np.testing.assert_allclose(top[0, 0, :2], [-1.2, 1.2])  # pixel i at PIL coordinate i: the corner of the view
    np.testing.assert_allclose(top[64, 64, :2], [0.0, 0.0], atol=1e-6)
    for xy in world.blocks:  # the pixel nearest a block's centre shows that block's top
        col, row = np.rint((xy[0] + 1.2) / 2.4 * bw.SIZE).astype(int), np.rint((1.2 - xy[1]) / 2.4 * bw.SIZE).astype(int)
        np.testing.assert_allclose(top[row, col], [*xy, bw.BLOCK_HEIGHT], atol=2.4 / bw.SIZE)
    _, wrist = bw.geometry(world, wrist=True)
    np.testing.assert_allclose(wrist[64, 64, :2], world.pos[:2], atol=1e-6)  # the wrist view is centred on the gripper
    half = 0.2 + 0.6 * 0.4
    np.testing.assert_allclose(wrist[0, 0, :2], world.pos[:2] + [-half, half], atol=1e-6)
