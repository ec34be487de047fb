"""Test-wide settings: never touch the network, float32, fixed seeds."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


def fixture_dir(env_var: str, default: Path) -> Path:
    """A parity test's fixture folder: from `env_var`, else the shared default."""
    return Path(os.environ.get(env_var, str(default))).resolve()


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Per-image ops are tiny: intra-op threads only contend (as in DataLoader workers, which use one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
