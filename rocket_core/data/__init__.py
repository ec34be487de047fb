"""Data pipeline: LeRobot v3 datasets -> the canonical `Batch` (see docs/data.md).

Names load on first use (PEP 562): `rocket_core.specs` imports `data.spec`, and that must not pull in
torch through `data.dataset` (the CLI lists plugins and prints `--help` without torch).
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_HOMES = {
    "TrainSampler": "dataset",
    "VLADataset": "dataset",
    "build_dataloader": "dataset",
    "bundled_dataset_path": "dataset",
    "collate_batch": "dataset",
    "sample_generator": "dataset",
    "to_device": "dataset",
    "dataset_fingerprint": "fingerprint",
    "LeRobotReader": "lerobot",
    "delta_offsets": "lerobot",
    "resolve_dataset_root": "lerobot",
    "Normalizer": "normalize",
    "AugmentSpec": "spec",
    "DataSpec": "spec",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


class _Package(types.ModuleType):
    """`rocket_core.data.augment` is the function, as before, even once its submodule is imported."""

    @property
    def augment(self) -> Any:
        return importlib.import_module(f"{__name__}.augment").augment

    @augment.setter
    def augment(self, _submodule: Any) -> None:
        """The import system binds the submodule here; the function keeps the name."""


sys.modules[__name__].__class__ = _Package


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
