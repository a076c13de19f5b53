"""How ``apo bench`` looks: progress per model, a table (or JSON), the gate's verdict, a plot."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.markup import escape

from alphapulse_onnx import render
from alphapulse_onnx._fsutil import atomic_write_bytes
from alphapulse_onnx.commands.bench import BenchOutcome, ModelBench, Row, Step
from alphapulse_onnx.errors import InputError

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


def _speedup(row: Row) -> str:
    if row.speedup is None:
        return "-"
    text = f"{row.speedup:.3g}x" if row.speedup < 1000 else f"{row.speedup:.0f}x"
    if row.timing.engine == "sklearn":
        return text
    return f"[green]{text}[/]" if row.speedup >= 1 else f"[red]{text}[/]"


ENGINE_LABELS = {"sklearn": "sklearn", "onnx": "apo", "ort-bare": "bare ort"}


def _engine(row: Row) -> str:
    t = row.timing
    label = ENGINE_LABELS.get(t.engine, t.engine)
    return label if t.variant in ("-", "", "fp32") else f"{label} {t.variant}"


def _provider(provider: str | None) -> str:
    return "-" if provider is None else provider.removesuffix("ExecutionProvider")


def _parity(row: Row) -> str:
    if row.parity is None:
        return "ref"
    return "[green]ok[/]" if row.parity.passed else f"[red]{escape(row.parity_cell)}[/]"


def table_rows(models: tuple[ModelBench, ...], *, with_provider: bool) -> list[list[str]]:
    out = []
    for m in models:
        for r in m.rows:
            t = r.timing
            cells = [escape(m.name), str(t.batch_size), _engine(r)]
            if with_provider:
                cells.append(_provider(t.provider))
            cells += [_ms(t.p50_s), _ms(t.p99_s), _rate(t.rows_per_s), _speedup(r)]
            cells.append(_parity(r))
            out.append(cells)
    return out


def show(outcome: BenchOutcome, *, as_json: bool) -> None:
    if as_json:
        render.print_json(outcome.to_json())
    else:
        running = [p.name for p in outcome.providers if p.runs]
        with_provider = len(running) > 1
        columns = ["model", "batch", "engine"] + (["provider"] if with_provider else [])
        columns += ["p50 ms", "p99 ms", "rows/s", "speedup", "parity"]
        machine = outcome.machine
        title = f"apo bench on {machine.cpu} ({machine.cores} cores)"
        if not with_provider and running:
            title += f", {_provider(running[0])}"
        rows = table_rows(outcome.models, with_provider=with_provider)
        render.stdout.print(render.table(title, columns, rows))
        for m in outcome.models:
            for v in m.variants:
                render.info_line(escape(f"{m.name}: {v.name} {v.status}: {v.note}"))
            if m.session is not None:
                s = m.session.settings
                threads = s.intra_op_threads or "auto"
                origin = "tuned now" if m.tuned else "from the manifest"
                render.info_line(
                    f"{escape(m.name)}: session ({origin}): intra-op threads {threads}, "
                    f"spinning {'on' if s.allow_spinning else 'off'}, {s.execution_mode}, "
                    f"optimisation {s.graph_optimization}; apo timed through {m.apo_path}"
                )
    for warning in outcome.warnings:
        render.warning_line(warning)
    for m in outcome.models:
        if m.status == "failed":
            render.error_line(m.error or f"{m.name}: failed")
        elif m.status == "skipped":
            render.warning_line(m.error or f"{m.name}: skipped")
    if outcome.min_speedup is not None:
        for failure in outcome.gate_failures:
            render.error_line(failure.line(outcome.min_speedup))
    if not as_json:
        done = sum(m.status == "ok" for m in outcome.models)
        render.info_line(
            f"{done}/{len(outcome.models)} models benchmarked; manifest: {outcome.manifest_path}"
        )


def _series(m: ModelBench) -> dict[str, list[Row]]:
    lines: dict[str, list[Row]] = {}
    for r in m.rows:
        t = r.timing
        if t.provider is None:
            label = "scikit-learn"
        else:
            who = "apo" if t.engine == "onnx" else "bare onnxruntime"
            label = f"{who} {t.variant} ({_provider(t.provider)})"
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
            if label == "scikit-learn":
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
