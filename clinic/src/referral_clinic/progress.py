"""Progress of a large pull on the terminal: rich, on stderr, only when stderr is a terminal.

It appears once a pull has gone past a first batch, so a small pull prints nothing extra, and it is
transient: when the pull ends the summary line is all that stays. Nothing of a referral is shown.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

from referral_clinic.pull_report import PullReport

if TYPE_CHECKING:  # rich is imported only when there is a terminal to show progress on (about 40 ms)
    from rich.console import Console
    from rich.progress import Progress, TaskID

SHOW_AFTER = 50  # envelopes


class PullProgress:
    def __init__(self, console: Console | None) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    @classmethod
    def on_terminal(cls, *, enabled: bool = True) -> PullProgress:
        if not (enabled and sys.stderr.isatty()):
            return cls(None)
        from rich.console import Console

        return cls(Console(stderr=True))

    def __enter__(self) -> PullProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, report: PullReport) -> None:
        if self._console is None or report.pulled < SHOW_AFTER:
            return
        if self._progress is None:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("pulling")
        assert self._task is not None  # noqa: S101 - set together with _progress
        self._progress.update(
            self._task,
            description=(
                f"pulling: {report.pulled} opened, {report.written + report.notices} written, "
                f"{report.acknowledged} acknowledged, {len(report.refused)} refused"
            ),
        )
