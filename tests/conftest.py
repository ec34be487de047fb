"""Test-wide settings: never touch the network, float32, fixed seeds."""
from __future__ import annotations

import os
from pathlib import Path

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
