"""A newcomer's first commands (issue 20): a light dry run that checks the data, `bundled`, trackers, `rocket plot`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rocket_core.train.run as run_module
from rocket_core.analysis.curves import extract_series, read_metrics
from tests.robustness.harness import assert_one_line_error, run_rocket

REPO = Path(__file__).resolve().parents[2]
# Runs the CLI in-process, then prints which heavy packages it imported.
PROBE = """
import sys
from rocket_cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, f"exit {exc.code}"
print("HEAVY:", " ".join(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers"})))
"""


def test_the_recipe_dry_run_imports_neither_torch_nor_transformers() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", PROBE, "align", "--recipe", "openvla-libero-rocket", "--dry-run"],
                            capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "12,595,200 parameters" in result.stdout  # the plan is still computed, without building anything
    assert result.stdout.strip().splitlines()[-1] == "HEAVY:", result.stdout


def test_a_dry_run_checks_that_the_dataset_exists(tmp_path: Path) -> None:
    code, out = run_rocket("align", "--preset", "tiny", "--dry-run", "--data", "./no/such/dataset", cwd=tmp_path)
    assert_one_line_error(code, out, "dataset folder './no/such/dataset' does not exist")
    (tmp_path / "not-a-dataset").mkdir()
    code, out = run_rocket("align", "--preset", "tiny", "--dry-run", "--data", "not-a-dataset", cwd=tmp_path)
    assert_one_line_error(code, out, "is not a LeRobot dataset (no meta/info.json)")


def test_bundled_names_the_shipped_dataset(tmp_path: Path) -> None:
    code, out = run_rocket("data", "inspect", "bundled")
    assert code == 0 and "format     LeRobot v3.0" in out, out
    code, out = run_rocket("align", "--preset", "tiny", "--dry-run", "--data", "bundled", cwd=tmp_path)
    assert code == 0 and "data bundled" in out, out


def test_a_missing_tracker_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module.importlib.util, "find_spec", lambda name: None)
    code, out = run_rocket("align", "--preset", "tiny", "--dry-run", "--report-to", "wandb", cwd=tmp_path)
    assert_one_line_error(code, out, "--report-to wandb needs the wandb package, which is not installed; pip install wandb")
    code, out = run_rocket("align", "--preset", "tiny", "--dry-run", "--report-to", "mlflow", cwd=tmp_path)
    assert_one_line_error(code, out, "report_to")


def _metrics(folder: Path) -> Path:
    folder.mkdir()
    lines = [{"step": s, "action_loss": 1.0 / s, "align_loss": 0.5 - 0.01 * s, "lr": 1e-3 if s < 5 else 1e-4,
              "align/pair0_v2_t2": 0.6 - 0.01 * s} for s in range(1, 11)]
    lines.append({"step": 10, "action_loss": 0.05, "align_loss": 0.3, "lr": 1e-4})  # a resumed run rewrote step 10
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


def test_plot_series_come_from_the_metrics(tmp_path: Path) -> None:
    series = extract_series(read_metrics(_metrics(tmp_path / "run") / "metrics.jsonl"))
    assert list(series) == ["action_loss", "align_loss", "align/pair0_v2_t2", "lr"]
    assert series["action_loss"] == (list(range(1, 11)), [1.0 / s for s in range(1, 10)] + [0.05])
    assert series["lr"][1][3:5] == [1e-3, 1e-4]
    assert series["align/pair0_v2_t2"][0] == list(range(1, 10))  # the rewritten step has no per-pair value


def test_rocket_plot_writes_a_png(tmp_path: Path) -> None:
    run = _metrics(tmp_path / "run")
    code, out = run_rocket("plot", str(run))
    png = run / "metrics.png"
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000, out
    code, _ = run_rocket("plot", str(run), "-o", str(tmp_path / "curves.png"))
    assert code == 0 and (tmp_path / "curves.png").is_file()


@pytest.mark.parametrize("content,fragment", [(None, "no metrics.jsonl"), ("", "holds no steps yet"),
                                              ('{"step": 1}\nnot json\n', "line 2 is not a metrics record")])
def test_rocket_plot_refuses_bad_metrics(tmp_path: Path, content: str | None, fragment: str) -> None:
    (tmp_path / "run").mkdir()
    if content is not None:
        (tmp_path / "run" / "metrics.jsonl").write_text(content)
    assert_one_line_error(*run_rocket("plot", str(tmp_path / "run")), fragment)


@pytest.mark.parametrize("args,fragment", [
    (("align", "--vla", "openvlaa", "--dry-run"), "unknown vla plugin 'openvlaa' (did you mean 'openvla'?)"),
    (("align", "--recipe", "openvla-libero-rockt", "--dry-run"),
     "unknown recipe 'openvla-libero-rockt' (did you mean 'openvla-libero-rocket'?)"),
    (("eval", "--benchmark", "libero_spatail", "--preset", "tiny"),
     "unknown benchmark 'libero_spatail' (did you mean 'libero_spatial'?)"),
])
def test_typos_get_a_suggestion(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(*run_rocket(*args, cwd=tmp_path), fragment)


def test_a_mistyped_command_gets_a_suggestion() -> None:
    code, out = run_rocket("algin")
    assert code == 2 and "no such command 'algin' (did you mean 'align'?)" in out, out


def test_an_installed_tracker_goes_to_accelerate(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_module.tracker("none") is None
    monkeypatch.setattr(run_module.importlib.util, "find_spec", lambda name: object())
    assert run_module.tracker("tensorboard") == "tensorboard"
