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
# Instructions from two LIBERO suites with their suite, given to episode e (= its task_index, as in the fixture)
# in turn: episode e gets TASKS[e % 3].
TASKS = [("put the cream cheese in the bowl", "libero_goal"), ("pick up the milk and place it in the basket", "libero_object"),
         ("turn on the stove", "libero_goal")]


@pytest.mark.slow
def test_align_trains_on_a_mixed_suite_v2_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = Path(shutil.copytree(DATASET, tmp_path / "ds"))
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    episodes = [json.loads(line) for line in (root / "meta/episodes.jsonl").read_text().splitlines()]
    assert len(episodes) >= 2, "the fixture needs two episodes to mix two suites"
    tasks = [TASKS[e["episode_index"] % len(TASKS)] for e in episodes]
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, (t, _) in enumerate(tasks)))
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(e | {"tasks": [t]}) + "\n" for e, (t, _) in zip(episodes, tasks)))

    code, output = run_rocket("data", "inspect", str(root))
    assert code == 0, output
    suites = [s for _, s in tasks]
    assert "groups     " + ", ".join(f"{s} ({suites.count(s)} episodes)" for s in sorted(set(suites))) in output
    features = json.loads((root / "meta/info.json").read_text())["features"]
    (action_dim,), (state_dim,) = features["actions"]["shape"], features["state"]["shape"]
    config = tmp_path / "spec.yaml"  # the VLA's action and proprio widths follow the dataset's
    config.write_text(f"vla: {{options: {{action_dim: {action_dim}, proprio_dim: {state_dim}}}}}\n")
    code, output = run_rocket("align", "--preset", "tiny", "--config", str(config), "--data", str(root), "--max-steps", "2",
                              "-o", str(tmp_path / "run"))
    assert code == 0, output
    assert (tmp_path / "run/checkpoints/step-000002").is_dir()
    cached = [json.loads(p.read_text())["groups"] for p in (root / ".rocket").glob("stats-*.json")]
    per_suite = [c for c in cached if set(c) == {"libero_goal", "libero_object"}]
    assert len(per_suite) == 1 and len(per_suite[0]["libero_object"]["actions"]["q99"]) == action_dim
