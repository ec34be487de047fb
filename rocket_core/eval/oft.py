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
from typing import Any

from rocket_core.conventions import Conventions, oft_folder
from rocket_core.errors import RocketError

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


def load_oft_folder(path: Path, device: str | None = None) -> Any:
    """An OFT-format folder as a `Policy` (torch import deferred to here)."""
    from rocket_core.data.normalize import Normalizer
    from rocket_core.eval.policy import Policy, _set_seed
    from rocket_core.registry import get_registry
    from rocket_core.specs import VLASpec

    stats = _read_json(path / STATS_FILE)
    if not isinstance(stats, dict):
        raise RocketError(f"'{path / STATS_FILE}' must map dataset names to statistics")
    conv = Conventions.load(path) or oft_folder(stats)
    spec = VLASpec(name="openvla", checkpoint=str(path), options=folder_options(path, conv, device))
    adapter = get_registry().get("vla", "openvla")
    _set_seed(0)
    model = adapter.build(spec)  # checks every key and shape; the .pt parts load with weights_only=True
    if device:
        model.to(device)
    group = conv.normalization.groups[conv.normalization.default] if conv.normalization.default else None
    state_norm = Normalizer.from_dict(group.state.model_dump()) if group and group.state else None
    action_norm = Normalizer.from_dict(group.action.model_dump()) if group and group.action else None
    return Policy(model, "openvla", adapter.info(spec), source=f"{path} ({conv.source} folder)",
                  state_norm=state_norm, action_norm=action_norm, cameras=conv.images.cameras or None,
                  conventions=conv)
