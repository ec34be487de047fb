"""Early exit of the VGGT teacher: layers up to 3/4 depth versus all layers, same input, same process.

A moderately sized VGGT (VGGT-1B's proportions: as many DINO blocks as frame/global pairs) with random
weights; extraction is warmed up and timed as the median of repeats. Prints `early_exit_speedup: X.XX`
last (all-layers time / 3/4-depth time; the 1B proportions give about (24+48)/(24+36) = 1.2, a bit more
since global attention over all frames costs more than a DINO block).

    python benchmarks/teacher.py [--repeats 9] [--frames 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from plugins.teachers.vggt.config import DinoConfig, DPTConfig, VGGTConfig
from plugins.teachers.vggt.model import VGGT
from plugins.teachers.vggt.teacher import FrozenVGGT
from rocket_core.contracts import TeacherInfo

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
    print(f"early_exit_speedup: {full / part:.2f}")


if __name__ == "__main__":
    main()
