"""How ``apo bench`` looks: progress per model, a table per model, a summary of speedups and
settings (or JSON), the gate's verdict, a plot."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.markup import escape

from alphapulse_onnx import render
from alphapulse_onnx._fsutil import atomic_write_bytes
from alphapulse_onnx.commands.bench import BenchOutcome, ModelBench, Row, Step
from alphapulse_onnx.engines import SKLEARN
from alphapulse_onnx.errors import InputError
from alphapulse_onnx.render import Column

PLOT_HINT = "pip install 'alphapulse-onnx[plot]'"


def require_matplotlib(path: Path) -> None:
    """Fail before any timing when --plot cannot be honoured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(
            "--plot needs matplotlib, which is not installed", path=path, hint=PLOT_HINT
        ) from None


def run_with_progress(events: Iterator[Step | BenchOutcome], *, quiet: bool) -> BenchOutcome:
    if not render.show_progress(quiet):
        for event in events:
            if isinstance(event, BenchOutcome):
                return event
        raise RuntimeError("apo bench ended without an outcome")
    with render.progress_bar() as progress:
        task = None
        for event in events:
            if isinstance(event, BenchOutcome):
                return event
            if task is None:
                task = progress.add_task("benchmarking", total=event.total, status="")
            progress.update(task, completed=event.index, status=f"{event.model}: {event.stage}")
    raise RuntimeError("apo bench ended without an outcome")


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.3g}M"
    if value >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}x" if value < 1000 else f"{value:.0f}x"


def _speedup(row: Row) -> str:
    text = _ratio(row.speedup)
    if row.speedup is None or row.timing.engine == SKLEARN:
        return text
    return f"[green]{text}[/]" if row.speedup >= 1 else f"[red]{text}[/]"


def _engine(row: Row) -> str:
    """The engine as the docs, ``--json`` and the manifest name it: ``sklearn``, ``onnx`` (apo's
    path), ``ort-bare``; a variant after it (``onnx fp16``)."""
    t = row.timing
    return t.engine if t.variant in ("-", "", "fp32") else f"{t.engine} {t.variant}"


def _provider(provider: str | None) -> str:
    return "-" if provider is None else provider.removesuffix("ExecutionProvider")


def _parity(row: Row) -> str:
    if row.parity is None:
        return "reference"
    if row.parity.passed:
        return "[green]passed[/]"
    return f"[red]{escape(row.parity_cell)}[/]"


def table_rows(m: ModelBench, *, with_provider: bool) -> list[list[str]]:
    out = []
    for r in m.rows:
        t = r.timing
        cells = [str(t.batch_size), _engine(r)]
        if with_provider:
            cells.append(_provider(t.provider))
        cells += [_ms(t.p50_s), _ms(t.p99_s), _rate(t.rows_per_s), _speedup(r), _parity(r)]
        out.append(cells)
    return out


def _columns(with_provider: bool) -> list[Column]:
    columns = [Column("batch", justify="right"), Column("engine")]
    if with_provider:
        columns.append(Column("provider"))
    columns += [
        Column("p50 ms", justify="right"),
        Column("p99 ms", justify="right"),
        Column("rows/s", justify="right"),
        Column("speedup", justify="right"),
        Column("parity", shrink="end"),
    ]
    return columns


def settings_text(m: ModelBench) -> str:
    """``2 threads, no spin, opt basic``: the session settings apo's path ran with (tuned in
    this run, else read from the manifest: "(manifest)")."""
    if m.session is None:
        return "onnxruntime defaults"
    s = m.session.settings
    threads = s.intra_op_threads
    parts = [f"{threads} thread{'s' if threads != 1 else ''}" if threads else "auto threads",
             "spin" if s.allow_spinning else "no spin"]  # fmt: skip
    if s.execution_mode != "sequential":
        parts.append(s.execution_mode)
    if s.graph_optimization != "all":
        parts.append(f"opt {s.graph_optimization}")
    return ", ".join(parts) + ("" if m.tuned else " (manifest)")


LEGEND = (
    "sklearn: the source model; onnx: apo's path (Store); ort-bare: a default session",
    "speedup: sklearn p50 / engine p50, timed together in this run",
)


def _summary(models: list[ModelBench], *, with_provider: bool) -> None:
    rows = [
        [
            escape(m.name),
            *([_provider(h.provider)] if with_provider else []),
            _ratio(h.smallest),
            _ratio(h.largest),
            escape(settings_text(m)),
        ]
        for m in models
        for h in m.headlines()
    ]
    if not rows:
        return
    sizes = {(h.smallest_batch, h.largest_batch) for m in models for h in m.headlines()}
    small, large = sizes.pop() if len(sizes) == 1 else ("smallest", "largest")
    columns = [Column("model", name=True)]
    if with_provider:
        columns.append(Column("provider"))
    columns += [
        Column(f"{small} row{'s' if small != 1 else ''}", justify="right"),
        Column(f"{large} rows", justify="right"),
        Column("session", shrink="end"),
    ]
    render.stdout.print()
    render.heading("summary: apo's path (onnx) against scikit-learn, speedup at p50")
    render.print_table(columns, rows)


def show(outcome: BenchOutcome, *, as_json: bool, plot: Path | None = None) -> None:
    if as_json:
        payload = outcome.to_json()
        payload["plot"] = plot.as_posix() if plot is not None else None
        render.print_json(payload)
    else:
        running = [p.name for p in outcome.providers if p.runs]
        with_provider = len(running) > 1
        machine = outcome.machine
        title = f"apo bench on {machine.cpu} ({machine.cores} cores)"
        if not with_provider and running:
            title += f", {_provider(running[0])}"
        render.heading(title)
        benched = [m for m in outcome.models if m.rows]
        for m in benched:
            estimator = (m.estimator or "").rsplit(".", 1)[-1]
            render.stdout.print()
            render.heading(f"{m.name} ({estimator})" if estimator else m.name)
            rows = table_rows(m, with_provider=with_provider)
            render.print_table(_columns(with_provider), rows)
        if benched:
            for line in LEGEND:
                render.note(line)
        _summary(benched, with_provider=with_provider)
        for m in outcome.models:
            for v in m.variants:
                render.info_line(escape(f"{m.name}: {v.name} {v.status}: {v.note}"))
    for warning in outcome.warnings:
        render.warning_line(warning)
    for m in outcome.models:
        if m.note:
            render.warning_line(f"{m.name}: {m.note}")
        if m.status == "failed":
            render.error_line(m.error or f"{m.name}: failed")
        elif m.status == "skipped":
            render.warning_line(m.error or f"{m.name}: skipped")
    if outcome.min_speedup is not None:
        for failure in outcome.gate_failures:
            render.error_line(failure.line(outcome.min_speedup))
    if not as_json:
        done = sum(m.status == "ok" for m in outcome.models)
        line = f"{done}/{len(outcome.models)} models benchmarked; manifest: {outcome.manifest_path}"
        if plot is not None:
            line += f"; plot: {plot}"
        render.info_line(line)


def _series(m: ModelBench) -> dict[str, list[Row]]:
    lines: dict[str, list[Row]] = {}
    for r in m.rows:
        t = r.timing
        label = t.engine if t.provider is None else f"{_engine(r)} ({_provider(t.provider)})"
        lines.setdefault(label, []).append(r)
    return lines


def write_plot(outcome: BenchOutcome, path: Path) -> None:
    """Latency and throughput against batch size, a line per engine, log scales; a row per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in outcome.models if m.rows]
    if not models:
        raise InputError("nothing was benchmarked, so there is nothing to plot", path=path)
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.6 * len(models)), squeeze=False)
    for (latency, throughput), m in zip(axes, models, strict=True):
        for label, rows in _series(m).items():
            rows = sorted(rows, key=lambda r: r.timing.batch_size)
            sizes = [r.timing.batch_size for r in rows]
            style: dict[str, Any] = {"marker": "o", "label": label}
            if label == SKLEARN:
                style.update(color="black", linestyle="--")
            latency.plot(sizes, [r.timing.p50_s * 1e3 for r in rows], **style)
            throughput.plot(sizes, [r.timing.rows_per_s for r in rows], **style)
        sizes = sorted({r.timing.batch_size for r in m.rows})
        for ax, what in ((latency, "p50 latency per call (ms)"), (throughput, "rows per second")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(sizes, [str(size) for size in sizes])
            ax.minorticks_off()
            ax.set_xlabel("batch size (rows)")
            ax.set_ylabel(what)
            ax.grid(True, which="major", alpha=0.3)
        latency.set_title(f"{m.name}: latency", loc="left", fontsize=10)
        throughput.set_title(f"{m.name}: throughput", loc="left", fontsize=10)
        throughput.legend(fontsize=8, loc="best")
    machine = outcome.machine
    fig.suptitle(
        f"apo bench: {machine.cpu}, {machine.cores} cores ({machine.measured})",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
