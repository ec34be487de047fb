"""The shared progress bar shows elapsed and remaining time (the remaining alone reads 0:00:00 at the end)."""
from __future__ import annotations

import io
import re

from rich.console import Console

from rocket_core.progress import Bar


def test_bar_shows_elapsed_and_remaining_time() -> None:
    buf = io.StringIO()
    with Bar("align", 4, True, console=Console(file=buf, width=120)) as bar:
        for i in range(4):
            bar.update(completed=i + 1, text="action 0.1234")
    last = buf.getvalue().strip().splitlines()[-1]
    assert re.search(r"4/4 \d+:\d\d:\d\d left \d+:\d\d:\d\d action 0\.1234", last), last


def test_disabled_bar_prints_nothing() -> None:
    buf = io.StringIO()
    with Bar("align", 4, False, console=Console(file=buf)) as bar:
        bar.update(completed=4)
    assert buf.getvalue() == ""
