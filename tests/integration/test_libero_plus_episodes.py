"""LIBERO-Plus for real: one episode per perturbation dimension whose assets exist; the others are
reported as skipped with the reason and the fetch command. Needs `rocket eval --setup libero_plus`
(in CI, CI=true runs it; elsewhere the test is skipped with that command)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rocket_core.eval.runner import EvalConfig, SuitePlan, list_tasks, run_eval
from rocket_core.eval.server import serve_callable
from rocket_plugins.benchmarks.libero_plus import LiberoPlusBenchmark

pytestmark = pytest.mark.sim

REPO = Path(__file__).resolve().parents[2]
STEPS = 8


@pytest.fixture(scope="module")
def plus_env() -> None:
    env = LiberoPlusBenchmark.env()
    assert env is not None
    if not env.ready():
        if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
            pytest.skip(f"LIBERO-Plus is not set up ({env.path}); run: rocket eval --setup libero_plus")
        code = ("from rocket_plugins.benchmarks.libero_plus import LiberoPlusBenchmark as B\n"
                "from rocket_core.eval.envs import system_installs\n"
                "with system_installs(True): B.setup()")  # CI agrees to the system packages (--yes)
        res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=1800)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def test_one_episode_per_available_dimension(plus_env: None, tmp_path: Path) -> None:
    preset = LiberoPlusBenchmark.protocol("spatial", "openvla")
    proto = preset.replace(max_steps=STEPS)
    tasks = list_tasks(LiberoPlusBenchmark, "spatial", proto)
    first: dict[str, int] = {}
    for t in tasks:
        first.setdefault(t["group"], t["index"])
    runnable = {g: i for g, i in first.items() if not tasks[i].get("skip")}
    assert {"camera", "language", "robot_init"} <= set(runnable)
    meta = {"vla": "zero", "num_images": 2, "state_dim": 8, "action_dim": 7, "chunk_size": 8}
    with serve_callable(meta, lambda o: np.zeros((8, 7)), port=0) as server:
        cfg = EvalConfig(benchmark=LiberoPlusBenchmark, suites=[SuitePlan("spatial", proto, preset, tasks)],
                         url=server.url, out=tmp_path, workers=2, tasks=sorted(first.values()), episodes=[0],
                         videos="none", policy=meta)
        res = run_eval(cfg, progress=False)
    groups = res["suites"]["spatial"]["groups"]
    for g in runnable:
        assert groups[g]["episodes"] == 1, g
    for g in set(first) - set(runnable):
        assert groups[g]["episodes"] == 0 and groups[g]["success_rate"] is None
        assert any("rocket eval --setup libero_plus --assets" == f for f in groups[g]["skip_reasons"].values())
    records = [json.loads(p.read_text()) for p in tmp_path.glob("episodes/**/ep-*.json")]
    assert len(records) == len(runnable) and all(r["env_steps"] == STEPS + 10 or r["success"] for r in records)
