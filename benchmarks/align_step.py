"""Train-step time of ROCKET variants against the no-alignment baseline, on one fixed configuration.

OpenVLA architecture (Llama 1024 x 12 layers x 16 heads, ViTs of depth 4 and width 256, two cameras at
224 px = 512 vision tokens, LoRA r 32) and a VGGT-architecture teacher (embed 256, depth 12, 518 px):
the `bench` presets of both plugins. 10 pairs (balanced rule), projector hidden = 2 x teacher width,
batch 2, bundled dataset. Every variant runs the real trainer step (`Trainer._one_step`): warm-up, then
the median of repeats. The cached variant first fills the teacher-feature cache with the batches the timed
steps will see, so those steps are pure cache hits (read + checksum in the loader workers, no teacher).
Prints a table, then `cached_overhead_vs_baseline: X.XX` last.

    python benchmarks/align_step.py [--repeats 3] [--batch-size 2]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rocket_core.engine import plan_run
from rocket_core.specs import build_spec
from rocket_core.data import to_device
from rocket_core.train.trainer import Trainer

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline (no alignment)": {"alignment": {"coefficient": 0.0}},
    "rocket, live teacher": {},
    "rocket, cached teacher": {"training": {"teacher_cache": "<tmp>/cache"}},
    "spatial forcing, live teacher": {"projector": {"name": "single", "reference_width_quirk": True},
                                      "layers": "9:-1"},
    "naive multi-layer, live teacher": {"projector": {"name": "independent", "reference_width_quirk": True}},
}


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


def time_steps(trainer: Trainer, repeats: int) -> float:
    labels = [f"pair{i}" for i in range(len(trainer.plan.layers.vla))]
    if trainer.cache is not None:
        # Fill the cache over the batches the timed steps will see; a fresh iterator replays them as hits.
        fill = iter(trainer.loader)
        for _ in range(repeats + 1):
            trainer._targets(to_device(next(fill), trainer.acc.device))
        assert trainer.cache.stats.hits == 0 and trainer.cache.stats.misses > 0
    data = iter(trainer.loader)
    trainer._one_step(data, labels)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer._one_step(data, labels)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, variant) in enumerate(VARIANTS.items()):
            if "training" in variant:
                variant = {"training": {"teacher_cache": variant["training"]["teacher_cache"].replace("<tmp>", tmp)}}
            trainer = make_trainer(Path(tmp) / str(i), args.batch_size, variant)
            results[name] = time_steps(trainer, args.repeats)
            print(f"{name:>34}: {results[name] * 1e3:9.1f} ms / step", flush=True)
            del trainer
    base = results["baseline (no alignment)"]
    print(f"{'variant':>34}  {'ms/step':>9}  {'vs baseline':>11}")
    for name, value in results.items():
        print(f"{name:>34}  {value * 1e3:9.1f}  {value / base:11.2f}")
    print(f"cached_overhead_vs_baseline: {results['rocket, cached teacher'] / base:.2f}")


if __name__ == "__main__":
    main()
