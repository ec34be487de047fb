"""House rules of the layout that a review would otherwise have to re-check by hand."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 500


def test_no_core_or_plugin_module_is_over_500_lines() -> None:
    """Big modules get split along their seams into files a newcomer finds by name."""
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines())
             for folder in ("rocket_core", "plugins") for p in (REPO / folder).rglob("*.py")}
    assert len(sizes) > 50
    assert {f: n for f, n in sizes.items() if n > MAX_LINES} == {}
