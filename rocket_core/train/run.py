"""Where a `rocket align` run lives and where it continues from: resume sources, the run folder, the relaunch.

Import-light (torch loads only to read a checkpoint), so `rocket align --dry-run` plans without torch.
"""
from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rocket_core.errors import RocketError

if TYPE_CHECKING:
    from rocket_core.engine import AlignPlan
    from rocket_core.specs import RunSpec
    from rocket_core.train.checkpoint import CheckpointData

RUN_FILES = ("checkpoints", "spec.yaml", "metrics.jsonl")  # any of them: the folder holds a run


@dataclass(frozen=True)
class Resume:
    """What `--resume` points at: the checkpoint (None: a run whose first save never completed), its spec,
    and the run folder to continue in (None: a pulled checkpoint, continued in a new folder)."""

    source: Path
    ckpt: CheckpointData | None
    spec: RunSpec
    run_dir: Path | None

    @property
    def plugins(self) -> dict[str, Any] | None:
        """The plugins' packages the checkpoint recorded (`plan_run(..., recorded=)`)."""
        return self.ckpt.extra.get("plugins") if self.ckpt is not None else None

    def check(self, plan: AlignPlan, world_size: int) -> None:
        """The resumed run must stay the same run (model, optimiser state, data stream, processes)."""
        from rocket_core.train.checkpoint import check_resume, resume_conflicts, same_run_error

        if self.ckpt is not None:
            check_resume(self.ckpt, plan.spec, world_size)
        elif changes := resume_conflicts(self.spec, plan.spec):
            raise RocketError(same_run_error(changes, self.source / "spec.yaml"))

    def finished(self, max_steps: int) -> bool:
        return self.ckpt is not None and self.ckpt.step >= max_steps

    def message(self, run_dir: Path, max_steps: int) -> str:
        """The line `rocket align` prints before it continues (or finds nothing to do)."""
        if self.ckpt is None:
            return f"no checkpoint in '{run_dir}' yet (its first save never completed): restarting the run from step 0"
        if self.finished(max_steps):
            return (f"nothing to do: the run is at step {self.ckpt.step} of {self.ckpt.step} ({self.ckpt.path}); "
                    "give a larger --max-steps to train on")
        return f"resuming {run_dir} from step {self.ckpt.step} of {max_steps} ({self.ckpt.path})"


def tracker(report_to: str) -> str | None:
    """accelerate's `log_with` for `training.report_to`; one line when that tracker's package is missing."""
    if report_to == "none":
        return None
    if importlib.util.find_spec(report_to) is None:
        raise RocketError(f"--report-to {report_to} needs the {report_to} package, which is not installed; "
                          f"pip install {report_to}, or pass --report-to none")
    return report_to


def check_inputs(spec: RunSpec) -> None:
    """What a dry run can check cheaply besides the plan: the dataset source, the cache folder, the tracker."""
    from rocket_core.data.source import local_dataset_root
    from rocket_core.paths import check_output_dir

    local_dataset_root(spec.data.dataset)
    if spec.training.teacher_cache:
        check_output_dir(spec.training.teacher_cache, "--teacher-cache")
    tracker(spec.training.report_to)


def holds_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def _checkpoint_or_none(path: Path) -> Path | None:
    from rocket_core.train.checkpoint import find_checkpoint

    try:
        return find_checkpoint(path)
    except RocketError:
        return None


def load_resume(value: str) -> Resume:
    """--resume: a local run or checkpoint folder, or `hf://ORG/NAME` (a pushed run, from the HF cache)."""
    from rocket_core.hub import resolve_source
    from rocket_core.train.checkpoint import has_checkpoint, load_checkpoint, load_spec

    source = resolve_source(value, "--resume", local_only=True)  # a missing path names the nearest run folders
    if source.parent.name == "checkpoints":
        run_dir: Path | None = source.parent.parent
    else:
        run_dir = source if holds_run(source) and _checkpoint_or_none(source) != source else None
    if (source / "spec.yaml").is_file() and not has_checkpoint(source) and _checkpoint_or_none(source) is None:
        return Resume(source, None, load_spec(source / "spec.yaml"), run_dir)
    ckpt = load_checkpoint(source)  # one line when it is neither
    return Resume(source, ckpt, ckpt.spec, run_dir)


def choose_run_dir(output_dir: Path | None, resume: Resume | None, plan: AlignPlan, dry_run: bool) -> Path:
    """-o, else the resumed run's folder, else runs/<vla>-<teacher>-<time>; a new run may not reuse a run folder."""
    from rocket_core.paths import check_output_dir

    resumed = resume.run_dir if resume is not None else None
    run_dir = output_dir or resumed
    run_dir = run_dir or Path("runs") / f"{plan.vla.name}-{plan.teacher.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_output_dir(run_dir, "--output-dir")
    is_resumed = resumed is not None and run_dir.resolve() == resumed.resolve()
    if not dry_run and not is_resumed and run_dir.is_dir() and holds_run(run_dir):
        raise RocketError(f"'{run_dir}' already holds a run; continue it with --resume {run_dir} "
                          "or choose another --output-dir")
    return run_dir


def relaunch(argv: list[str], num_processes: int) -> int:
    """Run `rocket ARGV` (without --num-processes) under torch.distributed.run with N processes; its exit code.

    Ctrl-C reaches torchrun too (same process group), which passes one SIGINT to its workers (their own
    session): they finish the step and checkpoint. This process must not kill torchrun meanwhile.
    """
    args = list(argv)
    i = args.index("--num-processes")
    del args[i : i + 2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
           "-m", "rocket_cli", *args]
    proc = subprocess.Popen(cmd)
    interrupted: list[Any] = []
    signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    code = proc.wait()
    return 130 if interrupted else code
