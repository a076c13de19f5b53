"""Everything apo shows people: rich tables and progress on the terminal, JSON for machines.

Results go to stdout (a table, or JSON with ``--json``); progress, warnings and errors go to
stderr, so ``apo convert --json models/ > summary.json`` stays parseable.

Tables are drawn for the width they get: a terminal's, or 80 columns when stdout is a pipe or a
CI log. A row is always one line. When the boxed table does not fit, it loses its box, then its
longest names and texts are shortened with an ellipsis (names keep their end, where nested model
names differ); a cell is never wrapped, so no word is ever split across lines.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from rich import box
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderResult
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

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


def ellipsis(console: Console | None = None) -> str:
    """``…`` where the output can show it, ``...`` otherwise."""
    encoding = (console or stdout).encoding.lower()
    return "\u2026" if encoding.startswith("utf") else "..."


def times() -> str:
    """``×`` (as in "×2") where the output can show it, ``x`` otherwise."""
    return "\u00d7" if stdout.encoding.lower().startswith("utf") else "x"


def heading(text: str) -> None:
    """A line that introduces a table (a title inside the table would wrap with its width)."""
    stdout.print(Text(text, style="bold"), soft_wrap=True)


def note(text: str) -> None:
    """An explanatory line under a table (a legend), wrapped between words to the width (no
    word split, no trailing space)."""
    lines = textwrap.wrap(text, width=max(stdout.width, 20), break_long_words=False,
                          break_on_hyphens=False) or [""]  # fmt: skip
    for line in lines:
        stdout.print(Text(line, style="dim"), soft_wrap=True)


# ---------------------------------------------------------------------------- progress


class _Remaining(TimeRemainingColumn):
    """``eta 0:00:12`` while the total is known; nothing when it is not."""

    def render(self, task: Task) -> Text:
        if task.total is None or task.finished:
            return Text("")
        return Text("eta ", style="progress.remaining") + super().render(task)


def show_progress(quiet: bool) -> bool:
    return not quiet and stderr.is_terminal


def progress_bar() -> Progress:
    """A bar with done/total, a status text, the time spent and, where the total is known, the
    time left."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        _Remaining(),
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


# ---------------------------------------------------------------------------- numbers


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


# ---------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Column:
    """A table column: its header, whether its cells may be shortened, and alignment.

    ``shrink="end"``: text (estimator names, reasons) cut with an ellipsis when the table does not
    fit, down to ``floor`` cells; ``"never"``: figures and states, always whole. A table's first
    column may be its rows' ``name``: never cut; when it does not fit, each row's name gets a line
    of its own, above the row's other cells.
    """

    header: str
    shrink: Literal["never", "end"] = "never"
    floor: int = 0
    justify: JustifyMethod = "left"
    name: bool = False


TEXT_FLOOR = 8
GAP = 2  # spaces between columns without a box
INDENT = 2  # a row's cells under its name, in the stacked layout


def _columns(columns: Sequence[Column | str]) -> list[Column]:
    out = []
    for i, column in enumerate(columns):
        if isinstance(column, Column):
            out.append(column)
        else:  # a bare header: the first column names the row
            out.append(Column(column, name=i == 0))
    return out


def _cell(value: str | Text) -> Text:
    return value if isinstance(value, Text) else Text.from_markup(value)


def shorten(text: Text, width: int, mark: str) -> Text:
    """``text`` cut to ``width`` cells, ending in ``mark`` where it was cut."""
    if text.cell_len <= width or width <= len(mark):
        return text
    return text[: width - len(mark)] + Text(mark)


def fit_widths(columns: Sequence[Column], natural: Sequence[int], room: int) -> list[int]:
    """Column widths within ``room`` cells: the widest text column gives way first, each down to
    its floor; other columns keep their width (so ``room`` may still be exceeded)."""
    widths = list(natural)
    floors = {
        i: min(natural[i], max(column.floor, len(column.header), TEXT_FLOOR))
        for i, column in enumerate(columns)
        if column.shrink == "end"
    }
    while sum(widths) > room:
        movable = [i for i, floor in floors.items() if widths[i] > floor]
        if not movable:
            break
        widest = max(movable, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _grid(spec: Sequence[Column], cells: Sequence[Sequence[Text]], widths: Sequence[int], *,
          boxed: bool) -> Table:  # fmt: skip
    mark = ellipsis()
    out = Table(
        header_style="bold",
        box=box.HEAVY_HEAD if boxed else None,
        pad_edge=boxed,
        show_edge=boxed,
        expand=False,
    )
    for column, size in zip(spec, widths, strict=True):
        header = shorten(Text(column.header), size, mark)
        out.add_column(header, justify=column.justify, no_wrap=True, overflow="ellipsis",
                       min_width=size, max_width=size)  # fmt: skip
    for row in cells:
        out.add_row(*(shorten(cell, size, mark) for cell, size in zip(row, widths, strict=True)))
    return out


class Stacked:
    """Rows whose names do not fit beside their cells: each name on its own line, the row's
    other cells on the next, indented; the headers alike."""

    def __init__(self, header: Text, names: Sequence[Text], body: Table) -> None:
        self.header = header
        self.names = list(names)
        self.body = body

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        inner = options.update_width(max(options.max_width - INDENT, 1))
        lines = console.render_lines(self.body, inner, pad=False)
        pad = Segment(" " * INDENT)
        for name, line in zip([self.header, *self.names], lines, strict=False):
            # A name is never cut or folded: on a line of its own, however long.
            yield Text.assemble(name, no_wrap=True, overflow="ignore", end="\n")
            yield pad
            yield from line
            yield Segment.line()


def table(columns: Sequence[Column | str], rows: Iterable[Sequence[str | Text]], *,
          width: int | None = None) -> Table | Stacked:  # fmt: skip
    """Rows as a table whose every row is one line within ``width`` (default: stdout's width);
    with a name column that does not fit, the stacked layout (a line per name, a line of cells)."""
    spec = _columns(columns)
    cells = [[_cell(value) for value in row] for row in rows]
    natural = [
        max([len(column.header)] + [row[i].cell_len for row in cells])
        for i, column in enumerate(spec)
    ]
    width = width or stdout.width
    n = len(spec)
    if sum(natural) + 3 * n + 1 <= width:
        return _grid(spec, cells, natural, boxed=True)
    widths = fit_widths(spec, natural, width - GAP * (n - 1))
    if sum(widths) + GAP * (n - 1) <= width or not spec[0].name or n == 1:
        return _grid(spec, cells, widths, boxed=False)
    rest = spec[1:]
    widths = fit_widths(rest, natural[1:], width - INDENT - GAP * (n - 2))
    body = _grid(rest, [row[1:] for row in cells], widths, boxed=False)
    header = Text(spec[0].header, style="bold")
    return Stacked(header, [row[0] for row in cells], body)


def print_table(columns: Sequence[Column | str], rows: Iterable[Sequence[str | Text]]) -> None:
    """``table`` on stdout; a name longer than the width stays whole on its line (not cropped)."""
    stdout.print(table(columns, rows), crop=False)
