"""Data pipeline: LeRobot v2.0 / v2.1 / v3.0 datasets -> the canonical `Batch` (see docs/data.md)."""
from rocket_core.data.augment import augment
from rocket_core.data.dataset import (
    TrainSampler,
    VLADataset,
    build_dataloader,
    bundled_dataset_path,
    collate_batch,
    sample_generator,
    to_device,
)
from rocket_core.data.fingerprint import dataset_fingerprint
from rocket_core.data.keymap import PRESETS, KeyMap, episode_groups, libero_suite, resolve_keys
from rocket_core.data.lerobot import LeRobotReader, delta_offsets, resolve_dataset_root
from rocket_core.data.normalize import GroupNormalizer, Normalizer
from rocket_core.data.stats import GroupStats, load_group_stats
from rocket_core.data.spec import AugmentSpec, DataSpec

__all__ = [
    "AugmentSpec",
    "DataSpec",
    "GroupNormalizer",
    "GroupStats",
    "KeyMap",
    "LeRobotReader",
    "Normalizer",
    "PRESETS",
    "TrainSampler",
    "VLADataset",
    "augment",
    "build_dataloader",
    "bundled_dataset_path",
    "collate_batch",
    "dataset_fingerprint",
    "delta_offsets",
    "episode_groups",
    "libero_suite",
    "load_group_stats",
    "resolve_dataset_root",
    "resolve_keys",
    "sample_generator",
    "to_device",
]
