"""The quickstart on idle cores and again beside one busy process per core: does training survive sharing?

Runs `rocket align --vla openvla --teacher vggt --preset tiny` (the README's quickstart, default flags,
OMP_NUM_THREADS unset so rocket's own thread choice is what is measured) in a temporary folder, first
alone, then with one CPU-bound process per usable core running beside it. Prints the idle wall time, CPU
time and peak RSS of each run, the load average, and `quickstart_contention_ratio` (loaded wall / idle
wall; target <= 2.0) last. `--align-args "--threads 2"` measures another setting the same way.

    python benchmarks/contention.py [--align-args "--max-steps 20"]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ["align", "--vla", "openvla", "--teacher", "vggt", "--preset", "tiny"]


@dataclass
class Run:
    wall: float
    cpu: float
    peak_rss_mb: float

    def __str__(self) -> str:
        return f"wall {self.wall:.1f} s, CPU {self.cpu:.1f} s (user + sys), peak RSS {self.peak_rss_mb:.0f} MB"


def quickstart(extra: list[str]) -> Run:
    """One quickstart run in a fresh folder: wall time, and CPU time and peak RSS of it and its children."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])), HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "rocket_cli", *QUICKSTART, *extra], cwd=tmp, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = proc.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"the quickstart failed (exit {proc.returncode}):\n{output.decode()[-3000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def spin() -> None:
    while True:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--align-args", default="", help="extra `rocket align` arguments, e.g. '--threads 2'")
    args = ap.parse_args()
    extra = shlex.split(args.align_args)
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"quickstart: rocket {' '.join(QUICKSTART + extra)}; {cores} usable cores; load average {load:.2f}")
    if load > 0.5:
        print(f"warning: the machine is not idle (load {load:.2f}): the idle run is slower than it should be")
    idle = quickstart(extra)
    print(f"idle: {idle}")
    busy = [mp.Process(target=spin, daemon=True) for _ in range(cores)]
    for p in busy:
        p.start()
    try:
        loaded = quickstart(extra)
    finally:
        for p in busy:
            p.terminate()
            p.join()
    print(f"beside {cores} busy processes: {loaded}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"idle_wall_s: {idle.wall:.1f}")
    print(f"quickstart_contention_ratio: {loaded.wall / idle.wall:.2f}")


if __name__ == "__main__":
    main()
