"""Proven to learn: record expert demos in the `blocks` world, train a VLA on them with `rocket align`, and
evaluate its checkpoints in closed loop on the held-out protocol scenes (issue 21).

The chain is the user's own, run as commands: `rocket eval --policy expert --record` (demos from a seed
other than the protocol's), `rocket align --recipe blocks-openvla-tiny --data DEMOS` (a checkpoint every
`--eval-every` steps) and `rocket eval --benchmark blocks --policy CHECKPOINT` for each checkpoint, run
beside the training as checkpoints appear (the training uses one torch thread, the evaluation the other
core). Prints success against training steps, writes `curve.png` and `curve.json` under `--out`, and ends
with `closed_loop_success: X.XX`, the last checkpoint's overall success.

    python benchmarks/closed_loop.py                      # the full run (~30 min on 2 idle cores)
    python benchmarks/closed_loop.py --tasks 0 --trials 4 --max-steps 300 --eval-every 300   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECIPE = "blocks-openvla-tiny"
DEMO_SEED = 7  # the protocol's scenes are seed 1000: the demos must not see them


@dataclass(frozen=True)
class Settings:
    out: Path
    recipe: str = RECIPE
    demo_trials: int = 20  # demos per task (12 tasks)
    max_steps: int | None = None  # None: the recipe's
    eval_every: int = 1000
    tasks: str | None = None  # e.g. "0" or "0-3": train and evaluate on these tasks only
    eval_trials: int | None = None  # None: the protocol's 5 per task
    seed: int | None = None  # training seed; None: the recipe's
    align_args: tuple[str, ...] = ()


def rocket(*args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """`rocket ARGS` with this checkout's code, output to `log` (or discarded)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    sink = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns it until it exits
    return subprocess.Popen([sys.executable, "-m", "rocket_cli", *args], env=env, stdout=sink, stderr=subprocess.STDOUT)


def run(*args: str, log: Path) -> None:
    if rocket(*args, log=log).wait() != 0:
        raise SystemExit(f"`rocket {' '.join(args)}` failed; see {log}:\n{log.read_text()[-3000:]}")


def eval_args(s: Settings) -> list[str]:
    """The flags that narrow the protocol, the same for recording and for evaluation."""
    return ["--videos", "none", "--no-progress", *(["--tasks", s.tasks] if s.tasks else [])]


def record(s: Settings) -> Path:
    """Expert demos under seed DEMO_SEED (skipped when already there)."""
    demos = s.out / "demos"
    if not (demos / "meta" / "info.json").is_file():
        run("eval", "--benchmark", "blocks", "--policy", "expert", "--seed", str(DEMO_SEED), "--trials",
            str(s.demo_trials), "--record", str(demos), "-o", str(s.out / "record"), *eval_args(s),
            log=s.out / "record.log")
    return demos


def evaluate(s: Settings, checkpoint: Path) -> float:
    """Overall success of one checkpoint on the held-out protocol (resumable: a finished one is read back)."""
    out = s.out / "eval" / checkpoint.name
    if not (out / "results.json").is_file():
        trials = ["--trials", str(s.eval_trials)] if s.eval_trials else []
        run("eval", "--benchmark", "blocks", "--policy", str(checkpoint), "-o", str(out), *trials, *eval_args(s),
            log=s.out / f"eval-{checkpoint.name}.log")
    return float(json.loads((out / "results.json").read_text())["overall"]["success_rate"])


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix("step-"))


def last_loss(metrics: Path) -> str:
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    return f"action_loss {json.loads(lines[-1])['action_loss']:.3f}" if lines else "starting"


def train_and_evaluate(s: Settings, demos: Path) -> dict[int, float]:
    """Train in the background; evaluate each checkpoint once it is complete (its manifest is written last)."""
    runs = s.out / "run"
    args = ["align", "--recipe", s.recipe, "--data", str(demos), "-o", str(runs), "--save-every", str(s.eval_every),
            "--checkpoint-minutes", "0", *(["--max-steps", str(s.max_steps)] if s.max_steps else []),
            *(["--seed", str(s.seed)] if s.seed is not None else []), *s.align_args]
    if (runs / "checkpoints").is_dir():
        args = ["align", "--resume", str(runs), "--checkpoint-minutes", "0"]
    trainer = rocket(*args, log=s.out / "train.log")
    curve: dict[int, float] = {}
    start = time.perf_counter()
    while True:
        done = trainer.poll() is not None
        ready = sorted((c for c in (runs / "checkpoints").glob("step-*") if (c / "manifest.json").is_file()),
                       key=step_of) if (runs / "checkpoints").is_dir() else []
        todo = [c for c in ready if step_of(c) not in curve]
        for checkpoint in todo:
            curve[step_of(checkpoint)] = evaluate(s, checkpoint)
            print(f"[{time.perf_counter() - start:6.0f} s] step {step_of(checkpoint):6d}: success "
                  f"{curve[step_of(checkpoint)]:.2f}", flush=True)
        if done and not todo:
            break
        if not todo:
            print(f"[{time.perf_counter() - start:6.0f} s] training: {last_loss(runs / 'metrics.jsonl')}", flush=True)
            time.sleep(5)
    if trainer.returncode != 0:
        raise SystemExit(f"training failed; see {s.out / 'train.log'}")
    return curve


def closed_loop(s: Settings) -> dict[int, float]:
    """Record, train, evaluate: success per checkpoint step (also in OUT/curve.json and OUT/curve.png)."""
    from rocket_core.analysis.plots import step_curves

    s.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    demos = record(s)
    print(f"demos: {demos} ({time.perf_counter() - t0:.0f} s)", flush=True)
    curve = train_and_evaluate(s, demos)
    (s.out / "curve.json").write_text(json.dumps({str(k): v for k, v in sorted(curve.items())}, indent=1))
    step_curves(s.out / "curve.png", {"success": sorted(curve.items())}, f"{s.recipe} on blocks",
                "success (held-out scenes)", (-0.02, 1.02))
    print(f"{'step':>8}  success\n" + "\n".join(f"{k:8d}  {v:.2f}" for k, v in sorted(curve.items())))
    print(f"curve: {s.out / 'curve.png'}; wall {time.perf_counter() - t0:.0f} s")
    return curve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "closed_loop")
    p.add_argument("--recipe", default=RECIPE)
    p.add_argument("--trials", type=int, default=Settings.demo_trials, help="demos per task")
    p.add_argument("--max-steps", type=int, default=None, help="training steps (default: the recipe's)")
    p.add_argument("--eval-every", type=int, default=Settings.eval_every)
    p.add_argument("--tasks", default=None, help="task indices, e.g. 0-3 (default: all 12)")
    p.add_argument("--eval-trials", type=int, default=None, help="held-out scenes per task (default: the protocol's 5)")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the recipe's)")
    a = p.parse_args()
    curve = closed_loop(Settings(a.out, a.recipe, a.trials, a.max_steps, a.eval_every, a.tasks, a.eval_trials, a.seed))
    print(f"closed_loop_success: {curve[max(curve)]:.2f}")


if __name__ == "__main__":
    main()
