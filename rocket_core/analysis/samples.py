"""What every analysis reads: the device, unaugmented samples drawn with a seed, batches, autocast.

Every analysis reads unaugmented samples (`VLADataset(train=False)`), chosen by a seeded draw, in the same
order for every model, so two models' results compare sample for sample.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from rocket_core.contracts import Batch
from rocket_core.data import VLADataset, collate_batch, to_device
from rocket_core.engine import AlignPlan, plan_run
from rocket_core.errors import RocketError
from rocket_core.registry import Registry
from rocket_core.specs import LayerMap, ProjectorSpec, RunSpec
from rocket_core.train.trainer import data_spec_for

Progress = Callable[[int], None]


def resolve_device(device: str | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RocketError(f"unknown device '{device}'; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RocketError(f"device '{device}' asked for but CUDA is not available; use --device cpu")
    return dev


def feature_plan(spec: RunSpec, registry: Registry | None = None) -> AlignPlan:
    """A plan for feature extraction only: one harmless pair (0, 0) and the spec's projector with its
    default settings, so any spec resolves, whatever layer map or projector settings it carries (CKA ignores both)."""
    return plan_run(spec.model_copy(update={"layers": LayerMap(vla=[0], teacher=[0]),
                                            "projector": ProjectorSpec(name=spec.projector.name)}),
                    registry)


def analysis_dataset(plan: AlignPlan) -> VLADataset:
    """Unaugmented samples, formed as the run's VLA needs them (chunk length, normalisation)."""
    return VLADataset(data_spec_for(plan), seed=plan.spec.training.seed, train=False)


def sample_indices(total: int, count: int, seed: int) -> list[int]:
    """`count` distinct dataset indices drawn with `seed`, ascending (all of them if count >= total)."""
    if count < 1:
        raise RocketError("--samples must be at least 1")
    if count >= total:
        return list(range(total))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(total, size=count, replace=False))


def iter_batches(dataset: VLADataset, indices: Sequence[int], batch_size: int,
                 device: torch.device) -> Iterator[Batch]:
    if batch_size < 1:
        raise RocketError("--batch-size must be at least 1")
    for start in range(0, len(indices), batch_size):
        yield to_device(collate_batch([dataset[i] for i in indices[start : start + batch_size]]), device)


def autocast(device: torch.device, spec: RunSpec) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on GPU unless the run is float32 (as the trainer); nothing on CPU."""
    if device.type == "cuda" and spec.training.mixed_precision != "no":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
