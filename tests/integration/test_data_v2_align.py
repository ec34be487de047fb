"""The chain on a LeRobot v2.1 video dataset mixing two LIBERO suites: `rocket data inspect` then `rocket align`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import SHARED_FIXTURES, fixture_dir, needs_fixture
from tests.robustness.harness import run_rocket

DATASET = fixture_dir("ROCKET_LEROBOT_V2_FIXTURE", SHARED_FIXTURES / "lerobot-v2") / "v2.1-video" / "dataset"
pytestmark = needs_fixture(DATASET, "ROCKET_LEROBOT_V2_FIXTURE")
TASKS = ["put the cream cheese in the bowl", "pick up the milk and place it in the basket", "turn on the stove"]


def test_align_trains_on_a_mixed_suite_v2_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = Path(shutil.copytree(DATASET, tmp_path / "ds"))
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(TASKS)))
    episodes = [json.loads(line) for line in (root / "meta/episodes.jsonl").read_text().splitlines()]
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(e | {"tasks": [TASKS[e["episode_index"]]]}) + "\n" for e in episodes))

    code, output = run_rocket("data", "inspect", str(root))
    assert code == 0, output
    assert "groups     libero_goal (2 episodes), libero_object (1 episodes)" in output
    code, output = run_rocket("align", "--preset", "tiny", "--data", str(root), "--max-steps", "2", "-o", str(tmp_path / "run"))
    assert code == 0, output
    assert (tmp_path / "run/checkpoints/step-000002").is_dir()
    cached = [json.loads(p.read_text())["groups"] for p in (root / ".rocket").glob("stats-*.json")]
    per_suite = [c for c in cached if set(c) == {"libero_goal", "libero_object"}]
    assert len(per_suite) == 1 and len(per_suite[0]["libero_object"]["actions"]["q99"]) == 7
