"""LIBERO-Plus: variant -> perturbation dimension, asset skips, per-dimension tables (no simulator)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rocket_core.eval.runner import EvalConfig, SuitePlan, list_tasks, run_eval
from rocket_core.eval.server import serve_callable
from rocket_plugins.benchmarks.libero_plus import DIMENSIONS, LiberoPlusBenchmark
from rocket_plugins.benchmarks.libero_plus_sim import dimension, skip_reason
from rocket_plugins.benchmarks.toy import ToyBenchmark

BASE = "pick_up_the_black_bowl_from_table_center_and_place_it_on_the_plate"


def test_dimension_of_variant_names() -> None:
    cases = {
        f"{BASE}_view_0_0_100_0_0_initstate_3": "robot_init",
        f"{BASE}_view_10_-5_110_0_0_initstate_0": "camera",
        f"{BASE}_language_2_view_0_0_100_0_0_initstate_0": "language",
        f"{BASE}_view_0_0_100_0_0_initstate_0_noise_3": "noise",
        f"{BASE}_light_4": "light",
        f"{BASE}_table_2": "background",  # "from_table_center" in the base name is not a table variant
        f"{BASE}_tb_12": "background",
        f"{BASE}_add_10": "layout",
        f"{BASE}_level1_sample1": "layout",
    }
    assert {n: dimension(n) for n in cases} == cases
    assert set(cases.values()) == set(DIMENSIONS)


def test_skips_name_the_reason_and_the_fetch_command() -> None:
    for dim in ("light", "background", "layout"):
        reason, fetch = skip_reason(dim, plus_assets=False)  # type: ignore[misc]
        assert "Sylvest/LIBERO-plus" in reason and fetch == "rocket eval --setup libero_plus --assets"
        assert skip_reason(dim, plus_assets=True) is None
    for dim in ("camera", "robot_init", "language", "noise"):
        assert skip_reason(dim, plus_assets=False) is None
    p = LiberoPlusBenchmark.protocol("spatial", "openvla")
    assert p.trials_per_task == 1 and p.max_steps == 220 and p.name == "libero_plus-openvla-oft"


class GroupedToy(ToyBenchmark):
    name = "toy"

    @classmethod
    def group_of(cls, task: dict[str, Any]) -> str | None:
        return task.get("group")


def test_results_table_per_dimension_with_skips(tmp_path: Path) -> None:
    proto = ToyBenchmark.protocol("reach", "openvla")
    tasks = list_tasks(ToyBenchmark, "reach", proto)
    tasks[0]["group"], tasks[1]["group"] = "camera", "language"
    tasks[2].update(group="light", skip="light variants need LIBERO-Plus assets.zip", fetch="rocket eval --setup x")
    meta = {"vla": "zero", "num_images": 2, "state_dim": 8, "action_dim": 7, "chunk_size": 4}
    with serve_callable(meta, lambda o: np.zeros((4, 7)), port=0) as server:
        cfg = EvalConfig(benchmark=GroupedToy, suites=[SuitePlan("reach", proto, proto, tasks)], url=server.url,
                         out=tmp_path, episodes=[0], videos="none", policy=meta)
        res = run_eval(cfg, progress=False)
    groups = res["suites"]["reach"]["groups"]
    assert groups["camera"]["episodes"] == 1 and groups["language"]["tasks_run"] == 1
    light = groups["light"]
    assert light["episodes"] == 0 and light["success_rate"] is None and light["tasks_skipped"] == 1
    assert light["skip_reasons"] == {"light variants need LIBERO-Plus assets.zip": "rocket eval --setup x"}
    skipped = [t for t in res["suites"]["reach"]["tasks"] if t["status"] == "skipped"]
    assert skipped and "successes" not in skipped[0]  # neither a failure nor a success
    assert res["overall"]["episodes"] == 2
    assert not (tmp_path / "episodes/reach/task-002").exists()
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(res))
