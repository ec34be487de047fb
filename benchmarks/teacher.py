"""Early exit of the VGGT teacher: what each shipped layer map gains, and what a 3/4-depth map would.

The teacher computes no block past the deepest layer a layer map pairs with. Every shipped map (the
recipes, which include each VLA's default map) pairs with the teacher's last layer, so in real runs early
exit never triggers: their speedup is 1.00, printed per map. The synthetic case, a map ending at 3/4
depth, is measured on a moderately sized VGGT (VGGT-1B's proportions: as many DINO blocks as
frame/global pairs) with random weights, warmed up, as the median of repeats of CPU time; the 1B
proportions give about (24+48)/(24+36) = 1.2 there. A shipped map that does not end at the last layer
is measured the same way at its depth. Prints `shipped_early_exit_speedup: X.XX` last (the largest
over the shipped maps).

    python benchmarks/teacher.py [--repeats 9] [--frames 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from rocket_core.contracts import TeacherInfo
from rocket_core.engine import plan_run
from rocket_core.recipes import list_recipes
from rocket_core.specs import build_spec
from rocket_plugins.teachers.vggt.config import DinoConfig, DPTConfig, VGGTConfig
from rocket_plugins.teachers.vggt.model import VGGT
from rocket_plugins.teachers.vggt.teacher import FrozenVGGT

CONFIG = VGGTConfig(
    img_size=168,
    embed_dim=128,
    depth=8,
    num_heads=4,
    dino=DinoConfig(embed_dim=128, depth=8, num_heads=4),
    dpt=DPTConfig(features=16, out_channels=(8, 16, 32, 32), layers=(1, 3, 5, 7)),
)


def paired_medians(first: Callable[[], object], second: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median CPU seconds of each, timed alternately.

    CPU time of the calling thread (torch runs single-threaded here) counts the work done, so other
    processes on a shared machine do not distort the ratio the way wall time does.
    """
    first(), second()  # warm-up: allocator, kernels
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.thread_time()
            fn()
            bucket.append(time.thread_time() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def shipped_maps() -> list[tuple[str, int, int]]:
    """(recipe, deepest teacher layer, teacher depth) of every shipped recipe that uses a teacher."""
    out = []
    for recipe in list_recipes():
        plan = plan_run(build_spec(None, {}, recipe.spec))
        if plan.spec.alignment.coefficient > 0:
            out.append((recipe.name, max(plan.layers.teacher), plan.teacher_info.num_layers))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: CPU time = work)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    grid = CONFIG.grid
    info = TeacherInfo(CONFIG.depth, CONFIG.feature_dim, (grid, grid), (CONFIG.img_size, CONFIG.img_size))
    teacher = FrozenVGGT(VGGT(CONFIG, heads=False).eval().requires_grad_(False), info, "crop")
    images = torch.rand(1, args.frames, 3, CONFIG.img_size, CONFIG.img_size)
    partial = list(range(CONFIG.depth * 3 // 4))
    everything = list(range(CONFIG.depth))

    full, part = paired_medians(
        lambda: teacher.extract(images, everything), lambda: teacher.extract(images, partial), args.repeats
    )
    print(f"config: embed {CONFIG.embed_dim}, {CONFIG.depth} frame/global pairs, {CONFIG.dino.depth} DINO blocks, "
          f"{args.frames} frames of {CONFIG.img_size}px, {torch.get_num_threads()} threads")
    print(f"all {len(everything)} layers: {full * 1000:.1f} ms CPU")
    print(f"layers 0..{partial[-1]} (3/4 depth): {part * 1000:.1f} ms CPU")
    print(f"synthetic map ending at 3/4 depth: early_exit_speedup {full / part:.2f}")
    speedups = []
    for name, deepest, depth in shipped_maps():
        # the same fraction of this model's depth; a map ending at the last layer runs every block
        last = -(-(deepest + 1) * CONFIG.depth // depth) - 1
        if last == CONFIG.depth - 1:
            speedup = 1.0
        else:
            full, part = paired_medians(lambda: teacher.extract(images, everything),
                                        lambda: teacher.extract(images, list(range(last + 1))), args.repeats)  # noqa: B023 (run now)
            speedup = full / part
        speedups.append(speedup)
        print(f"{name}: deepest teacher layer {deepest} of {depth}: early exit {speedup:.2f}")
    print(f"shipped_early_exit_speedup: {max(speedups):.2f}")


if __name__ == "__main__":
    main()
