"""Which dataset features are the state, the action and the cameras, and which task group each episode is in.

LeRobot datasets name their features freely (`observation.state`/`action` in LeRobot's own ports, `state`/
`actions`/`image`/`wrist_image` in physical-intelligence/libero). The key map is resolved, in order, from the
spec's explicit `data.state_key` / `data.action_key` / `data.cameras`, then from a preset for known public
datasets (matched on the Hub repo id, or named with `data.preset` for a local copy), then from the usual
names found in meta/info.json. The presets, and what a benchmark's recordings store, come from the
benchmark plugins (`BenchmarkAdapter.dataset_presets` / `dataset_conventions`).

Task groups: the reference normalises each suite with its own statistics (OpenVLA-OFT's `unnorm_key`). A
dataset mixing suites carries no suite column, so the group of an episode is read from its task string
(`BenchmarkAdapter.task_groups`: each instruction belongs to one suite). When every episode's task has a
group and more than one group occurs, each is a group; otherwise the dataset is one group, "all".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from rocket_core.contracts import BenchmarkAdapter, DatasetConventions, DatasetPreset
from rocket_core.errors import RocketError
from rocket_core.registry import get_registry

if TYPE_CHECKING:
    from rocket_core.data.lerobot import LeRobotReader
    from rocket_core.data.spec import DataSpec

ALL = "all"
CAMERA_PREFIX = "observation.images."
STATE_NAMES = ("observation.state", "state")
ACTION_NAMES = ("action", "actions")


def normalize_task(task: str) -> str:
    """Instruction text as compared across datasets: lower case, single spaces, no final full stop."""
    return " ".join(task.replace("_", " ").split()).lower().rstrip(".")


def _benchmarks() -> list[type[BenchmarkAdapter]]:
    return [record.cls for record in get_registry().plugins["benchmark"].values()]


def dataset_presets() -> dict[str, DatasetPreset]:
    """Every benchmark's key-mapping presets, by Hub id or `data.preset` name."""
    return {name: preset for bench in _benchmarks() for name, preset in bench.dataset_presets().items()}


def task_groups() -> dict[str, str]:
    """Every benchmark's task group (suite) of each instruction, in `normalize_task` form."""
    return {task: group for bench in _benchmarks() for task, group in bench.task_groups().items()}


def episode_groups(tasks: Sequence[str], mode: str = "auto") -> list[str]:
    """One group name per episode (given each episode's task): the task groups when every episode has one,
    more than one occurs and `mode` is "auto"; otherwise "all" for every episode."""
    known = task_groups()
    groups = [known.get(normalize_task(t)) for t in tasks]
    if mode == "auto" and groups and all(groups) and len(set(groups)) > 1:
        return [g for g in groups if g is not None]
    return [ALL] * len(tasks)


def dataset_conventions(dataset: str) -> DatasetConventions | None:
    """What the first benchmark that knows `dataset` (name or path) says its recordings store."""
    return next((c for c in (b.dataset_conventions(dataset) for b in _benchmarks()) if c is not None), None)


@dataclass(frozen=True)
class KeyMap:
    """The resolved feature names, and where each came from (for `rocket data inspect` and error messages)."""

    state: str
    action: str
    cameras: dict[str, str | None] = field(default_factory=dict)  # slot -> camera (None: empty slot)
    preset: str | None = None
    origin: dict[str, str] = field(default_factory=dict)  # "state"/"action"/"cameras" -> spec | preset | detected
    gripper: str | None = None
    recorded: DatasetConventions | None = None  # what the dataset's benchmark says its recordings store


def default_cameras(camera_keys: Sequence[str]) -> dict[str, str | None]:
    """Every dataset camera, in info.json order, each in a slot named after it (without `observation.images.`)."""
    return {key.removeprefix(CAMERA_PREFIX): key for key in camera_keys}


def find_preset(spec: DataSpec) -> tuple[str | None, DatasetPreset | None]:
    """The preset named by `data.preset`, else the one for `data.dataset`'s Hub id, else none."""
    presets = dataset_presets()
    if spec.preset is not None:
        if spec.preset not in presets:
            raise RocketError(f"unknown data.preset '{spec.preset}'; known: {', '.join(presets)}")
        return spec.preset, presets[spec.preset]
    name = (spec.dataset or "").removeprefix("hf://").strip("/")
    return (name, presets[name]) if name in presets else (None, None)


def resolve_keys(reader: LeRobotReader, spec: DataSpec) -> KeyMap:
    """State, action and camera keys for this dataset and spec; one error line naming the setting when none fits."""
    name, preset = find_preset(spec)
    features = [k for k in reader.features if k not in reader.camera_keys]
    origin: dict[str, str] = {}

    def pick(what: str, explicit: str | None, from_preset: str | None, usual: Sequence[str]) -> str:
        if explicit is not None:
            origin[what] = "spec"
            key = explicit
        elif from_preset is not None:
            origin[what] = f"preset {name}"
            key = from_preset
        else:
            origin[what] = "detected"
            key = next((k for k in usual if k in features), "")
            if not key:
                raise RocketError(
                    f"dataset '{reader.root}' has no {what} feature named {' or '.join(usual)}; set data.{what}_key "
                    f"to one of: {', '.join(features)}"
                )
        if key not in features:
            raise RocketError(
                f"data.{what}_key '{key}' ({origin[what]}) is not a feature of dataset '{reader.root}'; "
                f"set data.{what}_key to one of: {', '.join(features)}"
            )
        return key

    state = pick("state", spec.state_key, preset.state if preset else None, STATE_NAMES)
    action = pick("action", spec.action_key, preset.action if preset else None, ACTION_NAMES)
    if spec.cameras is not None:
        cameras: dict[str, str | None] = dict(spec.cameras)
        origin["cameras"] = "spec"
    elif preset is not None and all(c in reader.camera_keys for c in preset.cameras.values()):
        cameras, origin["cameras"] = dict(preset.cameras), f"preset {name}"
    else:
        cameras, origin["cameras"] = {}, "detected"  # every camera, in info.json order (VLADataset maps them)
    return KeyMap(state, action, cameras, name, origin, preset.gripper if preset else None,
                  dataset_conventions(spec.dataset or "bundled"))
