"""Hostile CLI inputs (specs, configs, layer maps, paths, eval ranges, policy sources): one line each, exit 2.

One row per input of issue 14 (points 9 and 10) and issue 15 (point 4, point 7's layer-map wording),
each with the fragment its one error line must hold. Rows run in-process in their own `tmp_path`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import SHARED_FIXTURES, fixture_dir, missing_fixture_reason
from tests.robustness.harness import Case, check

ALIGN = ("align", "--preset", "tiny", "--dry-run")
EVAL = ("eval", "--benchmark", "toy")


def config(text: str | bytes, name: str = "cfg.yaml") -> Callable[[Path], tuple[str, ...]]:
    """A row whose `rocket align --dry-run` reads the config file `name` holding `text`."""

    def setup(tmp: Path) -> tuple[str, ...]:
        data = text.encode() if isinstance(text, str) else text
        (tmp / name).write_bytes(data)
        return (*ALIGN, "-c", name)

    return setup


def with_file(name: str, args: tuple[str, ...]) -> Callable[[Path], tuple[str, ...]]:
    """A row where `name` exists as a plain file (for flags that need a folder)."""

    def setup(tmp: Path) -> tuple[str, ...]:
        (tmp / name).write_text("not a folder")
        return args

    return setup


def with_dirs(names: tuple[str, ...], args: tuple[str, ...]) -> Callable[[Path], tuple[str, ...]]:
    def setup(tmp: Path) -> tuple[str, ...]:
        for name in names:
            (tmp / name).mkdir(parents=True)
        return args

    return setup


def read_only_dir(args: tuple[str, ...]) -> Callable[[Path], tuple[str, ...]]:
    def setup(tmp: Path) -> tuple[str, ...]:
        (tmp / "ro").mkdir()
        (tmp / "ro").chmod(0o555)
        return args

    return setup


def long_task(tmp: Path) -> tuple[str, ...]:
    """A LeRobot dataset whose every task is 100,000 characters (once tried to allocate 80 GB)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = fixture_dir("ROCKET_LEROBOT_FIXTURE", SHARED_FIXTURES / "lerobot-dataset") / "image_mode"
    if not source.is_dir():
        pytest.skip(missing_fixture_reason(source, "ROCKET_LEROBOT_FIXTURE"))
    shutil.copytree(source, tmp / "ds")
    table = pq.read_table(tmp / "ds" / "meta" / "tasks.parquet")
    data = table.to_pydict()
    data["task"] = ["pick up " * 12_500 + str(i) for i in range(len(data["task"]))]
    pq.write_table(pa.table(data, schema=table.schema), tmp / "ds" / "meta" / "tasks.parquet")
    return ("align", "--vla", "openvla", "--teacher", "vggt", "--preset", "tiny", "--data", "ds", "--max-steps", "1",
            "--batch-size", "1", "-o", "run")


CASES = [
    # spec values (issue 14, point 10)
    Case("lr-inf", "training.learning_rate: Input should be a finite number",
         setup=config("training:\n  learning_rate: .inf\n")),
    Case("coefficient-inf", "alignment.coefficient: Input should be a finite number", (*ALIGN, "--coefficient", "inf")),
    Case("coefficient-nan", "alignment.coefficient: Input should be a finite number", (*ALIGN, "--coefficient", "nan")),
    Case("weight-decay-inf", "training.weight_decay: Input should be a finite number",
         setup=config("training:\n  weight_decay: .inf\n")),
    Case("lora-alpha-inf", "training.lora.alpha: Input should be a finite number",
         setup=config("training:\n  lora:\n    alpha: .inf\n")),
    Case("augment-brightness-inf", "data.augment.brightness: Input should be a finite number",
         setup=config("data:\n  augment:\n    brightness: .inf\n")),
    Case("cosine-eps-negative", "alignment.cosine_eps: Input should be greater than 0",
         setup=config("alignment:\n  cosine_eps: -0.1\n")),
    Case("batch-size-bool", "training.batch_size: expected a number, not true/false",
         setup=config("training:\n  batch_size: true\n")),
    Case("layers-bool", "expected a number, not true/false",
         setup=config("layers:\n  vla: [true, 2]\n  teacher: [1, 2]\n")),
    Case("betas-out-of-range", "betas must each lie in [0, 1)", setup=config("training:\n  betas: [0.9, 1.5]\n")),
    Case("seed-negative", "training.seed: Input should be greater than or equal to 0", (*ALIGN, "--seed", "-1")),
    Case("milestones-negative", "milestones [-3] lie outside the run",
         setup=config("training:\n  milestones: [-3]\n")),
    Case("milestones-past-the-run", "milestones [100] lie outside the run (steps 1..50)",
         setup=config("training:\n  max_steps: 50\n  milestones: [10, 100]\n")),
    # config files (issue 14, point 9 and 10)
    Case("duplicate-yaml-keys", "duplicate key 'seed'", setup=config("training:\n  seed: 1\n  seed: 2\n")),
    Case("duplicate-json-keys", "duplicate key 'seed'",
         setup=config('{"training": {"seed": 1, "seed": 2}}', "cfg.json")),
    Case("binary-config", "is not a text file", setup=config(bytes(range(256)) * 4)),
    Case("nul-config", "is not a text file", setup=config(b"training:\x00\n")),
    # layer selection
    Case("balanced-too-many", "cannot pick 1000 balanced pairs", (*ALIGN, "--layers", "balanced:1000")),
    Case("select-k-too-many", "cannot pick 30 balanced pairs: the VLA has 4 blocks and the teacher 24 layers",
         ("select-layers", "-k", "30", "--vla-layers", "4", "--teacher-layers", "24")),
    Case("select-negative-offset", "--vla-offset must be 0 or more",
         ("select-layers", "-k", "2", "--vla-layers", "4", "--teacher-layers", "4", "--vla-offset", "-50")),
    Case("select-output-parent-is-file", "'f' is a file, not a folder",
         setup=with_file("f", ("select-layers", "-k", "2", "--vla-layers", "4", "--teacher-layers", "4", "-o", "f/m.yaml"))),
    Case("select-output-dir", "-o 'out' is a folder",
         setup=with_dirs(("out",), ("select-layers", "-k", "2", "--vla-layers", "4", "--teacher-layers", "4", "-o", "out"))),
    Case("layers-file-missing", "layer-map file 'nope.yaml' does not exist", (*ALIGN, "--layers", "nope.yaml")),
    # output paths, checked before any work
    Case("align-output-is-file", "--output-dir 'f' is a file, not a folder", setup=with_file("f", (*ALIGN, "-o", "f"))),
    Case("align-output-hub", "--output-dir takes a local folder", (*ALIGN, "-o", "hf://org/run")),
    Case("teacher-cache-is-file", "--teacher-cache 'f' is a file", setup=with_file("f", (*ALIGN, "--teacher-cache", "f"))),
    Case("cache-dir-is-file", "--cache-dir 'f' is a file",
         setup=with_file("f", ("cache", "build", "--preset", "tiny", "--layers", "1", "--cache-dir", "f"))),
    Case("eval-output-is-file", "--output-dir 'f' is a file", setup=with_file("f", (*EVAL, "--vla", "openvla", "-o", "f"))),
    Case("profile-output-is-file", "--output-dir 'f' is a file",
         setup=with_file("f", ("profile", "cka", "--preset", "tiny", "-o", "f"))),
    Case("teacher-preview-output-is-dir", "--output 'out' is a folder",
         setup=with_dirs(("out",), ("teacher", "preview", "--images", "a.png", "--preset", "tiny", "-o", "out"))),
    # eval ranges
    Case("eval-trials-0", "--trials must be at least 1", (*EVAL, "--trials", "0")),
    Case("eval-max-steps-negative", "--max-steps must be at least 1", (*EVAL, "--max-steps", "-5")),
    Case("eval-open-loop-0", "--open-loop-steps must be at least 1", (*EVAL, "--open-loop-steps", "0")),
    Case("eval-seed-negative", "--seed must lie in 0 .. 2^32-1", (*EVAL, "--seed", "-1")),
    Case("push-missing-checkpoint", "--checkpoint 'runs/nope' does not exist; nearest existing folders: runs/a",
         setup=with_dirs(("runs/a",), ("push", "--checkpoint", "runs/nope", "--repo-id", "org/x", "--dry-run"))),
    # local paths are local (issue 15, point 4)
    Case("resume-missing-run", "--resume 'runs/nope' does not exist; nearest existing folders: runs/nop",
         setup=with_dirs(("runs/nop/checkpoints", "runs/other"), (*ALIGN, "--resume", "runs/nope"))),
    Case("resume-hub-explicit", "rocket pull org/none", (*ALIGN, "--resume", "hf://org/none")),
    Case("policy-http", "use ws://127.0.0.1:8000", (*EVAL, "--policy", "http://127.0.0.1:8000")),
    Case("policy-missing-run", "--policy 'runs/nope' does not exist",
         setup=with_dirs(("runs/a",), (*EVAL, "--policy", "runs/nope"))),
    Case("policy-missing-replay", "does not exist", (*EVAL, "--policy", "replay:nope")),
    # a 100,000-character task (issue 14, point 9): bounded with a clear line
    Case("task-100k-characters", "openvla prompts are limited to 512 tokens", setup=long_task),
]

ROOT_SKIP = pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
CASES_AS_USER = [
    Case("teacher-cache-read-only", "--teacher-cache 'ro' is read-only", setup=read_only_dir((*ALIGN, "--teacher-cache", "ro"))),
    Case("output-under-read-only", "is read-only", setup=read_only_dir((*ALIGN, "-o", "ro/run"))),
]


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.fixture) if c.setup is long_task else c for c in CASES]
                         + [pytest.param(c, marks=ROOT_SKIP) for c in CASES_AS_USER], ids=lambda c: c.id)
def test_hostile_cli_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


def test_read_only_check_without_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the root-skipped rows check, with the permission answer faked (root may write anywhere)."""
    import rocket_core.paths as paths

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(paths, "_writable", lambda folder: Path(folder).name != "ro")
    check(Case("ro-cache", "--teacher-cache 'ro' is read-only", (*ALIGN, "--teacher-cache", "ro")), tmp_path)
    check(Case("ro-output", "--output-dir 'ro/run' cannot be created: 'ro' is read-only", (*ALIGN, "-o", "ro/run")),
          tmp_path)


def test_error_lines_keep_brackets() -> None:
    """Messages quote shapes and user input verbatim: rich markup in them must not vanish."""
    import rocket_cli.common as common

    with common.err_console.capture() as captured:
        common.fail("expected [height, width, 3] but got [bold]x[/bold]")
    assert "expected [height, width, 3] but got [bold]x[/bold]" in captured.get()
