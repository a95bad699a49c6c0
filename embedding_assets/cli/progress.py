"""Progress of long commands on a terminal: a bar on stderr, quiet anywhere else.

A ``Display`` counts finished items against a total and adds up figures (shards done, chunks
embedded); rich draws it with the elapsed time and an estimate of the time left. When stderr is
not a terminal (cron, CI, a pipe) nothing is drawn, so logs get only the command's own last lines.
"""

import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from embedding_assets.core import progress

Handler = Callable[["Display", str, str, Mapping[str, Any]], None]
"""Turns one reported item (step, item, figures) into ``Display.advance`` calls."""


def interactive() -> bool:
    """Whether progress is worth drawing: stderr is a terminal."""
    return sys.stderr.isatty()


class Display:
    """One bar: ``done`` of ``total`` items (None: unknown, a spinner), with figures named in ``shown``."""

    def __init__(self, title: str, total: int | None, unit: str, shown: Mapping[str, str]) -> None:
        self.title, self.total, self.unit, self.shown = title, total, unit, dict(shown)
        self.counts: Counter[str] = Counter()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> "Display":
        if interactive():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(self.unit),
                TextColumn("{task.fields[figures]}"),
                TimeElapsedColumn(),
                TextColumn("elapsed,"),
                TimeRemainingColumn(),
                TextColumn("left"),
                console=Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=self.total, figures=self._figures())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, items: int = 1, doing: str = "", **figures: int) -> None:
        """``items`` more are done (``doing`` says what is under way); ``figures`` are added to the totals."""
        self.counts.update(figures)
        if self._progress is not None:
            description = f"{self.title} {doing}".strip()
            self._progress.update(self._task, advance=items, description=description, figures=self._figures())

    def set_total(self, total: int) -> None:
        """The number of items is known now."""
        self.total = total
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def write(self, line: str) -> None:
        """A line above the bar on a terminal (nothing elsewhere: the command's result says it)."""
        if self._progress is not None:
            self._progress.console.print(line, highlight=False, markup=False)

    @contextmanager
    def following(self, handler: Handler) -> Iterator[None]:
        """Feed what the work reports (``core.progress``) to ``handler`` while the block runs."""
        with progress.watching(lambda step, item, figures: handler(self, step, item, figures)):
            yield

    def _figures(self) -> str:
        return ", ".join(f"{self.counts[name]:,} {label}" for name, label in self.shown.items())
