"""How ``apo info`` looks: a few labelled lines about the model, its input columns as a table
with an example CSV header, its outputs, and the figures apo measured (or JSON)."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from alphapulse_onnx import numbers, render
from alphapulse_onnx.causes import LABELS
from alphapulse_onnx.commands.info import ModelInfo
from alphapulse_onnx.render import Column
from alphapulse_onnx.views import cells

LABEL_WIDTH = 10


def _line(label: str, value: str) -> None:
    """``  label     value``: one line, never wrapped by apo (a terminal may fold it)."""
    render.stdout.print(f"  [bold]{label:<{LABEL_WIDTH}}[/] {value}", soft_wrap=True,
                        highlight=False)  # fmt: skip


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}x" if value < 1000 else f"{value:.0f}x"


def _value(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def _source(info: ModelInfo) -> None:
    e = info.entry
    s = e.source
    estimator = s.estimator or "-"
    what = f"{s.format}, " if s.format else ""
    _line("source", escape(f"{s.path} ({what}sha256 {s.sha256[:12]})"))
    _line("estimator", escape(estimator))
    if s.sklearn_version:
        running = info.tool.get("scikit-learn")
        now = f"; converted with {running}" if running and running != s.sklearn_version else ""
        _line("saved by", escape(f"scikit-learn {s.sklearn_version}{now}"))
    for upgrade in s.upgrades or ():
        _line("upgraded", escape(upgrade))
    if s.selected:
        _line("selected", escape(f"{s.selected} (the model inside the file's wrapper)"))
    for key, value in (s.metadata or {}).items():
        _line("metadata", escape(f"{key} = {_value(value)}"))
    for path in s.companions or {}:
        _line("side file", escape(path))


def _inputs(info: ModelInfo) -> None:
    columns = info.columns
    if not columns:
        return
    named = all(c.name is not None for c in columns)
    kinds = sorted({c.kind for c in columns})
    inputs = {c.input for c in columns}
    render.stdout.print()
    what = f"{len(columns)} column{'s' if len(columns) != 1 else ''} ({', '.join(kinds)})"
    if len(inputs) == 1 and len(columns) > 1:
        what += f", in that order, as the ONNX input {inputs.pop()}"
    render.heading(f"inputs: {what}" + ("" if named else ", by position (no names)"))
    per_column = len({c.input for c in columns}) > 1
    rows = [
        [escape(c.name if c.name is not None else f"#{i + 1}"), c.kind, c.dtype,
         *([escape(c.input)] if per_column else [])]
        for i, c in enumerate(columns)
    ]  # fmt: skip
    columns_spec = [Column("column", name=True), Column("kind"), Column("type")]
    if per_column:
        columns_spec.append(Column("ONNX input", shrink="end"))
    render.print_table(columns_spec, rows)
    header = info.csv_header
    if header is not None:
        render.note("example CSV header for apo predict:")
        render.stdout.print(escape(header), soft_wrap=True, highlight=False)
    else:
        render.note(f"a CSV for apo predict: no header, {len(columns)} numbers per row")


def _outputs(info: ModelInfo) -> None:
    e = info.entry
    if not e.outputs:
        return
    render.stdout.print()
    render.heading("outputs")
    rows = [[escape(spec.name), spec.dtype, escape(str(list(spec.shape)))] for spec in e.outputs]
    render.print_table([Column("name", name=True), "type", "shape"], rows)
    if e.classes is not None:
        _line("classes", escape(", ".join(str(c) for c in e.classes)))
    if e.task == "classification":
        _line("proba", "yes (predict_proba)" if e.has_proba else "no (decision scores)")


def _checks(info: ModelInfo) -> None:
    e = info.entry
    render.stdout.print()
    render.heading("checks")
    report = e.validation
    if report is not None:
        verdict = "[green]passed[/]" if report.passed else "[red]failed[/]"
        providers = ", ".join(p.removesuffix("ExecutionProvider") for p in e.providers) or "-"
        _line("parity", f"{verdict}: {escape(cells.parity(report))} on {report.rows} probe "
                        f"rows ({report.probe}); providers {escape(providers)}")  # fmt: skip
        meaning = cells.terms([report])
        if meaning is not None:
            _line("", f"[dim]({escape(meaning)})[/]")
        t = e.tolerance
        _line("tolerance", f"probabilities {t.proba_atol:g} (absolute), predictions "
                           f"{t.regression_rtol:g} (relative)")  # fmt: skip
    origin = e.origin
    if origin is None:
        _line("origin", "not checked (apo convert --origin)")
    else:
        versions = ", ".join(f"{k} {v}" for k, v in origin.versions.items())
        extra = f": {origin.reason}" if origin.reason else ""
        _line("origin", f"{cells.origin(origin)} against {escape(versions)}{escape(extra)}")


def _bench(info: ModelInfo) -> None:
    e = info.entry
    bench = e.bench
    render.stdout.print()
    render.heading("speed (last apo bench)")
    if bench is None:
        _line("bench", "not measured yet (apo bench)")
        return
    where = f" on {info.machine.cpu}" if info.machine is not None else ""
    _line("measured", escape(f"{bench.measured}{where}"))
    for speedup in info.speedups:
        sizes = ", ".join(
            f"{size} row{'s' if size != 1 else ''} {_ratio(value)}"
            for size, value in speedup.by_batch.items()
        )
        provider = speedup.provider.removesuffix("ExecutionProvider")
        _line("speedup", escape(f"{provider}: {sizes} (apo against scikit-learn, p50)"))
    if e.session is not None:
        s = e.session.settings
        _line("session", f"{s.intra_op_threads or 'auto'} intra-op threads, spinning "
                         f"{'on' if s.allow_spinning else 'off'}, {s.execution_mode}, "
                         f"optimisation {s.graph_optimization}")  # fmt: skip


def show(info: ModelInfo, *, as_json: bool) -> None:
    if as_json:
        render.print_json(info.to_json())
        return
    e = info.entry
    render.heading(e.name)
    cause = info.cause
    if cause is None:
        _line("status", "[green]ok[/]")
    else:
        _line("status", f"[red]failed[/]: {LABELS[cause][0]}")
    if e.task:
        _line("task", e.task)
    if e.artifact is not None:
        a = e.artifact
        _line("artifact", escape(f"{a.path} ({a.precision}, opset {a.opset}, ml opset "
                                 f"{a.ml_opset}, {render.fmt_bytes(a.size_bytes)})"))  # fmt: skip
        carried = numbers.served_precision("onnxruntime", e.outputs)
        _line("precision", f"{a.precision} graph, {carried} answers (as apo predict writes them)")
    _source(info)
    if e.error:
        _line("error", escape(e.error))
    _inputs(info)
    _outputs(info)
    if e.ok:
        _checks(info)
        _bench(info)
    if e.warnings:
        render.stdout.print()
        render.heading("warnings")
        for warning in e.warnings:
            _line("-", escape(warning))
    render.info_line(f"manifest: {info.manifest_path}")
