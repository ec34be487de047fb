"""The torch thread-count rule (rocket_core/threads.py): what wins, and what the model size picks."""
from __future__ import annotations

import os

import pytest
import torch

from rocket_core.errors import RocketError
from rocket_core.threads import SMALL_MODEL_PARAMS, choose_threads, configure_threads, usable_cores


def test_small_models_use_one_thread_large_ones_every_usable_core() -> None:
    cores = len(os.sched_getaffinity(0))
    assert choose_threads(1_000_000, environ={}).threads == 1  # the tiny presets
    assert choose_threads(SMALL_MODEL_PARAMS - 1, environ={}).threads == 1
    big = choose_threads(SMALL_MODEL_PARAMS, environ={})
    assert big.threads == cores and "all usable cores" in big.reason
    assert choose_threads(7_000_000_000, environ={}).threads == cores


def test_threads_flag_beats_omp_num_threads_which_beats_the_rule() -> None:
    env = {"OMP_NUM_THREADS": "3"}
    assert choose_threads(10, requested=5, environ=env).threads == 5
    assert str(choose_threads(10, requested=5, environ=env)) == "5 torch threads (--threads)"
    assert (choose_threads(10, environ=env).threads, choose_threads(10, environ=env).reason) == (3, "OMP_NUM_THREADS")
    assert choose_threads(7_000_000_000, environ={"OMP_NUM_THREADS": "2,1"}).threads == 2  # nested levels: first
    # unusable values are ignored, as OpenMP ignores them
    for bad in ("", "0", "abc", "-2"):
        assert choose_threads(10, environ={"OMP_NUM_THREADS": bad}).threads == 1


def test_bad_thread_count_is_one_clear_error() -> None:
    with pytest.raises(RocketError, match="--threads must be at least 1"):
        choose_threads(10, requested=0, environ={})


def test_local_distributed_processes_share_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert usable_cores({"LOCAL_WORLD_SIZE": str(cores)}) == 1
    assert usable_cores({"LOCAL_WORLD_SIZE": str(4 * cores)}) == 1  # never 0
    assert usable_cores({}) == cores


def test_configure_counts_every_model_and_applies_the_choice() -> None:
    before = torch.get_num_threads()
    try:
        small = torch.nn.Linear(100, 100)
        choice = configure_threads(None, small, None)
        omp = os.environ.get("OMP_NUM_THREADS")
        expected = choose_threads(small.weight.numel() + small.bias.numel()).threads
        assert choice.threads == expected == torch.get_num_threads()
        assert omp is not None or choice.reason == "small model, 0.0M parameters"
        assert configure_threads(2).threads == 2 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
