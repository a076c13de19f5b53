"""How ``apo providers`` looks: a line per provider (does it run, on what), then a note for each
provider that needs one (why it does not run, or why apo leaves it alone)."""

from __future__ import annotations

from rich.markup import escape

from alphapulse_onnx import render
from alphapulse_onnx.render import Column
from alphapulse_onnx.runtime import ProvidersReport


def summary(
    report: ProvidersReport, notes: dict[str, str], missing: list[str]
) -> dict[str, object]:
    raw = report.to_json()
    for provider in raw["providers"]:
        provider["note"] = notes.get(provider["name"])
    return {**raw, "missing_required": missing, "ok": not missing}


def show(report: ProvidersReport, notes: dict[str, str], missing: list[str], *,
         as_json: bool) -> None:  # fmt: skip
    if as_json:
        render.print_json(summary(report, notes, missing))
    else:
        rows = [
            [
                escape(p.name),
                "yes" if p.listed else "no",
                "[green]yes[/]" if p.runs else "[red]no[/]",
                escape(p.device or "-"),
            ]
            for p in report.providers
        ]
        columns = [
            Column("provider", name=True),
            Column("listed"),
            Column("runs"),
            Column("device", shrink="end"),
        ]
        render.heading("Execution providers")
        render.print_table(columns, rows)
        for name, note in notes.items():
            render.note(f"{name.removesuffix('ExecutionProvider')}: {note}")
        versions = ", ".join(f"{k} {v}" for k, v in report.versions.items() if v)
        render.note(f"stack: {versions}")
        for warning in report.warnings:
            render.warning_line(warning)
    for name in missing:
        render.error_line(f"required provider {name} does not run here")
