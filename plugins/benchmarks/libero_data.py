"""What LIBERO's datasets hold: key-mapping presets of the public ports, the suite of each instruction and
the conventions of the recordings (frames stored rotated 180 degrees, an 8-dim eef proprio).

Task groups: the reference normalises each LIBERO suite with its own statistics (OpenVLA-OFT's
`unnorm_key`). A dataset mixing suites (physical-intelligence/libero holds libero_10, goal, object and
spatial) carries no suite column, so the suite of an episode is read from its task string: each of the 40
instructions of the four suites belongs to exactly one suite (LIBERO's `libero_suite_task_map`, the BDDL
file name without its scene prefix).
"""
from __future__ import annotations

import re

from rocket_core.contracts import DatasetConventions, DatasetPreset
from rocket_core.data.keymap import normalize_task

LIBERO_GRIPPER = "raw LIBERO: -1 open, +1 close"
RECORDED = DatasetConventions(orientation="rotated_180", state="eef_pos+axis_angle+gripper_qpos", state_dim=8)

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
        **_LIBERO_V3, note=f"LeRobot v2.0 port of OpenVLA's libero_{suite}_no_noops RLDS")  # type: ignore[arg-type]
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

LIBERO_TASK_SUITE: dict[str, str] = {
    normalize_task(_SCENE.sub("", name)): suite for suite, names in _SUITE_TASKS.items() for name in names
}

