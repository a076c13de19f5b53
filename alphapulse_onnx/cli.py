"""The ``apo`` command line: parse flags, call a command, render its outcome, exit with its code.

No scikit-learn or onnx work happens here; commands live in ``alphapulse_onnx.commands``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from alphapulse_onnx import __version__, render
from alphapulse_onnx.errors import ApoError, ExitCode

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
PluginOption = Annotated[
    list[str] | None,
    typer.Option("--plugin", metavar="MODULE", help="Import a converter plugin module (repeatable)."),
]

app = typer.Typer(
    name="apo",
    help="Compile scikit-learn model registries to ONNX, prove parity, benchmark and serve them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
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


def _policy(trust: list[str] | None, unsafe_load: bool):  # type: ignore[no-untyped-def]
    from alphapulse_onnx.loading import TrustPolicy

    if unsafe_load:
        render.warning_line(
            "--unsafe-load: model files are unpickled WITHOUT the allowlist; a hostile file can "
            "run any code on this machine. Use it only on files you created yourself."
        )
    return TrustPolicy(trusted=tuple(trust or ()), unsafe=unsafe_load)


@app.command()
def convert(
    registry: Annotated[
        Path, typer.Argument(help="Folder of .joblib/.pkl/.pickle model files, or one file.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (default: REGISTRY/onnx).", envvar="APO_OUT"),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(help="Real rows (.npy or .csv) for the parity check instead of probes."),
    ] = None,
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset (default: newest the runtime runs).", envvar="APO_OPSET")
    ] = None,
    atol: Annotated[float, typer.Option(help="Probability tolerance (absolute).")] = 1e-4,
    rtol: Annotated[float, typer.Option(help="Regression tolerance (relative).")] = 1e-4,
    force: Annotated[bool, typer.Option(help="Rebuild models even when nothing changed.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", help="Worker processes (default: CPU cores).", envvar="APO_JOBS"),
    ] = None,
    trust: TrustOption = None,
    unsafe_load: UnsafeLoadFlag = False,
    plugin: PluginOption = None,
    as_json: JsonFlag = False,
    debug: DebugFlag = False,
) -> None:
    """Compile every model in REGISTRY to ONNX, check parity, and write the manifest."""
    from alphapulse_onnx.commands import convert as command
    from alphapulse_onnx.parity import Tolerance
    from alphapulse_onnx.views import convert as view

    with error_boundary(debug=debug):
        if atol <= 0 or rtol <= 0:
            raise typer.BadParameter("tolerances must be positive")
        options = command.ConvertOptions(
            registry=registry,
            out=out,
            sample=sample,
            opset=opset,
            tolerance=Tolerance(proba_atol=atol, regression_rtol=rtol),
            force=force,
            policy=_policy(trust, unsafe_load),
            plugins=tuple(plugin or ()),
            jobs=jobs if jobs is not None else (os.cpu_count() or 1),
        )
        outcome = view.run_with_progress(command.run(options), options, quiet=as_json)
    view.show(outcome, as_json=as_json)
    raise typer.Exit(int(ExitCode.FAILED if outcome.failed else ExitCode.OK))


@app.command()
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
        report = command.run()
        missing = command.missing(report, require or [])
    view.show(report, missing, as_json=as_json)
    raise typer.Exit(int(ExitCode.FAILED if missing else ExitCode.OK))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        render.error_line("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
