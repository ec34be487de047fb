"""Env steps/s of `rocket eval` with 1 vs 2 simulator workers (`parallel_speedup`).

    python benchmarks/eval_throughput.py                 # LIBERO if set up, else the toy benchmark
    python benchmarks/eval_throughput.py --benchmark toy --episodes 8 --max-steps 40

The policy is a zero-action server (instant), so the number is the simulator side: env creation, reset,
physics and rendering, plus the wire. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rocket_core.eval.base import find_benchmark  # noqa: E402
from rocket_core.eval.runner import EvalConfig, SuitePlan, list_tasks, run_eval  # noqa: E402
from rocket_core.eval.server import serve_callable  # noqa: E402


def measure(bench, suite: str, workers: int, episodes: int, max_steps: int, url: str) -> dict:
    preset = bench.protocol(suite, "openvla")
    proto = preset.replace(max_steps=max_steps)
    tasks = list_tasks(bench, suite, proto)
    with tempfile.TemporaryDirectory() as out:
        cfg = EvalConfig(benchmark=bench, suites=[SuitePlan(suite, proto, preset, tasks)], url=url, out=Path(out),
                         workers=workers, tasks=[0], episodes=list(range(episodes)), videos="none")
        t0 = time.perf_counter()
        run_eval(cfg, progress=False, log=lambda m: None)
        wall = time.perf_counter() - t0
        steps = sum(json.loads(p.read_text())["env_steps"] for p in Path(out).glob("episodes/**/ep-*.json"))
    return {"workers": workers, "episodes": episodes, "env_steps": steps, "wall_s": round(wall, 2),
            "env_steps_per_s": round(steps / wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmark", default=None, help="libero_spatial (default when set up) or toy")
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--max-steps", type=int, default=40)
    args = ap.parse_args()
    name = args.benchmark
    if name is None:
        libero, _ = find_benchmark("libero")
        name = "libero_spatial" if libero.env().ready() else "toy"
    bench, suite = find_benchmark(name)
    suite = suite or bench.suites[0]
    meta = {"vla": "zero", "num_images": 2, "state_dim": 8, "action_dim": bench.protocol(suite, "openvla").action_dim,
            "chunk_size": 8}
    dim = meta["action_dim"]
    with serve_callable(meta, lambda obs: np.zeros((8, dim)), port=0) as server:
        one = measure(bench, suite, 1, args.episodes, args.max_steps, server.url)
        two = measure(bench, suite, 2, args.episodes, args.max_steps, server.url)
    print(json.dumps({"benchmark": f"{bench.name}_{suite}", "one_worker": one, "two_workers": two,
                      "parallel_speedup": round(two["env_steps_per_s"] / one["env_steps_per_s"], 2)}))


if __name__ == "__main__":
    main()
