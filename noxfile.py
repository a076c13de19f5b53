"""Developer sessions: `nox` runs tests, lint, typecheck and examples; `nox -s bench` is opt-in."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint", "typecheck", "examples"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (the README's test command, in a fresh environment)."""
    session.install("-e", ".[dev]")
    every_core = ["-n", "auto", "--dist", "loadscope"]  # the README's test command
    session.run("python", "-m", "pytest", *(session.posargs or every_core))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", "alphapulse_onnx", "tests", "examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", *session.posargs)


@nox.session
def examples(session: nox.Session) -> None:
    """Regenerate the example registry and convert it, as a newcomer would."""
    session.install("-e", ".[dev]")
    tmp = session.create_tmp()
    session.run("python", "examples/train_registry.py", "--out", f"{tmp}/models")
    session.run("apo", "convert", f"{tmp}/models")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios against scikit-learn measured in one run (see docs/performance.md)."""
    session.install("-e", ".[dev,plot]")
    tmp = session.create_tmp()
    session.run("python", "examples/compile_report.py", "--out", f"{tmp}/compile")
    session.run(
        "python", "examples/bench_families.py", "--out", f"{tmp}/families",
        "--plot", f"{tmp}/families.png",
    )  # fmt: skip
    session.run("python", "examples/bench_runtime.py")
    session.run("python", "examples/bench_loading.py")
    session.run("python", "examples/bench_scale.py")
    session.run("apo", "convert", "models/")
    session.run("apo", "bench", "models/onnx", "--plot", f"{tmp}/models.png", *session.posargs)
