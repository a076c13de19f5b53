"""Everything apo shows people: rich tables and progress on the terminal, JSON for machines.

Results go to stdout (a table, or JSON with ``--json``); progress, warnings and errors go to
stderr, so ``apo convert --json models/ > summary.json`` stays parseable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

T = TypeVar("T")

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def error_line(message: str) -> None:
    stderr.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)


def warning_line(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False)


def info_line(message: str) -> None:
    stderr.print(message, highlight=False)


def print_json(payload: Any) -> None:
    # Plain write, not rich: JSON must not be wrapped or coloured.
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def show_progress(quiet: bool) -> bool:
    return not quiet and stderr.is_terminal


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )


def track(items: Iterable[T], total: int | None, description: str, *, quiet: bool) -> Iterator[T]:
    """Yield ``items`` with a progress bar on a terminal (never under --json or in CI logs)."""
    if not show_progress(quiet):
        yield from items
        return
    with progress_bar() as progress:
        task = progress.add_task(description, total=total, status="")
        for item in items:
            yield item
            progress.advance(task)


def fmt_float(value: float | None, spec: str = ".2g") -> str:
    return "-" if value is None else format(value, spec)


def fmt_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def table(title: str | None, columns: list[str], rows: Iterable[list[str]]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for i, column in enumerate(columns):
        # The first column names the row (a model): keep it whole, let the others fold.
        out.add_column(column, overflow="fold", no_wrap=i == 0)
    for row in rows:
        out.add_row(*row)
    return out
