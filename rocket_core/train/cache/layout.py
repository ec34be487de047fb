"""What a cache entry holds (pooled targets or raw grids), its size, and where caches live."""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import torch

from rocket_core.align.head import AlignmentHead
from rocket_core.align.layout import pooled_grid
from rocket_core.contracts import TeacherInfo
from rocket_core.errors import RocketError

FORMAT = 1
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_ST_DTYPES: dict[str, torch.dtype] = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_TENSOR = "features"
_FP16_MAX = 65504.0
HEADER_BYTES = 512  # upper bound of an entry's safetensors header (JSON with key, row, sha256, shape)
OnAugment = Literal["crop", "teacher"]


# --- what is stored -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pooling:
    """The alignment head's pooling settings; calling it is `AlignmentHead.pool_targets` with them."""

    num_vision_tokens: int
    teacher_grid: tuple[int, int]
    teacher_image_hw: tuple[int, int]
    pooling: str = "bilinear"
    teacher_pe: bool = True

    def __call__(self, stacked: torch.Tensor) -> torch.Tensor:
        """(L, B, S, P, C) -> (L, B, N, C), exactly as the head pools live teacher features."""
        return AlignmentHead.pool_targets(self, stacked)  # type: ignore[arg-type]  # duck-typed self: the head's fields

    @classmethod
    def of_head(cls, head: AlignmentHead) -> Pooling:
        return cls(head.num_vision_tokens, head.teacher_grid, head.teacher_image_hw,
                   head.pooling, head.teacher_pe)


@dataclass(frozen=True)
class Layout:
    """Shape and dtype of one entry."""

    kind: Literal["pooled", "grid"]
    layers: tuple[int, ...]  # stored teacher layers: sorted, unique
    frames: int  # cameras per sample (S)
    grid: tuple[int, int]  # the teacher's patch grid (rows, cols)
    dim: int  # feature width C
    dtype: str  # fp32 | fp16 | bf16
    tokens: int = 0  # pooled tokens per sample (N), kind "pooled" only
    pad_frames: int = 0  # kind "pooled": VLA camera slots beyond the dataset's, pooled as zero features

    @property
    def shape(self) -> tuple[int, ...]:
        if self.kind == "pooled":
            return (len(self.layers), self.tokens, self.dim)
        return (len(self.layers), self.frames, self.grid[0] * self.grid[1], self.dim)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def sample_bytes(self) -> int:
        """Bytes of one entry's tensor (the file adds a header of about 0.5 kB)."""
        return math.prod(self.shape) * self.torch_dtype.itemsize


def make_layout(kind: str, layers: Iterable[int], frames: int, info: TeacherInfo, dtype: str,
                pooling: Pooling | None = None, pad_frames: int = 0) -> Layout:
    """`pad_frames`: camera slots the VLA has beyond the dataset's; like the trainer, their teacher features
    are zeros, pooled together with the real frames (they only change pooled entries)."""
    if dtype not in DTYPES:
        raise RocketError(f"unknown cache dtype '{dtype}'; use one of: {', '.join(DTYPES)}")
    stored = tuple(sorted({int(k) for k in layers}))
    tokens = 0
    if kind == "pooled":
        if pooling is None or pooling.pooling != "bilinear":
            raise RocketError("a pooled teacher cache needs bilinear pooling; random pooling draws anew every "
                              "step, so cache the raw grids instead (kind 'grid')")
        total = frames + pad_frames
        oh, ow = pooled_grid(total, tuple(info.patch_grid), pooling.num_vision_tokens)  # type: ignore[arg-type] # tuple() of a 2-tuple, or of a plugin's list
        tokens = total * oh * ow
    else:
        pad_frames = 0  # grids hold the real frames only; padding happens when they are pooled
    return Layout(kind, stored, frames, tuple(info.patch_grid), info.feature_dim, dtype, tokens,  # type: ignore[arg-type]  # as above
                  pad_frames)


def default_cache_dir() -> Path:
    """`$ROCKET_CACHE_DIR`, else `~/.cache/rocket/teacher-features`."""
    env = os.environ.get("ROCKET_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "rocket" / "teacher-features"


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_disk(root: Path, needed: int, dtype: str = "fp32") -> tuple[int, int]:
    """(needed, free) bytes; RocketError when `needed` exceeds the free space where `root` is (or would be)."""
    probe = Path(root)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        smaller = "use --dtype fp16/bf16, " if dtype == "fp32" else ""  # only suggest what was not given already
        raise RocketError(
            f"the teacher cache needs {format_bytes(needed)} but only {format_bytes(free)} is free at '{probe}'; "
            f"store fewer layers, {smaller}pool (--tokens / --config), or pick another --cache-dir"
        )
    return needed, free
