"""Test-wide settings: never touch the network, float32, fixed seeds; fixture folders that skip (or fail on CI); tiers.

Parity tests read reference outputs from fixture folders (docs/testing.md lists them). Without its folder a
test skips with a reason naming the folder and its environment variable; under `CI=true` that skip is turned
into a failure, so CI never passes by silently skipping the checks that matter.

Tiers (docs/testing.md): plain `pytest` runs the fast tier, deselecting tests marked `slow` or `sim`;
`pytest --full` (CI, the README) runs everything, and an explicit `-m EXPR` selects by itself. Tests under
tests/parity/ and tests with a fixture skip condition are marked `fixture` here; the others that need a
folder carry the mark themselves.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
# Skip reasons that mean "a fixture folder is missing": the helper's own, and the older "no X fixture at ..."
# / "no X manifest" wordings; under CI=true these fail instead.
_FIXTURE_SKIP = re.compile(r"fixture missing:|\bno [\w .-]*\b(fixture|manifest)\b")


def fixture_dir(env_var: str, default: Path) -> Path:
    """A parity test's fixture folder: from `env_var`, else the shared default."""
    return Path(os.environ.get(env_var, str(default))).resolve()


def missing_fixture_reason(folder: Path, env_var: str) -> str:
    """The skip reason for a missing fixture folder: names the folder, the variable and where to read more."""
    return f"fixture missing: {folder} (set {env_var} to the folder; see docs/testing.md)"


def needs_fixture(folder: Path, env_var: str, present: bool | None = None) -> pytest.MarkDecorator:
    """Skip (fail under CI=true) unless `folder` exists (or `present` says the fixture is there)."""
    there = folder.is_dir() if present is None else present
    return pytest.mark.skipif(not there, reason=missing_fixture_reason(folder, env_var))


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", help="run every tier, the slow and sim tests too (CI, README)")


def _needs_fixture_folder(item: pytest.Item) -> bool:
    in_parity = item.path.parent.name == "parity"
    return in_parity or any(_FIXTURE_SKIP.search(str(m.kwargs.get("reason", ""))) for m in item.iter_markers("skipif"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `fixture` tests; without --full or -m, leave the slow and sim tiers out (reported as deselected)."""
    for item in items:
        if _needs_fixture_folder(item):
            item.add_marker(pytest.mark.fixture)
    if config.getoption("--full") or config.getoption("markexpr"):
        return
    fast: list[pytest.Item] = []
    later: list[pytest.Item] = []
    for item in items:
        (later if item.get_closest_marker("slow") or item.get_closest_marker("sim") else fast).append(item)
    if later:
        config.hook.pytest_deselected(items=later)
        items[:] = fast


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under CI=true a skip for a missing fixture is a failure, with the same message."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and on_ci() and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if _FIXTURE_SKIP.search(reason):
            report.outcome = "failed"
            report.longrepr = f"{reason.removeprefix('Skipped: ')} -- CI=true requires every fixture folder"


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
