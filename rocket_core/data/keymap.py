"""Which dataset features are the state, the action and the cameras, and which task group each episode is in.

LeRobot datasets name their features freely (`observation.state`/`action` in LeRobot's own ports, `state`/
`actions`/`image`/`wrist_image` in physical-intelligence/libero). The key map is resolved, in order, from the
spec's explicit `data.state_key` / `data.action_key` / `data.cameras`, then from a preset for known public
datasets (matched on the Hub repo id, or named with `data.preset` for a local copy), then from the usual
names found in meta/info.json.

Task groups: the reference normalises each LIBERO suite with its own statistics (OpenVLA-OFT's
`unnorm_key`). A dataset mixing suites (physical-intelligence/libero holds libero_10, goal, object and
spatial) carries no suite column, so the suite of an episode is read from its task string: each of the 40
instructions of the four suites belongs to exactly one suite (LIBERO's `libero_suite_task_map`, the BDDL
file name without its scene prefix). When every episode's task is one of them and more than one suite
occurs, each suite is a group; otherwise the dataset is one group, "all".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from rocket_core.errors import RocketError

if TYPE_CHECKING:
    from rocket_core.data.lerobot import LeRobotReader
    from rocket_core.data.spec import DataSpec

ALL = "all"
CAMERA_PREFIX = "observation.images."
STATE_NAMES = ("observation.state", "state")
ACTION_NAMES = ("action", "actions")
LIBERO_GRIPPER = "raw LIBERO: -1 open, +1 close"


@dataclass(frozen=True)
class DatasetPreset:
    """Feature names (and known conventions) of one public dataset."""

    state: str
    action: str
    cameras: dict[str, str]  # VLA image slot -> dataset camera, in slot order
    gripper: str | None = None  # the gripper command's convention, as stored
    note: str = ""


_LIBERO_V3 = dict(state="observation.state", action="action",
                  cameras={"image": "observation.images.image", "wrist_image": "observation.images.wrist_image"},
                  gripper=LIBERO_GRIPPER)
PRESETS: dict[str, DatasetPreset] = {
    "physical-intelligence/libero": DatasetPreset(
        state="state", action="actions", cameras={"image": "image", "wrist_image": "wrist_image"},
        gripper=LIBERO_GRIPPER,
        note="LeRobot v2.0, the four LIBERO suites mixed (libero_10, goal, object, spatial; no-noop demos), "
             "images rotated 180 deg, no q01/q99 (computed per suite)",
    ),
    **{f"IPEC-COMMUNITY/libero_{suite}_no_noops_1.0.0_lerobot": DatasetPreset(
        **_LIBERO_V3, note=f"LeRobot v2.0 port of OpenVLA's libero_{suite}_no_noops RLDS")  # type: ignore[arg-type]  # **dict: checked by the dataclass
       for suite in ("spatial", "object", "goal", "10")},
}

# LIBERO's four evaluation suites (libero_suite_task_map; the instruction is the name after its scene prefix).
_SUITE_TASKS: dict[str, tuple[str, ...]] = {
    "libero_spatial": tuple(f"pick_up_the_black_bowl_{where}_and_place_it_on_the_plate" for where in (
        "between_the_plate_and_the_ramekin", "next_to_the_ramekin", "from_table_center", "on_the_cookie_box",
        "in_the_top_drawer_of_the_wooden_cabinet", "on_the_ramekin", "next_to_the_cookie_box", "on_the_stove",
        "next_to_the_plate", "on_the_wooden_cabinet")),
    "libero_object": tuple(f"pick_up_the_{thing}_and_place_it_in_the_basket" for thing in (
        "alphabet_soup", "cream_cheese", "salad_dressing", "bbq_sauce", "ketchup", "tomato_sauce", "butter", "milk",
        "chocolate_pudding", "orange_juice")),
    "libero_goal": (
        "open_the_middle_drawer_of_the_cabinet", "put_the_bowl_on_the_stove", "put_the_wine_bottle_on_top_of_the_cabinet",
        "open_the_top_drawer_and_put_the_bowl_inside", "put_the_bowl_on_top_of_the_cabinet",
        "push_the_plate_to_the_front_of_the_stove", "put_the_cream_cheese_in_the_bowl", "turn_on_the_stove",
        "put_the_bowl_on_the_plate", "put_the_wine_bottle_on_the_rack"),
    "libero_10": (
        "LIVING_ROOM_SCENE2_put_both_the_alphabet_soup_and_the_tomato_sauce_in_the_basket",
        "LIVING_ROOM_SCENE2_put_both_the_cream_cheese_box_and_the_butter_in_the_basket",
        "KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it",
        "KITCHEN_SCENE4_put_the_black_bowl_in_the_bottom_drawer_of_the_cabinet_and_close_it",
        "LIVING_ROOM_SCENE5_put_the_white_mug_on_the_left_plate_and_put_the_yellow_and_white_mug_on_the_right_plate",
        "STUDY_SCENE1_pick_up_the_book_and_place_it_in_the_back_compartment_of_the_caddy",
        "LIVING_ROOM_SCENE6_put_the_white_mug_on_the_plate_and_put_the_chocolate_pudding_to_the_right_of_the_plate",
        "LIVING_ROOM_SCENE1_put_both_the_alphabet_soup_and_the_cream_cheese_box_in_the_basket",
        "KITCHEN_SCENE8_put_both_moka_pots_on_the_stove",
        "KITCHEN_SCENE6_put_the_yellow_and_white_mug_in_the_microwave_and_close_it"),
}
_SCENE = re.compile(r"^[A-Z_]*SCENE\d+_")


def normalize_task(task: str) -> str:
    """Instruction text as compared across datasets: lower case, single spaces, no final full stop."""
    return " ".join(task.replace("_", " ").split()).lower().rstrip(".")


LIBERO_TASK_SUITE: dict[str, str] = {
    normalize_task(_SCENE.sub("", name)): suite for suite, names in _SUITE_TASKS.items() for name in names
}


def libero_suite(task: str) -> str | None:
    """The LIBERO suite whose instruction this is, or None."""
    return LIBERO_TASK_SUITE.get(normalize_task(task))


def episode_groups(tasks: Sequence[str], mode: str = "auto") -> list[str]:
    """One group name per episode (given each episode's task): LIBERO suites when the episodes are all LIBERO
    tasks from more than one suite and `mode` is "auto"; otherwise "all" for every episode."""
    suites = [libero_suite(t) for t in tasks]
    if mode == "auto" and suites and all(suites) and len(set(suites)) > 1:
        return [s for s in suites if s is not None]
    return [ALL] * len(tasks)


@dataclass(frozen=True)
class KeyMap:
    """The resolved feature names, and where each came from (for `rocket data inspect` and error messages)."""

    state: str
    action: str
    cameras: dict[str, str | None] = field(default_factory=dict)  # slot -> camera (None: empty slot)
    preset: str | None = None
    origin: dict[str, str] = field(default_factory=dict)  # "state"/"action"/"cameras" -> spec | preset | detected
    gripper: str | None = None


def default_cameras(camera_keys: Sequence[str]) -> dict[str, str | None]:
    """Every dataset camera, in info.json order, each in a slot named after it (without `observation.images.`)."""
    return {key.removeprefix(CAMERA_PREFIX): key for key in camera_keys}


def find_preset(spec: DataSpec) -> tuple[str | None, DatasetPreset | None]:
    """The preset named by `data.preset`, else the one for `data.dataset`'s Hub id, else none."""
    if spec.preset is not None:
        if spec.preset not in PRESETS:
            raise RocketError(f"unknown data.preset '{spec.preset}'; known: {', '.join(PRESETS)}")
        return spec.preset, PRESETS[spec.preset]
    name = (spec.dataset or "").removeprefix("hf://").strip("/")
    return (name, PRESETS[name]) if name in PRESETS else (None, None)


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
    return KeyMap(state, action, cameras, name, origin, preset.gripper if preset else None)
