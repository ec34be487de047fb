"""Evaluation protocols, pinned as presets and written into every result file.

A protocol is everything that changes a success rate besides the policy: trials per task, seeds, step
limits, the wait steps before the policy acts, camera rendering and preprocessing, the proprio vector,
how many actions of a chunk run open-loop, how the gripper output is post-processed, the centre crop and
the normalisation key. A preset holds what belongs to the benchmark and what its policy family assumes of
the data (OFT: RLDS gripper, 90 %-area crops); `apply_conventions` replaces those assumptions with what
the checkpoint's `conventions.json` says. Every field that then differs from the preset is listed under
`deviations` in the results, with its reason.

Import-light (stdlib only): simulator workers import it inside their own environments.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

WAIT_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # no motion, gripper open: what the references wait with


@dataclass(frozen=True)
class GripperMap:
    """Post-processing of the last action dimension, in this order."""

    rescale_01_to_pm1: bool = False  # [0, 1] -> [-1, 1]  (OFT `normalize_gripper_action`)
    binarize: bool = False  # sign (0 -> +1 as np.sign would give 0; OFT uses sign after rescale)
    invert: bool = False  # x -> -x (OFT `invert_gripper_action`, OpenVLA family only)


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol. `name` is the preset it came from."""

    name: str
    benchmark: str
    suite: str
    trials_per_task: int = 50
    seed: int = 7  # global seed (numpy / policy sampling)
    env_seed: int = 0  # `env.seed(...)` before every reset (OFT: 0; openpi: the global seed)
    max_steps: int = 220  # policy steps after the wait steps
    wait_steps: int = 10  # steps with `wait_action` before the policy acts (objects settle)
    wait_action: tuple[float, ...] = WAIT_ACTION
    render_size: int = 256  # simulator camera resolution (square)
    cameras: tuple[str, ...] = ("agentview", "robot0_eye_in_hand")  # in the policy's camera-slot order
    rotate_180: bool = True  # img[::-1, ::-1], as the training data (LIBERO renders upside down)
    resize_size: int = 224  # image side sent to the policy
    resize_method: str = "lanczos"  # "lanczos" (OFT: lanczos3) or "pad_bilinear" (openpi resize_with_pad)
    proprio: str = "eef_pos+axis_angle+gripper_qpos"  # 3 + 3 + 2 = 8 dims
    open_loop_steps: int = 8  # actions of each chunk executed before re-querying the policy
    action_dim: int = 7
    gripper: GripperMap = field(default_factory=GripperMap)
    center_crop: float = 1.0  # area fraction of the centred crop, resized back (1.0: none; OFT: 0.9)
    unnorm_key: str | None = None  # the checkpoint's normalisation group of this suite (None: its only one)
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        data = dict(data)
        data["gripper"] = GripperMap(**data.get("gripper", {}))
        for key in ("wait_action", "cameras"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def replace(self, **changes: Any) -> Protocol:
        return dataclasses.replace(self, **changes)

    def deviations(self, preset: Protocol) -> dict[str, dict[str, Any]]:
        """Every field that differs from `preset`: {field: {"preset": ..., "used": ...}}."""
        mine, theirs = self.to_dict(), preset.to_dict()
        skip = {"name", "notes"}
        return {k: {"preset": theirs[k], "used": mine[k]} for k in mine if k not in skip and mine[k] != theirs[k]}


def apply_conventions(preset: Protocol, conventions: dict[str, Any] | None, unnorm_key: str | None = None,
                      sim_conventions: bool = False) -> tuple[Protocol, dict[str, str]]:
    """`preset` with its data assumptions replaced by a checkpoint's conventions (a `Conventions` dump).

    Returns the protocol and, per changed field, why: the centre crop follows the training crop and
    `unnorm_key` the suite's normalisation group; with `sim_conventions` (the benchmark's
    `checkpoint_conventions`: its simulator takes the gripper as -1 open / +1 close) the gripper mapping also
    follows the data's gripper convention (binarising stays the preset's) and `rotate_180` the stored
    images' orientation. Without conventions (a plain server) the preset stands."""
    from rocket_core.conventions import Conventions, gripper_map

    if not conventions:
        return preset, {}
    conv = Conventions.from_dict(conventions, "the policy's conventions")
    changes: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    if sim_conventions and conv.gripper.kind != "none":
        grip = GripperMap(binarize=preset.gripper.binarize, **gripper_map(conv.gripper))
        changes["gripper"] = grip
        reasons["gripper"] = f"checkpoint conventions: gripper {conv.gripper.describe()}"
    crop = conv.images.eval_center_crop
    changes["center_crop"] = crop
    reasons["center_crop"] = (f"checkpoint conventions: trained with {conv.images.train_crop_scale} random crops"
                              if crop < 1 else "checkpoint conventions: trained without random crops")
    if sim_conventions and conv.images.orientation != "unknown":
        changes["rotate_180"] = conv.images.orientation == "rotated_180"
        reasons["rotate_180"] = f"checkpoint conventions: images stored {conv.images.orientation}"
    key = unnorm_key or conv.group_for(preset.suite, preset.benchmark.split("_")[0])
    if unnorm_key is not None and unnorm_key not in conv.normalization.groups:
        raise KeyError(f"--unnorm-key '{unnorm_key}' is not in the checkpoint; groups: "
                       f"{', '.join(conv.normalization.groups)}")
    if len(conv.normalization.groups) > 1:
        changes["unnorm_key"] = key
        reasons["unnorm_key"] = "the suite's normalisation group" if unnorm_key is None else "--unnorm-key"
    proto = preset.replace(**changes)
    return proto, {k: v for k, v in reasons.items() if getattr(proto, k) != getattr(preset, k)}


def process_gripper(action: Any, gripper: GripperMap) -> Any:
    """Apply `gripper` to the last dimension of a numpy action (copy)."""
    import numpy as np

    out = np.array(action, dtype=np.float64, copy=True)
    if gripper.rescale_01_to_pm1:
        out[..., -1] = 2.0 * out[..., -1] - 1.0
    if gripper.binarize:
        out[..., -1] = np.where(out[..., -1] >= 0, 1.0, -1.0)  # OFT: np.sign, with 0 -> +1 after rescale
    if gripper.invert:
        out[..., -1] = -out[..., -1]
    return out
