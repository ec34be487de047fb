"""LIBERO's evaluation presets under the two reference protocols (OpenVLA-OFT and openpi).

Import-light (stdlib and `rocket_core.eval.protocol` only): the simulator worker imports it in LIBERO's own
environment.
"""
from __future__ import annotations

from rocket_core.eval.protocol import GripperMap, Protocol

# Max policy steps per LIBERO suite (OpenVLA-OFT `run_libero_eval.py` and openpi `examples/libero/main.py`).
LIBERO_MAX_STEPS = {"spatial": 220, "object": 280, "goal": 300, "10": 520, "90": 400}
FAMILIES = ("openvla-oft", "openpi")


def libero_preset(suite: str, family: str, benchmark: str = "libero") -> Protocol:
    """LIBERO protocol of a policy family (`VLAInfo.eval_family`): `openvla-oft` or `openpi` (pi0 / pi0.5);
    "" is the first (the default of a VLA that names none) and `openvla` stays accepted for `openvla-oft`."""
    if suite not in LIBERO_MAX_STEPS:
        raise KeyError(f"unknown LIBERO suite '{suite}'; use one of {', '.join(LIBERO_MAX_STEPS)}")
    if family in ("openvla-oft", "openvla", ""):
        return Protocol(
            name="openvla-oft", benchmark=benchmark, suite=suite, max_steps=LIBERO_MAX_STEPS[suite],
            env_seed=0, open_loop_steps=8, resize_method="lanczos", center_crop=0.9,
            gripper=GripperMap(rescale_01_to_pm1=True, binarize=True, invert=True),
            notes="OpenVLA-OFT experiments/robot/libero/run_libero_eval.py (NUM_ACTIONS_CHUNK 8, center_crop=True "
                  "at 90 % area, RLDS gripper 1 = open)",
        )
    if family == "openpi":
        return Protocol(
            name="openpi", benchmark=benchmark, suite=suite, max_steps=LIBERO_MAX_STEPS[suite],
            env_seed=7, open_loop_steps=5, resize_method="pad_bilinear", gripper=GripperMap(),
            notes="openpi examples/libero/main.py (replan_steps 5, resize_with_pad 224, raw gripper)",
        )
    raise KeyError(f"unknown policy family '{family}' for LIBERO; use {' or '.join(FAMILIES)}")
