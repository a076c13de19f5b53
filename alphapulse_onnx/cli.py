"""The ``apo`` command line: parse flags, call a command, render its outcome, exit with its code.

No scikit-learn or onnx work happens here; commands live in ``alphapulse_onnx.commands``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alphapulse_onnx import __version__, render
from alphapulse_onnx.cli_base import ApoCommand, ApoGroup
from alphapulse_onnx.errors import ApoError, ExitCode, InputError

if TYPE_CHECKING:
    from alphapulse_onnx.loading import TrustPolicy
    from alphapulse_onnx.origin.check import OriginOptions

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]
DebugFlag = Annotated[
    bool, typer.Option("--debug", envvar="APO_DEBUG", help="Show tracebacks on errors.")
]
TrustOption = Annotated[
    list[str] | None,
    typer.Option(
        "--trust",
        metavar="NAME",
        help="Allow this module or dotted name when loading model files (repeatable).",
    ),
]
UnsafeLoadFlag = Annotated[
    bool,
    typer.Option(
        "--unsafe-load",
        help="Turn off the model-file allowlist. A hostile file can then run any code.",
    ),
]
MaxModelMemoryOption = Annotated[
    str | None,
    typer.Option(
        "--max-model-memory",
        metavar="SIZE",
        envvar="APO_MAX_MODEL_MEMORY",
        help="Most memory one model file may declare while loading (e.g. 8G). Default: 100x "
        "the file's size, at least 256M and at most 4G.",
    ),
]
SelectOption = Annotated[
    str | None,
    typer.Option(
        "--select",
        metavar="KEY",
        help="For model files that save several models in a dict or list: the key (or index) of "
        "the one to use, e.g. pipeline or models.churn.",
    ),
]
OriginFlag = Annotated[
    bool,
    typer.Option(
        "--origin",
        help="Also check each artifact against the model as the library versions that saved it "
        "answer, in a cached environment with those versions. --origin=require: a check that "
        "cannot run (no wheel for this Python, offline) fails the model.",
    ),
]
# What `--origin=require` becomes before Typer parses (see normalize_args).
OriginRequireFlag = Annotated[
    bool, typer.Option("--origin-require", hidden=True, help="--origin=require.")
]
OriginCacheOption = Annotated[
    Path | None,
    typer.Option(
        "--origin-cache",
        metavar="DIR",
        envvar="APO_ORIGIN_CACHE",
        help="Where --origin keeps its environments (default: your user cache, apo/origin).",
    ),
]
OriginOfflineFlag = Annotated[
    bool,
    typer.Option(
        "--origin-offline",
        help="--origin uses only environments already in the cache; models that need another "
        "are skipped.",
    ),
]
DEFAULT_MANIFEST_DIR = Path("models/onnx")


class ScoringEngine(str, Enum):
    """Where ``apo predict`` scores: in this process, or on a Dask cluster."""

    LOCAL = "local"
    DASK = "dask"


ManifestArg = Annotated[
    Path,
    typer.Argument(
        metavar="STORE",
        help="The store apo convert wrote (a folder with manifest.json), its manifest.json, "
        "or a registry whose onnx/ is the store.",
    ),
]
PluginOption = Annotated[
    list[str] | None,
    typer.Option(
        "--plugin", metavar="MODULE", help="Import a converter plugin module (repeatable)."
    ),
]

app = typer.Typer(
    name="apo",
    help="Compile scikit-learn model registries to ONNX, prove parity, benchmark and serve them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode="rich",
    cls=ApoGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"apo {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """apo: scikit-learn models in, validated ONNX artifacts and fast predictions out."""


@contextlib.contextmanager
def error_boundary(*, debug: bool) -> Iterator[None]:
    """The one place errors become exit codes: one line each, a traceback only with --debug."""
    try:
        yield
    except ApoError as exc:
        if debug:
            raise
        render.error_line(str(exc))
        raise SystemExit(int(exc.exit_code)) from None
    except KeyboardInterrupt:
        render.error_line("interrupted")
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:
        if debug:
            raise
        render.error_line(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
        raise SystemExit(int(ExitCode.FAILED)) from None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def _size(text: str | None) -> int | None:
    """``8G``, ``512M``, ``1.5GiB`` or a plain byte count, as bytes."""
    if text is None:
        return None
    match = _SIZE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise InputError(f"--max-model-memory: {text!r} is not a size (examples: 512M, 8G)")
    scale = 1024 ** "_kmgt".index(match.group(2).lower() or "_")
    return int(float(match.group(1)) * scale)


def _policy(
    trust: list[str] | None,
    unsafe_load: bool,
    max_model_memory: str | None = None,
    select: str | None = None,
) -> TrustPolicy:
    if unsafe_load:
        render.warning_line(
            "--unsafe-load: model files are unpickled WITHOUT the allowlist; a hostile file can "
            "run any code on this machine. Use it only on files you created yourself."
        )
    from alphapulse_onnx.loading import TrustPolicy

    return TrustPolicy(
        trusted=tuple(trust or ()),
        unsafe=unsafe_load,
        max_model_memory=_size(max_model_memory),
        select=select,
    )


def _origin(origin: bool, require: bool, cache: Path | None,
            offline: bool) -> OriginOptions | None:  # fmt: skip
    if not (origin or require):
        if offline:
            raise InputError("--origin-offline applies to origin checks: add --origin")
        return None
    from alphapulse_onnx.origin.check import OriginOptions

    return OriginOptions(mode="require" if require else "check", cache=cache, offline=offline)


def _require_store(store: Path, *, how: str) -> None:
    """The default store where there is none (outside the repository): say how to name one.
    ``how``: the flag, variable or argument that does."""
    if store != DEFAULT_MANIFEST_DIR:
        return
    if store.is_file() or any((store / sub / "manifest.json").is_file() for sub in (".", "onnx")):
        return
    raise InputError(
        f"no store at {store}, the default (no manifest.json there)",
        hint=f"{how} (the folder `apo convert` wrote), or run `apo convert REGISTRY` here first",
    )


StoreOption = Annotated[
    Path,
    typer.Option(
        "--store",
        metavar="STORE",
        help="The store apo convert wrote (folder with manifest.json).",
        envvar=["APO_STORE", "APO_REGISTRY"],
    ),
]


@app.command(cls=ApoCommand)
def convert(
    registry: Annotated[
        Path,
        typer.Argument(
            metavar="REGISTRY", help="Folder of .joblib/.pkl/.pickle model files, or one file."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output folder (default: REGISTRY/onnx).", envvar="APO_OUT"
        ),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(help="Real rows (.npy or .csv) for the parity check instead of probes."),
    ] = None,
    opset: Annotated[
        int | None,
        typer.Option(help="ONNX opset (default: newest the runtime runs).", envvar="APO_OPSET"),
    ] = None,
    atol: Annotated[float, typer.Option(help="Probability tolerance (absolute).")] = 1e-4,
    rtol: Annotated[float, typer.Option(help="Regression tolerance (relative).")] = 1e-4,
    force: Annotated[bool, typer.Option(help="Rebuild models even when nothing changed.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            help="Worker processes; 0: one per CPU core (default: one per core once the "
            "registry has 50+ models, else none).",
            envvar="APO_JOBS",
        ),
    ] = None,
    trust: TrustOption = None,
    unsafe_load: UnsafeLoadFlag = False,
    max_model_memory: MaxModelMemoryOption = None,
    select: SelectOption = None,
    plugin: PluginOption = None,
    origin: OriginFlag = False,
    origin_require: OriginRequireFlag = False,
    origin_cache: OriginCacheOption = None,
    origin_offline: OriginOfflineFlag = False,
    as_json: JsonFlag = False,
    debug: DebugFlag = False,
) -> None:
    """Compile every model in REGISTRY to ONNX, check parity, and write the manifest."""
    from alphapulse_onnx.commands import convert as command
    from alphapulse_onnx.parity import Tolerance
    from alphapulse_onnx.views import convert as view

    with error_boundary(debug=debug):
        if atol <= 0 or rtol <= 0:
            raise InputError("--atol and --rtol: tolerances must be positive numbers")
        if jobs is not None and jobs < 0:
            raise InputError(f"--jobs takes 0 (one per CPU core) or a worker count, not {jobs}")
        options = command.ConvertOptions(
            registry=registry,
            out=out,
            sample=sample,
            opset=opset,
            tolerance=Tolerance(proba_atol=atol, regression_rtol=rtol),
            force=force,
            policy=_policy(trust, unsafe_load, max_model_memory, select),
            plugins=tuple(plugin or ()),
            jobs=(os.cpu_count() or 1) if jobs == 0 else jobs,
            origin=_origin(origin, origin_require, origin_cache, origin_offline),
        )
        outcome = view.run_with_progress(command.run(options), options, quiet=as_json)
    view.show(outcome, as_json=as_json)
    raise typer.Exit(int(ExitCode.FAILED if outcome.failed else ExitCode.OK))


@app.command(cls=ApoCommand)
def providers(
    require: Annotated[
        list[str] | None,
        typer.Option(
            "--require", metavar="PROVIDER", help="Exit 1 unless this provider runs (e.g. CUDA)."
        ),
    ] = None,
    as_json: JsonFlag = False,
    debug: DebugFlag = False,
) -> None:
    """Which ONNX Runtime execution providers exist here, and which actually run."""
    from alphapulse_onnx.commands import providers as command
    from alphapulse_onnx.views import providers as view

    with error_boundary(debug=debug):
        required = command.check_names(require or [], flag="--require")
        report = command.run()
        missing = command.missing(report, required)
    view.show(report, command.notes(report), missing, as_json=as_json)
    raise typer.Exit(int(ExitCode.FAILED if missing else ExitCode.OK))


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    from alphapulse_onnx.errors import InputError

    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"{flag} takes comma-separated whole numbers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"{flag} takes positive whole numbers, got {text!r}")
    return tuple(sorted(set(values)))


@app.command(cls=ApoCommand)
def bench(
    target: ManifestArg = DEFAULT_MANIFEST_DIR,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", metavar="NAME", help="Only this model (repeatable)."),
    ] = None,
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Comma-separated rows per call.")
    ] = "1,64,1024,16384",
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Also build, validate and time an FP16 variant.")
    ] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also build, validate and time an INT8 variant.")
    ] = False,
    providers: Annotated[
        str | None,
        typer.Option(
            "--providers",
            metavar="LIST",
            help="Comma-separated providers to time, e.g. cpu,cuda; those that do not run are "
            "reported (default: those apo would pick that run here: CUDA where it runs, CPU).",
        ),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(
            help="Rows to time and check on (.npy, .csv; .csv or .parquet with text columns for "
            "DataFrame models) instead of rows drawn from each model's probes.",
        ),
    ] = None,
    repeat: Annotated[
        int | None,
        typer.Option("--repeat", min=1, help="Timed calls per engine and batch (not budget)."),
    ] = None,
    budget_s: Annotated[
        float,
        typer.Option(
            "--budget-s",
            envvar="APO_BENCH_BUDGET_S",
            help="Seconds of timed calls per engine and batch size.",
        ),
    ] = 0.5,
    tune: Annotated[
        bool,
        typer.Option("--tune/--no-tune", help="Measure session settings; record the best."),
    ] = True,
    atol: Annotated[
        float | None, typer.Option(help="Variant probability tolerance (default: the manifest's).")
    ] = None,
    rtol: Annotated[
        float | None, typer.Option(help="Variant regression tolerance (default: the manifest's).")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", metavar="FILE.png", help="Draw latency and throughput vs batch."),
    ] = None,
    min_speedup: Annotated[
        float | None,
        typer.Option(
            "--min-speedup",
            metavar="X",
            help="Exit 1 when apo's path is slower than X times scikit-learn anywhere.",
        ),
    ] = None,
    trust: TrustOption = None,
    unsafe_load: UnsafeLoadFlag = False,
    max_model_memory: MaxModelMemoryOption = None,
    select: SelectOption = None,
    as_json: JsonFlag = False,
    debug: DebugFlag = False,
) -> None:
    """Time scikit-learn against apo's ONNX path and variants, side by side; record the figures."""
    from alphapulse_onnx.commands import bench as command
    from alphapulse_onnx.commands import providers as providers_command
    from alphapulse_onnx.errors import InputError
    from alphapulse_onnx.parity import Tolerance
    from alphapulse_onnx.views import bench as view

    with error_boundary(debug=debug):
        _require_store(target, how="name the store: apo bench STORE")
        if budget_s <= 0:
            raise InputError("--budget-s must be positive")
        if (atol is not None and atol <= 0) or (rtol is not None and rtol <= 0):
            raise InputError("tolerances must be positive")
        tolerance = None
        if atol is not None or rtol is not None:
            default = Tolerance()
            tolerance = Tolerance(
                proba_atol=default.proba_atol if atol is None else atol,
                regression_rtol=default.regression_rtol if rtol is None else rtol,
            )
        if plot is not None:
            view.require_matplotlib(plot)
        options = command.BenchOptions(
            target=target,
            models=tuple(model or ()),
            batch_sizes=_int_list(batch_sizes, "--batch-sizes"),
            fp16=fp16,
            int8=int8,
            providers=tuple(
                providers_command.check_names(
                    [p.strip() for p in (providers or "").split(",") if p.strip()],
                    flag="--providers",
                )
            ),
            sample=sample,
            repeat=repeat,
            budget_s=budget_s,
            tune=tune,
            tolerance=tolerance,
            min_speedup=min_speedup,
            policy=_policy(trust, unsafe_load, max_model_memory, select),
        )
        outcome = view.run_with_progress(command.run(options), quiet=as_json)
        if plot is not None:
            view.write_plot(outcome, plot)
    view.show(outcome, as_json=as_json, plot=plot)
    raise typer.Exit(int(ExitCode.FAILED if outcome.failed else ExitCode.OK))


@app.command(cls=ApoCommand)
def validate(
    target: ManifestArg = DEFAULT_MANIFEST_DIR,
    sample: Annotated[
        Path | None,
        typer.Option(help="Real rows (.npy or .csv) for the parity check instead of probes."),
    ] = None,
    trust: TrustOption = None,
    unsafe_load: UnsafeLoadFlag = False,
    max_model_memory: MaxModelMemoryOption = None,
    select: SelectOption = None,
    origin: OriginFlag = False,
    origin_require: OriginRequireFlag = False,
    origin_cache: OriginCacheOption = None,
    origin_offline: OriginOfflineFlag = False,
    manifest_only: Annotated[
        bool,
        typer.Option(
            "--manifest-only",
            help="Check only the manifest's entries, not model files and artifacts it lacks.",
        ),
    ] = False,
    as_json: JsonFlag = False,
    debug: DebugFlag = False,
) -> None:
    """Check every artifact against its manifest entry and source model (the CI gate)."""
    from alphapulse_onnx.commands import validate as command
    from alphapulse_onnx.views import validate as view

    with error_boundary(debug=debug):
        _require_store(target, how="name the store: apo validate STORE")
        manifest_path = command.find_manifest(target)
        options = command.ValidateOptions(
            target=manifest_path,
            sample=sample,
            policy=_policy(trust, unsafe_load, max_model_memory, select),
            origin=_origin(origin, origin_require, origin_cache, origin_offline),
            manifest_only=manifest_only,
        )
        outcome = view.run_with_progress(command.run(options), manifest_path, quiet=as_json)
    view.show(outcome, as_json=as_json)
    raise typer.Exit(int(ExitCode.FAILED if outcome.failed else ExitCode.OK))


@app.command(cls=ApoCommand)
def predict(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="Model name in the manifest, or a path to its .onnx artifact."
        ),
    ],
    source: Annotated[
        str,
        typer.Argument(
            metavar="INPUT", help="Rows: .csv, .npy, .parquet, .jsonl, or - for CSV/JSONL on stdin."
        ),
    ],
    store: Annotated[
        Path,
        typer.Option(
            "--store",
            help="The store apo convert wrote (folder with manifest.json).",
            envvar=["APO_STORE", "APO_REGISTRY"],
        ),
    ] = DEFAULT_MANIFEST_DIR,
    old_store_flag: Annotated[
        Path | None, typer.Option("--registry", hidden=True, help="Old name of --store.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write .csv/.jsonl/.npy/.parquet (default: CSV on stdout)."
        ),
    ] = None,
    proba: Annotated[
        bool | None,
        typer.Option("--proba/--no-proba", help="proba_<class> columns (default: when available)."),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            help="Execution provider, e.g. cpu or cuda (default: best that runs).",
            envvar="APO_PROVIDER",
        ),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Rows per chunk (bounds memory).")
    ] = 10_000,
    engine: Annotated[
        ScoringEngine,
        typer.Option(
            "--engine",
            help="local: stream in this process. dask: score a folder, glob or partitioned "
            "dataset on Dask and write Parquet partitions to -o OUTPUT_DIR (needs the dask extra).",
            envvar="APO_ENGINE",
        ),
    ] = ScoringEngine.LOCAL,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Dask scheduler address (default: a local cluster of worker processes).",
            envvar="APO_SCHEDULER",
        ),
    ] = None,
    partitions: Annotated[
        int | None, typer.Option("--partitions", min=1, help="Repartition the input (dask).")
    ] = None,
    keep_columns: Annotated[
        bool,
        typer.Option(
            "--keep-columns",
            help="Write the input's columns before the predictions; the model's features are "
            "then taken by name and other columns (ids, keys) ride along.",
        ),
    ] = False,
    invalid_rows: Annotated[
        str,
        typer.Option(
            "--invalid-rows",
            metavar="error|skip|null",
            help="Rows the model cannot answer (a short row, a cell that is not a number, NaN or "
            "inf it refuses): error ends the run naming the first; skip leaves them out and "
            "counts them; null writes empty predictions for them.",
        ),
    ] = "error",
    trust: TrustOption = None,
    unsafe_load: UnsafeLoadFlag = False,
    max_model_memory: MaxModelMemoryOption = None,
    select: SelectOption = None,
    as_json: JsonFlag = False,
    debug: DebugFlag = False,
) -> None:
    """Predict every row of INPUT with MODEL (ONNX Runtime, or scikit-learn when it must)."""
    from alphapulse_onnx.commands import predict as command
    from alphapulse_onnx.commands import predict_dask
    from alphapulse_onnx.errors import InputError
    from alphapulse_onnx.views import predict as view

    if engine is ScoringEngine.DASK:
        with error_boundary(debug=debug), view.log_lines():
            if output is None or str(output) == "-":
                raise InputError("--engine dask writes Parquet partitions: give -o OUTPUT_DIR")
            dask_options = predict_dask.DaskPredictOptions(
                model=model,
                input=source,
                output_dir=output,
                store=old_store_flag or store,
                proba=proba,
                scheduler=scheduler,
                partitions=partitions,
                keep_columns=keep_columns,
                invalid_rows=command.invalid_rows_option(invalid_rows),
                provider=provider,
                chunk_size=chunk_size,
                policy=_policy(trust, unsafe_load, max_model_memory, select),
            )
            with view.dask_progress(quiet=as_json) as on_progress:
                scored = predict_dask.run(dask_options, on_progress=on_progress)
        view.show_dask(scored, as_json=as_json)
        raise typer.Exit(int(ExitCode.OK))
    if scheduler or partitions:
        with error_boundary(debug=debug):
            raise InputError("--scheduler and --partitions need --engine dask")

    with error_boundary(debug=debug), view.log_lines():
        if not model.lower().endswith(".onnx"):
            _require_store(old_store_flag or store, how="pass --store STORE or set APO_STORE")
        to_stdout = output is None or str(output) == "-"
        if as_json and to_stdout:
            raise InputError("--json prints the summary on stdout; write predictions with -o FILE")
        options = command.PredictOptions(
            model=model,
            input=source,
            store=old_store_flag or store,
            output=None if to_stdout else output,
            proba=proba,
            provider=provider,
            chunk_size=chunk_size,
            policy=_policy(trust, unsafe_load, max_model_memory, select),
            invalid_rows=command.invalid_rows_option(invalid_rows),
            keep_columns=keep_columns,
        )
        quiet = as_json or (to_stdout and sys.stdout.isatty())
        try:
            result = view.run_with_progress(command.run(options), quiet=quiet)
        except BrokenPipeError:  # `apo predict ... | head`: the reader left, so do we
            view.detach_stdout()
            raise SystemExit(int(ExitCode.OK)) from None
    view.show(result, as_json=as_json)
    raise typer.Exit(int(ExitCode.OK))


@app.command(cls=ApoCommand)
def info(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL",
            help="Model name in the manifest, its source path, or a path to its .onnx artifact.",
        ),
    ],
    store: StoreOption = DEFAULT_MANIFEST_DIR,
    as_json: JsonFlag = False,
    debug: DebugFlag = False,
) -> None:
    """What MODEL takes and gives, how it was checked and measured, where it came from."""
    from alphapulse_onnx.commands import info as command
    from alphapulse_onnx.views import info as view

    with error_boundary(debug=debug):
        if not model.lower().endswith(".onnx"):
            _require_store(store, how="pass --store STORE or set APO_STORE")
        result = command.run(command.InfoOptions(model=model, store=store))
    view.show(result, as_json=as_json)
    raise typer.Exit(int(ExitCode.OK))


def normalize_args(args: Sequence[str]) -> list[str]:
    """``--origin=require`` as the hidden ``--origin-require`` (and ``--origin=check`` as
    ``--origin``): a Typer option is a flag or takes a value, never both, and ``--origin`` is
    both. Nothing after ``--`` is touched."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + list(args[i:])
        if arg.startswith("--origin="):
            value = arg.partition("=")[2]
            if value not in ("check", "require"):
                raise InputError(f"--origin takes no value, or =require (got {value!r})")
            out.append("--origin-require" if value == "require" else "--origin")
            continue
        out.append(arg)
    return out


def main() -> None:
    """Console-script entry point."""
    try:
        args = normalize_args(sys.argv[1:])
    except InputError as exc:
        render.error_line(str(exc))
        sys.exit(int(exc.exit_code))
    try:
        app(args=args)
    except KeyboardInterrupt:
        render.error_line("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
