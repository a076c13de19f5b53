"""How ``apo validate`` looks: a progress bar over models, then a verdict table or JSON."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from alphapulse_onnx import render
from alphapulse_onnx.commands.validate import ModelCheck, ValidateEvent
from alphapulse_onnx.render import Column
from alphapulse_onnx.views import cells
from alphapulse_onnx.views.convert import until_started


@dataclass(frozen=True)
class ValidateOutcome:
    manifest_path: Path
    checks: tuple[ModelCheck, ...]

    @property
    def failed(self) -> list[ModelCheck]:
        return [c for c in self.checks if not c.passed]


def run_with_progress(events: Iterator[ValidateEvent], manifest_path: Path, *,
                      quiet: bool) -> ValidateOutcome:  # fmt: skip
    started = until_started(events, quiet=quiet)
    checks = [
        event
        for event in render.track(events, started.total, "validating", quiet=quiet)
        if isinstance(event, ModelCheck)
    ]
    return ValidateOutcome(manifest_path, tuple(checks))


def summary(outcome: ValidateOutcome) -> dict[str, Any]:
    return {
        "manifest": outcome.manifest_path.as_posix(),
        "passed": not outcome.failed,
        "models": len(outcome.checks),
        "failed": len(outcome.failed),
        "results": [check.to_json() for check in outcome.checks],
    }


def _cell(state: str) -> str:
    if state == "ok":
        return "[green]ok[/]"
    if state == "-":
        return "-"
    return f"[red]{state}[/]"


def _parity_cell(check: ModelCheck) -> str:
    report = check.report
    if report is None:
        return _cell(check.parity)
    return f"{_cell(check.parity)} ({cells.parity(report)})"


def show(outcome: ValidateOutcome, *, as_json: bool) -> None:
    if as_json:
        render.print_json(summary(outcome))
        return
    with_origin = any(check.origin is not None for check in outcome.checks)
    rows = [
        [
            escape(check.name),
            _cell(check.artifact),
            _cell(check.source),
            _cell(check.checker),
            _parity_cell(check),
            *([cells.origin(check.origin)] if with_origin else []),
            "[green]pass[/]" if check.passed else "[bold red]FAIL[/]",
        ]
        for check in outcome.checks
    ]
    columns = [
        Column("model", name=True),
        Column("artifact"),
        Column("source"),
        Column("checker"),
        Column("parity"),
        Column("result"),
    ]
    if with_origin:
        columns.insert(5, Column("origin"))
    if rows:
        render.print_table(columns, rows)
        legend = cells.legend(check.report for check in outcome.checks)
        if legend is not None:
            render.note(legend)
    for check in outcome.checks:
        for warning in check.warnings:
            render.warning_line(f"{check.name}: {warning}")
    for check in outcome.failed:
        for reason in check.reasons:
            render.error_line(f"{check.name}: {reason}")
    total = len(outcome.checks)
    if not total:
        render.info_line(f"the manifest lists no models: {outcome.manifest_path}")
    elif outcome.failed:
        render.info_line(
            f"{len(outcome.failed)} of {total} models failed validation; "
            f"manifest: {outcome.manifest_path}"
        )
    else:
        render.info_line(f"{total}/{total} models valid; manifest: {outcome.manifest_path}")
