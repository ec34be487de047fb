"""The dataset tests pass on a LeRobot fixture set of other shapes, so they read every shape, count and task.

`tests/derived_fixtures.py` derives that set from the fixture folders in use (one episode and one state and
action dimension less); the fixture-taking dataset tests then run on it in a child pytest with `CI=true`
(a missing folder fails there instead of skipping).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_FIXTURES, fixture_dir, missing_fixture_reason
from tests.derived_fixtures import derive

V3 = fixture_dir("ROCKET_LEROBOT_FIXTURE", SHARED_FIXTURES / "lerobot-dataset")
V2 = fixture_dir("ROCKET_LEROBOT_V2_FIXTURE", SHARED_FIXTURES / "lerobot-v2")
DATASET_TESTS = [
    "tests/parity/test_lerobot_parity.py",
    "tests/parity/test_lerobot_v2_parity.py",
    "tests/unit/test_data_v2.py",
    "tests/integration/test_data_v2_align.py",
    "tests/robustness/test_data_inputs.py",
    "tests/unit/test_lerobot_reader.py::test_missing_video_file",
]


@pytest.mark.slow
@pytest.mark.fixture
def test_dataset_tests_pass_on_a_fixture_set_of_other_shapes(tmp_path: Path) -> None:
    for folder, variable in ((V3, "ROCKET_LEROBOT_FIXTURE"), (V2, "ROCKET_LEROBOT_V2_FIXTURE")):
        if not folder.is_dir():
            pytest.skip(missing_fixture_reason(folder, variable))
    env = derive(V3, V2, tmp_path / "derived")
    sources = [*V3.glob("*/meta/info.json"), *V2.glob("*/dataset/meta/info.json")]
    assert sources, f"no LeRobot dataset under {V3} or {V2}"
    for source in sources:
        derived = Path(str(source).replace(str(V3), env["ROCKET_LEROBOT_FIXTURE"]).replace(str(V2), env["ROCKET_LEROBOT_V2_FIXTURE"]))
        before, after = json.loads(source.read_text()), json.loads(derived.read_text())
        assert after["total_episodes"] == before["total_episodes"] - 1, derived
        narrowed = [k for k, f in after["features"].items() if f["shape"] != before["features"][k]["shape"]]
        assert len(narrowed) == 2, f"{derived}: state and action should each lose a dimension, changed: {narrowed}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--full", "--basetemp", str(tmp_path / "run"),
         *DATASET_TESTS],
        cwd=REPO, env=os.environ | env | {"CI": "true"}, capture_output=True, text=True, timeout=600,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary)}
    assert result.returncode == 0 and counts.get("passed", 0) > 0, f"{summary}\n{result.stdout[-6000:]}"
    assert counts.keys() == {"passed"}, summary
