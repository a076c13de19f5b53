"""How ``apo convert`` looks: a progress bar over models, then a summary table or JSON."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.status import Status

from alphapulse_onnx import causes, render
from alphapulse_onnx.commands.convert import ConvertEvent, ConvertOptions
from alphapulse_onnx.commands.events import EnvironmentReady, EnvironmentStarted, Started
from alphapulse_onnx.manifest import ManifestEntry
from alphapulse_onnx.render import Column
from alphapulse_onnx.views import cells


@dataclass(frozen=True)
class ConvertOutcome:
    entries: tuple[ManifestEntry, ...]
    manifest_path: Path

    @property
    def failed(self) -> list[ManifestEntry]:
        return [e for e in self.entries if not e.ok]

    @property
    def reused(self) -> list[ManifestEntry]:
        return [e for e in self.entries if e.ok and e.timings.get("reused")]


def until_started(events: Iterator[Any], *, quiet: bool) -> Started:
    """Show ``--origin`` environments being made (a spinner on a terminal, a line each in logs)
    until the command's ``Started``, and return that."""
    spinning: Status | None = None
    try:
        for event in events:
            if isinstance(event, Started):
                return event
            if isinstance(event, EnvironmentStarted) and not quiet:
                models = f"{event.models} model{'s' if event.models != 1 else ''}"
                text = f"origin: making an environment with {event.label} for {models} (once)"
                if render.show_progress(quiet):
                    spinning = render.stderr.status(text)
                    spinning.start()
                else:
                    render.info_line(text)
            elif isinstance(event, EnvironmentReady):
                if spinning is not None:
                    spinning.stop()
                    spinning = None
                if event.problem is not None:
                    render.warning_line(
                        f"origin: {event.problem}; the origin checks that need it are skipped"
                    )
                elif not quiet:
                    render.info_line(
                        f"origin: environment with {event.label} ready ({event.seconds:.0f} s)"
                    )
    finally:
        if spinning is not None:
            spinning.stop()
    raise TypeError("the command ended before it started")


def run_with_progress(events: Iterator[ConvertEvent], options: ConvertOptions, *,
                      quiet: bool) -> ConvertOutcome:  # fmt: skip
    entries: list[ManifestEntry] = []
    started = until_started(events, quiet=quiet)
    if render.show_progress(quiet):
        with render.progress_bar() as progress:
            task = progress.add_task("converting", total=started.total, status="")
            for event in _entries(events):
                entries.append(event)
                failures = sum(not e.ok for e in entries)
                progress.update(task, advance=1, status=f"{event.name}  failed: {failures}")
                if not event.ok:
                    render.error_line(event.error or f"{event.name}: failed")
    else:
        for event in _entries(events):
            entries.append(event)
            if not event.ok and not quiet:
                render.error_line(event.error or f"{event.name}: failed")
    return ConvertOutcome(tuple(entries), options.manifest_path)


def _entries(events: Iterator[ConvertEvent]) -> Iterator[ManifestEntry]:
    for event in events:
        if isinstance(event, ManifestEntry):
            yield event


def failure(entry: ManifestEntry) -> causes.Failure:
    """A failed entry's cause (recorded, or classified from its stage for older manifests) and
    what it is listed by."""
    message = entry.error or ""
    cause = causes.recorded(entry.cause, entry.stage, message)
    detail = causes.detail_of(cause, message, entry.source.estimator, entry.source.path)
    return causes.Failure(entry.name, cause, detail)


def failure_groups(outcome: ConvertOutcome) -> list[causes.Group]:
    return causes.group(failure(e) for e in outcome.failed)


def summary(outcome: ConvertOutcome) -> dict[str, Any]:
    return {
        "manifest": outcome.manifest_path.as_posix(),
        "models": len(outcome.entries),
        "ok": sum(e.ok for e in outcome.entries),
        "failed": len(outcome.failed),
        "reused": len(outcome.reused),
        "failures_by_cause": [group.to_json() for group in failure_groups(outcome)],
        "entries": [
            {
                "name": e.name,
                "status": e.status,
                "estimator": e.source.estimator,
                "error": e.error,
                "cause": None if e.ok else failure(e).cause,
                "artifact": e.artifact.path if e.artifact else None,
                "precision": e.artifact.precision if e.artifact else None,
                "size_bytes": e.artifact.size_bytes if e.artifact else None,
                "validation": e.validation.to_json() if e.validation else None,
                "reused": bool(e.timings.get("reused")),
                "warnings": list(e.warnings),
                "origin": e.origin.to_json() if e.origin else None,
            }
            for e in outcome.entries
        ],
    }


COLUMNS = [
    Column("model", name=True),
    Column("estimator", shrink="end"),
    Column("status"),
    Column("parity"),
    Column("precision"),
    Column("size", justify="right"),
]


def show(outcome: ConvertOutcome, *, as_json: bool) -> None:
    if as_json:
        render.print_json(summary(outcome))
        return
    rows = []
    with_origin = any(e.origin is not None for e in outcome.entries)
    for e in outcome.entries:
        status = "[green]ok[/]" if e.ok else "[red]failed[/]"
        if e.ok and e.timings.get("reused"):
            status = "[green]reused[/]"  # ok, and unchanged since the last run
        estimator = (e.source.estimator or "-").rsplit(".", 1)[-1]
        why = failure(e).cause if not e.ok else None
        rows.append([
            escape(e.name),
            escape(estimator),
            status,
            cells.parity(e.validation) if why is None else f"[red]{causes.LABELS[why][0]}[/]",
            *([cells.origin(e.origin)] if with_origin else []),
            e.artifact.precision if e.artifact else "-",
            render.fmt_bytes(e.artifact.size_bytes if e.artifact else None),
        ])  # fmt: skip
    columns = list(COLUMNS)
    if with_origin:
        columns.insert(4, Column("origin"))
    if rows:
        render.print_table(columns, rows)
        legend = cells.legend(e.validation for e in outcome.entries if e.ok)
        if legend is not None:
            render.note(legend)
    for group in failure_groups(outcome):
        render.stdout.print(group.line(times=render.times()), highlight=False, markup=False)
    for e in outcome.entries:
        for warning in e.warnings:
            render.warning_line(f"{e.name}: {warning}")
    sampled = [e.name for e in outcome.entries if e.validation and e.validation.probe == "sample"]
    probed = [e.name for e in outcome.entries if e.ok and e.name not in sampled]
    if sampled and probed:  # a --sample for some models of a mixed registry: say which
        render.info_line(f"--sample checked {len(sampled)} of {len(sampled) + len(probed)} "
                         f"models: {', '.join(sampled)}")  # fmt: skip
    ok = sum(x.ok for x in outcome.entries)
    line = f"{ok}/{len(outcome.entries)} converted"
    if outcome.reused:
        line += f" ({len(outcome.reused)} reused, unchanged)"
    if outcome.failed:
        line += f", {len(outcome.failed)} failed"
    render.info_line(f"{line}; manifest: {outcome.manifest_path}")
