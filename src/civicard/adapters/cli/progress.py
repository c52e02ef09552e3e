"""Rich progress bars for long CLI work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

_console = Console(stderr=True)


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_console,
        transient=False,
    )


@contextmanager
def counting_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar advanced by counts: `advance(n)` after each chunk of n items."""
    with _bar() as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def staged_progress(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A bar per stage: `report(stage, done, total)` creates the stage's bar on first call."""
    tasks: dict[str, TaskID] = {}
    with _bar() as progress:

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(f"{label} {stage}", total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield report
