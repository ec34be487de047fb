"""One progress bar for every long job (training, cache builds, profiling, evaluation)."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar:
    """A rich bar with count, elapsed time, time left and an optional live text; a no-op when disabled
    (other ranks, tests). Elapsed stays meaningful at the end, when the time left reads 0:00:00."""

    def __init__(self, label: str, total: int, enabled: bool = True, completed: int = 0,
                 console: Console | None = None) -> None:
        self.progress: Progress | None = None
        if enabled:
            self.progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.fields[text]}"),
                                     console=console)
            self.task = self.progress.add_task(label, total=total, completed=completed, text="")

    def __enter__(self) -> Bar:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, completed: int | None = None, advance: int = 0, text: str | None = None) -> None:
        if self.progress is not None:
            fields: dict[str, Any] = {} if text is None else {"text": text}
            self.progress.update(self.task, completed=completed, advance=advance, **fields)
