"""Data pipeline: LeRobot v3 datasets -> the canonical `Batch` (see docs/data.md)."""
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
from rocket_core.data.lerobot import LeRobotReader, delta_offsets, resolve_dataset_root
from rocket_core.data.normalize import Normalizer
from rocket_core.data.spec import AugmentSpec, DataSpec

__all__ = [
    "AugmentSpec",
    "DataSpec",
    "LeRobotReader",
    "Normalizer",
    "TrainSampler",
    "VLADataset",
    "augment",
    "build_dataloader",
    "bundled_dataset_path",
    "collate_batch",
    "dataset_fingerprint",
    "delta_offsets",
    "resolve_dataset_root",
    "sample_generator",
    "to_device",
]
