"""Torch's intra-op thread count, chosen from the work and not only from the core count.

Why: a small model runs many small ops, and each op split across threads ends in a barrier. When the
cores are shared, a descheduled thread keeps the others spinning at that barrier, so threads cost far
more than they save: the tiny quickstart took 138 s instead of 17 s beside other work with torch's
default threads, and 20 s with one thread (issue 15; benchmarks/contention.py measures it). A large
model's ops are big enough for threads to pay off, so it uses every core this process may run on
(its CPU affinity, shared out among the processes of a local distributed run).

`--threads N` wins, then OMP_NUM_THREADS (torch already applied it at import), then this rule.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from rocket_core.errors import RocketError

if TYPE_CHECKING:
    from torch import nn

# Below this many parameters (all models of the process together) one thread is fastest on shared cores:
# the tiny presets (~1M) are far below it, the bench preset (~200M) and real VLAs (billions) far above.
SMALL_MODEL_PARAMS = 20_000_000


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str

    def __str__(self) -> str:
        return f"{self.threads} torch thread{'s' if self.threads != 1 else ''} ({self.reason})"


def usable_cores(environ: Mapping[str, str] = os.environ) -> int:
    """Cores this process may run on, divided among the processes of a local distributed run."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    local = environ.get("LOCAL_WORLD_SIZE", "1")
    return max(1, cores // max(1, int(local) if local.isdigit() else 1))


def _omp_threads(environ: Mapping[str, str]) -> int | None:
    """The first level of OMP_NUM_THREADS ("4" or "4,2"), if it is a positive integer."""
    first = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def choose_threads(num_params: int, requested: int | None = None,
                   environ: Mapping[str, str] = os.environ) -> ThreadChoice:
    """The thread count for models of `num_params` parameters in all: see the module docstring."""
    if requested is not None:
        if requested < 1:
            raise RocketError(f"--threads must be at least 1, got {requested}; omit it to choose from the model size")
        return ThreadChoice(requested, "--threads")
    omp = _omp_threads(environ)
    if omp is not None:
        return ThreadChoice(omp, "OMP_NUM_THREADS")
    if num_params < SMALL_MODEL_PARAMS:
        return ThreadChoice(1, f"small model, {num_params / 1e6:.1f}M parameters")
    return ThreadChoice(usable_cores(environ), f"{num_params / 1e6:.0f}M parameters, all usable cores")


def configure_threads(requested: int | None, *models: nn.Module | None) -> ThreadChoice:
    """Choose for the parameters of `models` (None entries are skipped) and apply it to torch."""
    import torch

    params = sum(p.numel() for m in models if m is not None for p in m.parameters())
    choice = choose_threads(params, requested)
    torch.set_num_threads(choice.threads)
    return choice
