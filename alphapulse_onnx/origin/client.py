"""The origin worker, from apo's side: one long-lived process per environment, asked in turn.

Each request hands the probe rows over in a file (``exchange``), names the model file and what
to compute, and gets the worker's answers back in another file. A worker that dies (a crash in
an old library) fails only the request it held; the next request starts a fresh one. Workers
end when apo closes their stdin, at exit or when apo itself dies.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from alphapulse_onnx import loading, parity
from alphapulse_onnx.errors import first_line
from alphapulse_onnx.origin import exchange
from alphapulse_onnx.origin.environments import Environment
from alphapulse_onnx.probing import Probe
from alphapulse_onnx.signature import InputSignature

WORKER_SCRIPT = Path(__file__).with_name("worker.py")


class WorkerFailed(Exception):
    """The worker could not answer for this model; ``str`` is the one line why."""


def answers(environment: Environment, model_path: Path, signature: InputSignature, probe: Probe,
            policy: loading.TrustPolicy) -> tuple[parity.Answers, dict[str, str]]:  # fmt: skip
    """The model's answers on the probe rows, computed by the worker in ``environment``, and
    the versions that computed them."""
    worker = _worker(environment)
    with tempfile.TemporaryDirectory(prefix="apo-origin-") as scratch:
        try:
            expected = _ask(worker, Path(scratch), model_path, signature, probe, policy)
        except (exchange.ExchangeError, OSError) as exc:  # rows that cannot travel; a full disk
            raise WorkerFailed(f"cannot hand the rows to the origin worker: {exc}") from None
    return expected, worker.versions


def _ask(worker: _Worker, scratch: Path, model_path: Path, signature: InputSignature,
         probe: Probe, policy: loading.TrustPolicy) -> parity.Answers:  # fmt: skip
    """One request to ``worker``: rows and answers travel as files in ``scratch``."""
    rows_path, answers_path = scratch / "rows.npz", scratch / "answers.npz"
    _write_rows(rows_path, probe, signature)
    request = {
        "model": str(model_path.resolve()),
        "rows": str(rows_path),
        "answers": str(answers_path),
        "proba": signature.has_proba,
        "scores": signature.scores.method if signature.scores is not None else None,
        "policy": {
            "trusted": list(policy.trusted),
            "unsafe": policy.unsafe,
            "max_model_memory": policy.max_model_memory,
            "select": policy.select,
        },
    }
    reply = worker.ask(request)
    if not reply.get("ok"):
        doing = "load" if reply.get("stage") == "load" else "answer with"
        raise WorkerFailed(
            f"apo's loader could not {doing} it under {_label(worker.environment)}: "
            f"{reply.get('error')}"
        )
    arrays, _ = exchange.load(answers_path)
    return parity.Answers(
        arrays["predictions"], arrays.get("probabilities"), arrays.get("scores"), signature.scores
    )


def _label(environment: Environment) -> str:
    """``scikit-learn 1.3.2`` (with its booster, if any): the environment in a message."""
    versions = environment.versions
    return ", ".join(f"{name} {versions[name]}" for name in ("scikit-learn", "xgboost", "lightgbm")
                     if name in versions) or environment.name  # fmt: skip


def _write_rows(path: Path, probe: Probe, signature: InputSignature) -> None:
    if probe.columns is not None:
        order = [spec.column_name for spec in signature.inputs]
        text = [spec.column_name for spec in signature.inputs if spec.dtype == "string"]
        exchange.save(path, {name: probe.columns[name] for name in order},
                      {"layout": "columns", "order": order, "text": text})  # fmt: skip
        return
    names = list(signature.feature_names) if signature.feature_names is not None else None
    exchange.save(path, {"X": np.asarray(probe.X)}, {"layout": "matrix", "feature_names": names})


class _Worker:
    """One long-lived worker process in one environment: requests in, replies out, in turn."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        # The worker's stderr (library warnings): kept for the reason it died, never shown.
        self._log: IO[str] = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [str(environment.python), "-I", str(WORKER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
                encoding="utf-8",
            )
        except OSError as exc:
            self._log.close()
            raise WorkerFailed(
                f"cannot start the origin worker in {environment.name}: {exc.strerror}"
            ) from None
        hello = self._reply()
        if not hello.get("ok"):
            self.close()
            raise WorkerFailed(
                f"apo's loader does not run under {_label(environment)}: {hello.get('error')}"
            )
        self.versions = {str(k): str(v) for k, v in dict(hello.get("versions") or {}).items()}

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except OSError:
            pass  # it died: _reply says how
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            why = self._tail()
            self.close()
            raise WorkerFailed(f"the origin worker in {self.environment.name} died: {why}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _tail(self) -> str:
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read().splitlines() if line.strip()]
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return first_line(lines[-1]) if lines else f"exit status {code}"

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log.close()


_WORKERS: dict[Path, _Worker] = {}
# Environments whose worker could not start (apo's loader does not import there): asked once.
_UNSTARTABLE: dict[Path, str] = {}


def _worker(environment: Environment) -> _Worker:
    """This process's worker for ``environment``, started on first use, restarted if it died."""
    if environment.path in _UNSTARTABLE:
        raise WorkerFailed(_UNSTARTABLE[environment.path])
    current = _WORKERS.get(environment.path)
    if current is not None and current.alive:
        return current
    try:
        _WORKERS[environment.path] = worker = _Worker(environment)
    except WorkerFailed as exc:
        _UNSTARTABLE[environment.path] = str(exc)
        raise
    return worker


@atexit.register
def close_workers() -> None:
    """Let every worker this process started finish (they also exit when apo's end closes)."""
    while _WORKERS:
        _, worker = _WORKERS.popitem()
        with contextlib.suppress(Exception):
            worker.close()
