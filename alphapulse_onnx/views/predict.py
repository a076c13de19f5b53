"""How ``apo predict`` looks: predictions on stdout or in a file, a progress bar for big inputs on a
terminal, the scikit-learn fallback as one warning line, and a summary (JSON with ``--json``).

The same for ``--engine dask``: a bar of partitions scored and a one-line summary. Views only
render; the commands (``commands.predict``, ``commands.predict_dask``) do the work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from alphapulse_onnx import render
from alphapulse_onnx.commands.predict import ChunkDone, PredictResult

if TYPE_CHECKING:
    from alphapulse_onnx.distributed import ScoreResult


class _WarningLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        render.warning_line(record.getMessage())


@contextlib.contextmanager
def log_lines() -> Iterator[None]:
    """Route the runtime's log lines (the fallback notice) to stderr in apo's own format."""
    logger = logging.getLogger("alphapulse_onnx")
    handler = _WarningLines(level=logging.WARNING)
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def detach_stdout() -> None:
    """Point stdout at /dev/null after a broken pipe, so the exit flush does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def run_with_progress(events: Iterator[ChunkDone | PredictResult], *, quiet: bool) -> PredictResult:
    """Drive the command; a bar appears only once the input spans more than one chunk."""
    progress = None
    task = None
    try:
        for event in events:
            if isinstance(event, PredictResult):
                return event
            if (
                progress is None
                and render.show_progress(quiet)
                and (event.total_rows is None or event.rows_done < event.total_rows)
            ):
                progress = render.progress_bar()
                progress.start()
                task = progress.add_task("predicting", total=event.total_rows, status="rows")
            if progress is not None and task is not None:
                progress.update(task, completed=event.rows_done)
    finally:
        if progress is not None:
            progress.stop()
    raise RuntimeError("apo predict ended without a result")


def rows_notes(model: str, source: str, rows: int, invalid_rows: str, invalid: int,
               first: str | None) -> None:  # fmt: skip
    """On stderr, also under --json: rows skipped or left empty, and an input with no rows."""
    if invalid:
        did = "skipped" if invalid_rows == "skip" else "answered with empty predictions"
        render.warning_line(f"{model}: {invalid} rows {did} (first: {first})")
    if rows == 0 and not invalid:
        render.info_line(f"{model}: 0 rows in {source}")


def show(result: PredictResult, *, as_json: bool) -> None:
    rows_notes(result.model, result.input, result.rows, result.invalid_rows, result.invalid,
               result.first_invalid)  # fmt: skip
    if as_json:
        render.print_json(result.to_json())
        return
    if result.output is not None:
        where = f"{result.provider}" if result.provider else "scikit-learn fallback"
        render.info_line(
            f"{result.model}: {result.rows} rows -> {result.output} "
            f"({result.engine}, {where}, {result.seconds:.2f} s)"
        )


@contextlib.contextmanager
def dask_progress(*, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A bar of partitions scored, on a terminal unless ``quiet``: yields what advances it.

    Without a bar it yields ``None``, and scoring runs with no progress callback at all.
    """
    if not render.show_progress(quiet):
        yield None
        return
    with render.progress_bar() as progress:
        task = progress.add_task("scoring partitions", total=None, status="")

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield advance


def show_dask(result: ScoreResult, *, as_json: bool) -> None:
    rows_notes(result.model, result.input, result.rows, result.invalid_rows, result.invalid,
               result.first_invalid)  # fmt: skip
    if as_json:
        render.print_json(result.to_json())
        return
    render.info_line(
        f"{result.rows} rows scored by {result.model} on Dask ({result.scheduler}) in "
        f"{result.seconds:.2f} s ({result.rows_per_s:,.0f} rows/s): {len(result.files)} Parquet "
        f"partitions in {result.output_dir}"
    )
