"""How ``apo providers`` looks."""

from __future__ import annotations

from alphapulse_onnx import render
from alphapulse_onnx.runtime import ProvidersReport


def show(report: ProvidersReport, missing: list[str], *, as_json: bool) -> None:
    if as_json:
        render.print_json({**report.to_json(), "missing_required": missing, "ok": not missing})
    else:
        rows = [
            [
                p.name,
                "yes" if p.listed else "no",
                "[green]yes[/]" if p.runs else "[red]no[/]",
                p.device or "-",
                p.reason or "",
            ]
            for p in report.providers
        ]
        render.stdout.print(
            render.table(
                "Execution providers", ["provider", "listed", "runs", "device", "note"], rows
            )
        )
        versions = ", ".join(f"{k} {v}" for k, v in report.versions.items() if v)
        render.stdout.print(f"stack: {versions}", highlight=False)
        for warning in report.warnings:
            render.warning_line(warning)
    for name in missing:
        render.error_line(f"required provider {name} does not run here")
