"""Data pipeline: LeRobot v2.0 / v2.1 / v3.0 datasets -> the canonical `Batch` (see docs/data.md).

Names are imported on first use (PEP 562), so `rocket_core.data.spec` (imported by the specs and thus by
every CLI command) does not pull in torch: `rocket --help` stays fast. The augmentation function is
`rocket_core.data.augment.augment` (`rocket_core.data.augment` is its module).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "TrainSampler": "dataset", "VLADataset": "dataset",
    "bundled_dataset_path": "source", "collate_batch": "dataset", "sample_generator": "dataset", "to_device": "dataset",
    "dataset_fingerprint": "fingerprint",
    "KeyMap": "keymap", "dataset_presets": "keymap", "episode_groups": "keymap", "resolve_keys": "keymap",
    "task_groups": "keymap",
    "LeRobotReader": "lerobot", "delta_offsets": "lerobot_files", "resolve_dataset_root": "lerobot_files",
    "GroupNormalizer": "normalize", "Normalizer": "normalize",
    "GroupStats": "stats", "load_group_stats": "stats",
    "AugmentSpec": "spec", "DataSpec": "spec",
}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from rocket_core.data.dataset import (
        TrainSampler,
        VLADataset,
        collate_batch,
        sample_generator,
        to_device,
    )
    from rocket_core.data.fingerprint import dataset_fingerprint
    from rocket_core.data.keymap import KeyMap, dataset_presets, episode_groups, resolve_keys, task_groups
    from rocket_core.data.lerobot import LeRobotReader
    from rocket_core.data.lerobot_files import delta_offsets, resolve_dataset_root
    from rocket_core.data.normalize import GroupNormalizer, Normalizer
    from rocket_core.data.source import bundled_dataset_path
    from rocket_core.data.spec import AugmentSpec, DataSpec
    from rocket_core.data.stats import GroupStats, load_group_stats


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rocket_core.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"rocket_core.data.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
