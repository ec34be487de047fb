"""Train-step time of ROCKET variants against the no-alignment baseline, on one fixed configuration.

OpenVLA architecture (Llama 1024 x 12 layers x 16 heads, ViTs of depth 4 and width 256, two cameras at
224 px = 512 vision tokens, LoRA r 32) and a VGGT-architecture teacher (embed 256, depth 12, 518 px):
the `bench` presets of both plugins. 10 pairs (balanced rule), projector hidden = 2 x teacher width,
batch 2, bundled dataset. Every variant runs the real trainer step (`Trainer._one_step`). All trainers
are built first; then each round runs one step of every variant in a rotating order, so load drift on a
shared machine hits every variant alike instead of landing in the ratios. The cached variant first fills
the teacher-feature cache with the batches its timed steps will see, so those steps are pure cache hits.

Reports the process CPU time of each step (one torch thread by default, `--threads`: CPU time is the
work done, which other processes do not change) beside its wall time, the ratio to the baseline taken
within each round (median and spread), and `cached_overhead_vs_baseline: X.XX` (CPU) last.

    python benchmarks/align_step.py [--repeats 5] [--batch-size 2] [--variants baseline,rocket-cached]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from rocket_core.data import to_device
from rocket_core.engine import plan_run
from rocket_core.specs import build_spec
from rocket_core.train.trainer import Trainer

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline (no alignment)": {"alignment": {"coefficient": 0.0}},
    "rocket, live teacher": {},
    "rocket, cached teacher": {"training": {"teacher_cache": "<tmp>/cache"}},
    "spatial forcing, live teacher": {"projector": {"name": "single", "reference_width_quirk": True},
                                      "layers": "9:-1"},
    "naive multi-layer, live teacher": {"projector": {"name": "independent", "reference_width_quirk": True}},
}
KEYS = dict(zip(("baseline", "rocket", "rocket-cached", "spatial-forcing", "naive"), VARIANTS))


def make_trainer(run_dir: Path, batch_size: int, variant: dict[str, Any]) -> Trainer:
    base = {
        "vla": {"name": "openvla", "preset": "bench"},
        "teacher": {"name": "vggt", "preset": "bench"},
        "layers": "balanced:10",
        "projector": {"name": "rocket", "hidden_dim": 1024},  # 2 x teacher width (512)
        "training": {"max_steps": 1000, "batch_size": batch_size, "lora": {"rank": 32, "alpha": 16},
                     "mixed_precision": "no", "num_workers": 0},  # data in-process: no worker competing for the 2 cores
        "data": {"augment": {"enabled": False}},  # identical inputs across variants and steps
    }
    return Trainer(plan_run(build_spec(None, variant, base)), run_dir, progress=False)


def prepare(trainer: Trainer, steps: int) -> Iterator[dict[str, Any]]:
    """The data iterator the timed steps will use (cache filled first for a cached variant)."""
    if trainer.cache is not None:
        # Fill the cache over the batches the timed steps will see; a fresh iterator replays them as hits.
        fill = iter(trainer.loader)
        for _ in range(steps):
            trainer._targets(to_device(next(fill), trainer.acc.device))
        assert trainer.cache.stats.hits == 0 and trainer.cache.stats.misses > 0
    return iter(trainer.loader)


def timed_step(trainer: Trainer, data: Iterator[dict[str, Any]]) -> tuple[float, float]:
    """(wall s, process CPU s) of one optimizer step."""
    labels = [f"pair{i}" for i in range(len(trainer.plan.layers.vla))]
    wall, cpu = time.perf_counter(), time.process_time()
    trainer._one_step(data, labels)
    return time.perf_counter() - wall, time.process_time() - cpu


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: CPU time = work done)")
    ap.add_argument("--variants", default=",".join(KEYS), help=f"comma-separated subset of {','.join(KEYS)}")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    unknown = [k for k in args.variants.split(",") if k not in KEYS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {', '.join(KEYS)}")
    chosen = [KEYS[k] for k in args.variants.split(",")]
    if "baseline (no alignment)" not in chosen:
        chosen.insert(0, "baseline (no alignment)")
    torch.manual_seed(0)
    wall: dict[str, list[float]] = {name: [] for name in chosen}
    cpu: dict[str, list[float]] = {name: [] for name in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        trainers, data = {}, {}
        for i, name in enumerate(chosen):
            variant = VARIANTS[name]
            if "training" in variant:
                variant = {"training": {"teacher_cache": variant["training"]["teacher_cache"].replace("<tmp>", tmp)}}
            trainers[name] = make_trainer(Path(tmp) / str(i), args.batch_size, variant)
            data[name] = prepare(trainers[name], args.repeats + 1)
            timed_step(trainers[name], data[name])  # warm-up
        for rnd in range(args.repeats):
            for name in chosen[rnd % len(chosen) :] + chosen[: rnd % len(chosen)]:
                w, c = timed_step(trainers[name], data[name])
                wall[name].append(w)
                cpu[name].append(c)
            print(f"round {rnd + 1}/{args.repeats} done", flush=True)
    base = "baseline (no alignment)"
    print(f"{torch.get_num_threads()} thread(s); load average {os.getloadavg()[0]:.2f}; median [min-max] of "
          f"{args.repeats} rounds; ratios are paired within a round")
    print(f"{'variant':>34}  {'CPU ms':>8}  {'wall ms':>8}  {'CPU vs baseline':>17}  {'wall vs baseline':>17}")
    for name in chosen:
        cpu_ratio = [c / b for c, b in zip(cpu[name], cpu[base])]
        wall_ratio = [w / b for w, b in zip(wall[name], wall[base])]
        print(f"{name:>34}  {statistics.median(cpu[name]) * 1e3:8.1f}  {statistics.median(wall[name]) * 1e3:8.1f}  "
              f"{spread(cpu_ratio):>17}  {spread(wall_ratio):>17}")
    cached = "rocket, cached teacher"
    if cached in chosen:
        ratios = [c / b for c, b in zip(cpu[cached], cpu[base])]
        print(f"cached_overhead_vs_baseline: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
