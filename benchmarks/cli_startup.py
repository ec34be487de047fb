"""CLI start-up cost: CPU seconds of light commands in child processes (issues 15 and 20).

CPU time (user + sys of the child, from `os.wait4`) counts the work the command does, so it stays stable
when other processes share the cores, unlike wall time. Each command runs `--runs` times, alternating with
a bare interpreter start (`python -c pass`) as the baseline measured side by side; medians are printed,
with the ratio to the baseline and the issue's targets:

    help_cpu_s <= 0.5     plugins_cpu_s <= 1.5     dry_run_cpu_s <= 1.5 (the openvla-libero-rocket recipe)

    python benchmarks/cli_startup.py [--runs 5]

The commands run this checkout's code (`python -m rocket_cli` with the repository first on PYTHONPATH), as
installed plugins are found through their entry points like in a user's environment.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"help_cpu_s": 0.5, "plugins_cpu_s": 1.5, "dry_run_cpu_s": 1.5}
COMMANDS = {
    "python_cpu_s": ["-c", "pass"],  # baseline: the interpreter alone
    "help_cpu_s": ["-m", "rocket_cli", "--help"],
    "version_cpu_s": ["-m", "rocket_cli", "--version"],
    "plugins_cpu_s": ["-m", "rocket_cli", "plugins"],
    "recipes_cpu_s": ["-m", "rocket_cli", "recipes"],
    "select_layers_cpu_s": ["-m", "rocket_cli", "select-layers", "--vla", "openvla", "--teacher", "vggt", "-k", "4"],
    "data_inspect_cpu_s": ["-m", "rocket_cli", "data", "inspect", "bundled"],
    # planning reads only metadata: no torch, no transformers (the issue-20 test checks that; this times it)
    "dry_run_cpu_s": ["-m", "rocket_cli", "align", "--recipe", "openvla-libero-rocket", "--dry-run"],
}


def child_cost(args: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process running `python ARGS`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child cannot block on a full pipe
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"python {' '.join(args)} failed: {err.read().decode()[-500:]}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (medians are printed)")
    runs = parser.parse_args().runs
    child_cost(COMMANDS["plugins_cpu_s"])  # warm the file cache and .pyc files once, untimed
    samples: dict[str, list[tuple[float, float]]] = {key: [] for key in COMMANDS}
    for _ in range(runs):  # interleaved, so a burst of load hits every command alike
        for key, args in COMMANDS.items():
            samples[key].append(child_cost(args))
    base = statistics.median(cpu for cpu, _ in samples["python_cpu_s"])
    for key, values in samples.items():
        cpu = statistics.median(c for c, _ in values)
        wall = statistics.median(w for _, w in values)
        target = f"  target <= {TARGETS[key]} ({'ok' if cpu <= TARGETS[key] else 'MISSED'})" if key in TARGETS else ""
        print(f"{key}: {cpu:.3f}  (wall {wall:.3f} s, {cpu / base:.1f}x a bare interpreter){target}")


if __name__ == "__main__":
    main()
