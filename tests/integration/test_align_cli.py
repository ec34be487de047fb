"""The README's first command on the real plugins (tiny presets, bundled data), as a user runs it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _rocket(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rocket_cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tiny_default_trains_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _rocket("align", "--vla", "openvla", "--teacher", "vggt", "--preset", "tiny", "--max-steps", "4",
                     "--output-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["align_loss"] > 0 and r["action_loss"] > 0 for r in records)
    assert (out / "checkpoints" / "step-000004" / "trainable.safetensors").is_file()
    again = _rocket("align", "--vla", "openvla", "--teacher", "vggt", "--preset", "tiny", "--output-dir", str(out))
    assert again.returncode == 2 and "already holds a run" in again.stderr


@pytest.mark.slow
def test_recipe_dry_run_prints_the_paper_settings() -> None:
    result = _rocket("align", "--recipe", "openvla-libero-rocket", "--dry-run")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "50005 steps, batch 8/process" in text and "multistep x0.1 at [10000]" in text
    assert "LoRA r 32, alpha 16, dropout 0" in text and "action + 0.5 x align" in text
    for width in ("409", "591", "1865", "2048"):
        assert width in text


@pytest.mark.slow
def test_tiny_pi0_trains_with_an_empty_camera_slot(tmp_path: Path) -> None:
    """pi0 has 3 camera slots; the bundled data fills 2, so the third is masked and its targets are zero."""
    out = tmp_path / "pi0"
    result = _rocket("align", "--vla", "pi0", "--teacher", "vggt", "--preset", "tiny", "--max-steps", "2",
                     "--output-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(0 < r["align_loss"] < 2 for r in records)
