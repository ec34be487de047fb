"""Test-only helpers: compositions of production functions that only tests call (the reference's cache
key, random pooling, a plain resumable loader)."""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch.utils.data import DataLoader

from rocket_core.align.pooling import random_indices, take_tokens
from rocket_core.data.dataset import TrainSampler, VLADataset, collate_batch


def reference_cache_keys(pixel_values: torch.Tensor) -> list[str]:
    """The reference teacher-cache key: md5 of each sample's float32 bytes (C order), as `<key>.pt` stems."""
    return [
        hashlib.md5(sample.detach().cpu().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()
        for sample in pixel_values
    ]


def random_pool(tokens: torch.Tensor, ref_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, S, P, D) -> (N, ref_len, D): sorted random tokens, with replacement only when upsampling."""
    _, frames, p, _ = tokens.shape
    return take_tokens(tokens, random_indices(frames * p, ref_len, generator))


def build_dataloader(dataset: VLADataset, batch_size: int, seed: int, start: int = 0) -> DataLoader:
    """An endless, resumable loader of `Batch`es; `start` = samples already consumed."""
    return DataLoader(dataset, batch_size=batch_size, sampler=TrainSampler(len(dataset), seed, start),
                      collate_fn=collate_batch)


def load_script(relative: str) -> ModuleType:
    """A repo script (benchmarks/, scripts/: no packages) loaded from its path, registered in sys.modules
    (dataclasses look their module up there)."""
    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
