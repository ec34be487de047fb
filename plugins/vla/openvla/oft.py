"""OpenVLA-OFT-format folders: serve the reference's published checkpoints, and ours after `rocket export`.

Layout (OpenVLA-OFT `finetune.py` after `merge_lora_back`): a merged HF model (`config.json`,
`model*.safetensors`), `action_head--<step>_checkpoint.pt`, `proprio_projector--<step>_checkpoint.pt`
(torch files, read with `weights_only=True`) and `dataset_statistics.json` with one entry per dataset
(`libero_spatial_no_noops`, ...: the `unnorm_key`s). Such a folder has no manifest: every tensor is
checked by key and shape against the architecture before it loads. A folder `rocket export` wrote also
holds `conventions.json` (our data conventions) and `manifest.json` (checksums); a foreign one gets the
OFT conventions (RLDS gripper 1 = open, rotated 180-degree images, 90 %-area centre crop).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from rocket_core.conventions import Conventions, FeatureNorm, Gripper, GroupNorm, Images, Normalization
from rocket_core.errors import RocketError

if TYPE_CHECKING:
    from rocket_core.specs import VLASpec

STATS_FILE = "dataset_statistics.json"
OPTIONS_KEY = "rocket_options"  # config.json key where `rocket export` records the VLA options it ran with
DEFAULT_OPTIONS = {"num_images": 2, "chunk": 8}  # OFT LIBERO: 2 cameras, NUM_ACTIONS_CHUNK 8


def is_oft_folder(path: Path) -> bool:
    """A folder with an OFT layout (merged weights, an action head and dataset statistics), not a run."""
    return (path.is_dir() and (path / STATS_FILE).is_file() and (path / "config.json").is_file()
            and not (path / "state.json").is_file()
            and bool(list(path.glob("action_head--*checkpoint.pt")) or (path / "action_head.safetensors").is_file()))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RocketError(f"'{path}' is unreadable ({type(exc).__name__}: {exc}); re-download the checkpoint") from None


def folder_options(path: Path, conv: Conventions, device: str | None) -> dict[str, Any]:
    """The openvla options a folder was trained with: recorded by `rocket export`, else OFT LIBERO's."""
    recorded = _read_json(path / "config.json").get(OPTIONS_KEY)
    opts: dict[str, Any]
    if isinstance(recorded, dict):
        opts = dict(recorded)
    else:
        opts = dict(DEFAULT_OPTIONS)
        if conv.action_dim:
            opts["action_dim"] = conv.action_dim
        if conv.state_dim:
            opts["proprio_dim"] = conv.state_dim
        opts["use_proprio"] = bool(list(path.glob("proprio_projector--*checkpoint.pt"))
                                   or (path / "proprio_projector.safetensors").is_file())
    opts["dtype"] = "float32" if device in (None, "cpu") else "bfloat16"
    return opts


def read_oft_folder(path: Path, name: str, device: str | None = None) -> tuple[VLASpec, Conventions] | None:
    """The spec that rebuilds an OFT-format folder as VLA `name` and its conventions; None when `path` is not
    one. The .pt parts load with weights_only=True, every key and shape checked, when the spec is built."""
    from rocket_core.specs import VLASpec

    if not is_oft_folder(path):
        return None
    stats = _read_json(path / STATS_FILE)
    if not isinstance(stats, dict):
        raise RocketError(f"'{path / STATS_FILE}' must map dataset names to statistics")
    conv = Conventions.load(path) or oft_folder(stats)
    return VLASpec(name=name, checkpoint=str(path), options=folder_options(path, conv, device)), conv


def oft_folder(stats: Mapping[str, Any], num_images: int = 2, chunk: int = 8,
               crop_scale: Sequence[float] | None = (0.9, 0.9)) -> Conventions:
    """The conventions of an OpenVLA-OFT folder from its `dataset_statistics.json`: RLDS gripper (1 = open),
    bounds_q99 normalisation per dataset key with its `mask`, images rotated 180 degrees at 224 px,
    trained with 90 %-area random crops (`image_aug`), so evaluated with the centre crop."""
    groups: dict[str, GroupNorm] = {}
    for key, entry in stats.items():
        if not isinstance(entry, Mapping) or "action" not in entry:
            continue
        feats = {}
        for feat in ("action", "proprio"):
            s = entry.get(feat)
            if not isinstance(s, Mapping) or "q01" not in s or "q99" not in s:
                continue
            low, high = [float(v) for v in s["q01"]], [float(v) for v in s["q99"]]
            mask = [bool(v) for v in s.get("mask", [True] * len(low))]
            if not len(low) == len(high) == len(mask):
                raise RocketError(f"dataset_statistics.json: '{key}' {feat} q01/q99/mask lengths differ")
            feats["state" if feat == "proprio" else "action"] = FeatureNorm(mode="quantile", low=low, high=high, mask=mask)
        if "action" in feats:
            groups[key] = GroupNorm(**feats)
    if not groups:
        raise RocketError("dataset_statistics.json holds no dataset with action q01/q99; is this an OpenVLA-OFT folder?")
    first = next(iter(groups.values()))
    assert first.action is not None
    action_dim, state_dim = len(first.action.low), len(first.state.low) if first.state else None
    gripper_normalized = bool(first.action.mask[-1])
    return Conventions(
        source="openvla-oft", state="eef_pos+axis_angle+gripper_qpos" if state_dim == 8 else None,
        state_dim=state_dim, action_dim=action_dim, chunk=chunk,
        normalization=Normalization(mode="quantile", groups=groups, default=next(iter(groups))),
        gripper=Gripper(kind="oft_rlds", dim=-1, open=1.0, close=0.0, normalized=gripper_normalized),
        images=Images(orientation="rotated_180", size=(224, 224), cameras=["image", "wrist_image"][:num_images],
                      train_crop_scale=tuple(crop_scale) if crop_scale else None),
    )
