"""Train the tiny VGGT on the `blocks` world's ground-truth geometry, so that aligning to it teaches 3D.

The random `tiny` preset has the real architecture but knows nothing; this trains that architecture's
aggregator with its own depth and point heads on frames rendered on the fly (`blocks_world.geometry`):
random scenes (`sample_world`), the gripper anywhere in WORKSPACE, holding a block half the time. Each sample
is the two cameras as VGGT's two frames (`image` first, as the alignment feeds them). The loss is VGGT's
confidence-weighted L1 (conf * |error| - ALPHA * log conf) on depth and on world points (table frame, z up),
with the pixels of raised things (blocks, gripper) weighted RAISED_WEIGHT times.
The camera head is not trained (the cameras are orthographic: VGGT's pinhole pose encoding does not fit);
its seeded initial weights are saved so that a build with heads loads strictly.

Writes OUT/model.safetensors (every key of VGGT(TINY, heads=True)) and OUT/training.json (settings, losses,
held-out depth/point L1 of the random start and of the trained model). Load it with
`teacher: {name: vggt, preset: tiny, checkpoint: OUT}`. Seed 0 starts from exactly the `tiny` preset's weights.
Run: OMP_NUM_THREADS=1 python scripts/train_blocks_teacher.py --out DIR [--steps N] [--batch B] [--seed S] [--lr LR]
(the defaults made the shipped plugins/teachers/vggt/blocks/: about 8 minutes on one CPU thread).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from rocket_core.progress import Bar
from rocket_core.vision import resize_for_teacher
from rocket_plugins.benchmarks.blocks_world import (
    BLOCK_HALF,
    CAMERAS,
    FINGER_CLOSED,
    FINGER_OPEN,
    PLATE_Z,
    TASKS,
    WORKSPACE,
    World,
    geometry,
    render,
    sample_world,
)
from rocket_plugins.teachers.vggt.config import TINY
from rocket_plugins.teachers.vggt.model import VGGT

ALPHA = 0.05  # weight of -log(conf): a pixel earns confidence c only once its error is below ALPHA / c
RAISED, RAISED_WEIGHT = PLATE_Z, 10.0  # pixels above the plate (blocks, gripper: 2 % of the top-down view) weigh more


def random_world(rng: np.random.Generator) -> World:
    """A scene of the benchmark with the gripper anywhere in the workspace, holding one of the blocks half the time."""
    world = sample_world(rng, int(rng.integers(len(TASKS))))
    world.pos = rng.uniform(WORKSPACE[0], WORKSPACE[1])
    if rng.random() < 0.5:
        world.held = int(rng.integers(2))
        world.blocks[world.held] = world.pos[:2]
        world.closed, world.opening = True, FINGER_CLOSED
    else:
        world.opening = float(rng.uniform(0.0, FINGER_OPEN))
    return world


def batch(rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
    """`size` samples at the teacher's input size: images (B, 2, 3, H, W) in [0, 1], depth (B, 2, H, W), points
    (B, 2, H, W, 3). Images get the teacher's own resize; targets are resized by nearest neighbour (exact heights)."""
    images, depth, points = [], [], []
    for _ in range(size):
        world = random_world(rng)
        for wrist in (False, True):
            d, p = geometry(world, wrist)
            images.append(render(world, wrist))
            depth.append(d)
            points.append(p)
    n, side = (size, 2), TINY.img_size
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)
    targets = torch.from_numpy(np.concatenate([np.stack(depth)[..., None], np.stack(points)], axis=-1)).permute(0, 3, 1, 2)
    targets = F.interpolate(targets, size=(side, side), mode="nearest-exact").permute(0, 2, 3, 1)
    return {
        "images": resize_for_teacher(pixels.reshape(*n, *pixels.shape[1:]), side, TINY.patch_size),
        "depth": targets[..., 0].reshape(*n, side, side),
        "points": targets[..., 1:].reshape(*n, side, side, 3),
    }


def predict(model: VGGT, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Depth and point heads on the aggregator's features (the camera head is skipped: it is not trained)."""
    assert model.depth_head is not None and model.point_head is not None
    features = model.aggregator(images)
    hw, start = images.shape[-2:], model.config.patch_start_idx
    depth, depth_conf = model.depth_head(features, hw, start)
    points, points_conf = model.point_head(features, hw, start)
    return {"depth": depth[..., 0], "depth_conf": depth_conf, "points": points, "points_conf": points_conf}


def loss(pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
    """VGGT's confidence-weighted L1 on depth plus the same on world points (point error summed over xyz), raised
    pixels weighted RAISED_WEIGHT times: unweighted, a flat table at the camera's height is 98 % of the top view."""
    weight = 1 + (RAISED_WEIGHT - 1) * (target["points"][..., 2] > RAISED).float()
    total = torch.zeros(())
    for key, err in (("depth", (pred["depth"] - target["depth"]).abs()),
                     ("points", (pred["points"] - target["points"]).abs().sum(-1))):
        conf = pred[f"{key}_conf"]
        total = total + (weight * (conf * err - ALPHA * conf.log())).mean()
    return total


@torch.no_grad()
def errors(depth: torch.Tensor, points: torch.Tensor, target: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per camera: mean absolute depth error, the same on raised pixels only (blocks, gripper) and the mean point
    error (world units, averaged over xyz)."""
    depth_err, point_err = (depth - target["depth"]).abs(), (points - target["points"]).abs().mean(-1)
    raised = target["points"][..., 2] > RAISED
    out = {}
    for i, camera in enumerate(CAMERAS):
        out[f"depth_l1_{camera}"] = float(depth_err[:, i].mean())
        out[f"depth_l1_{camera}_raised"] = float(depth_err[:, i][raised[:, i]].mean())
        out[f"points_l1_{camera}"] = float(point_err[:, i].mean())
    return out


def evaluate(model: VGGT, held_out: dict[str, torch.Tensor]) -> dict[str, float]:
    with torch.no_grad():
        pred = predict(model.eval(), held_out["images"])
    return errors(pred["depth"], pred["points"], held_out)


def train(out: Path, steps: int, batch_size: int, seed: int, lr: float, held_out_size: int = 64) -> dict[str, object]:
    """Train, save OUT/model.safetensors and OUT/training.json; returns what training.json holds."""
    torch.manual_seed(seed)
    model = VGGT(TINY, heads=True)
    assert model.camera_head is not None
    model.camera_head.requires_grad_(False)
    held_out = batch(np.random.default_rng([seed, 1]), held_out_size)  # its own seed stream
    before = evaluate(model, held_out)
    # the baseline a teacher must beat to know more than the average scene: each camera's mean over training data
    rng = np.random.default_rng([seed, 0])
    reference = batch(rng, held_out_size)
    constant = errors(reference["depth"].mean((0, 2, 3))[None, :, None, None].expand_as(held_out["depth"]),
                      reference["points"].mean((0, 2, 3))[None, :, None, None].expand_as(held_out["points"]), held_out)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    start, history = time.monotonic(), []
    with Bar("blocks teacher", steps) as bar:
        for _ in range(steps):
            model.train()
            value = loss(predict(model, (data := batch(rng, batch_size))["images"]), data)
            optimizer.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            history.append(float(value.detach()))
            bar.update(advance=1, text=f"loss {np.mean(history[-20:]):.4f}")
    after = evaluate(model, held_out)
    record: dict[str, object] = {
        "command": f"python scripts/train_blocks_teacher.py --out DIR --steps {steps} --batch {batch_size} --seed {seed} "
                   f"--lr {lr} --held-out {held_out_size}",
        "preset": "tiny", "steps": steps, "batch": batch_size, "seed": seed, "lr": lr, "alpha": ALPHA, "raised_weight": RAISED_WEIGHT,
        "block_height": 2 * BLOCK_HALF, "train_seconds": round(time.monotonic() - start, 1),
        "final_loss": round(float(np.mean(history[-50:])), 4),
        "held_out": {"samples": held_out_size, "random_tiny": before, "constant_per_camera": constant, "trained": after},
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for model.safetensors and training.json")
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--held-out", type=int, default=64, help="samples of the held-out evaluation")
    args = parser.parse_args(argv)
    record = train(args.out, args.steps, args.batch, args.seed, args.lr, args.held_out)
    print(json.dumps({k: record[k] for k in ("final_loss", "train_seconds", "held_out")}, indent=2))


if __name__ == "__main__":
    main()
