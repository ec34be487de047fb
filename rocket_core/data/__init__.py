"""Data pipeline: LeRobot v3 datasets -> the canonical `Batch` (see docs/data.md)."""
from rocket_core.data.lerobot import LeRobotReader, delta_offsets, resolve_dataset_root

__all__ = ["LeRobotReader", "delta_offsets", "resolve_dataset_root"]
