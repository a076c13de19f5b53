"""Running many jobs in worker processes, with results in the jobs' order.

``run_ordered`` keeps its own small pool of spawned worker processes, each holding at most ONE job
at a time over its own pipe. That is what makes a crash attributable: when a worker dies (a
native segfault, ``os._exit``, an out-of-memory kill) the parent knows exactly which job it held,
fails that job alone with the reason read from the exit status, starts a fresh worker and goes
on. No other job is ever lost, so nothing innocent has to be redone. (A
``ProcessPoolExecutor`` cannot do this: one dead worker breaks the whole pool, and the pool cannot
tell which of the jobs in flight killed it.)

A worker killed by SIGKILL, the signal the kernel's OOM killer sends, may be a victim of its
neighbours' memory rather than the culprit, so its model is retried once, running alone; only a
second death fails it.

Results are yielded in the order of ``jobs`` as soon as the next one in line is done, so the
output equals a serial run's and a progress display can follow along. Jobs that ``quick`` answers
(cheap checks such as "unchanged since the last run") are answered here in the parent and never
start a worker: a no-change re-run spawns no processes at all.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

J = TypeVar("J")
R = TypeVar("R")

# A worker costs seconds to start (imports of scikit-learn, skl2onnx, onnxruntime) and a small
# job (one model's conversion) takes a tenth of one: another worker starts only while this many
# jobs wait per worker.
MIN_JOBS_PER_WORKER = 25
# Worker processes already use every core between them: numerical libraries inside each one get
# one thread (unless the user set these), rather than a full-machine thread pool per worker.
_THREAD_CAPS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Deaths worth one retry alone: SIGKILL is what the OOM killer sends, and it may hit a bystander.
_RETRY_SIGNALS = frozenset({signal.SIGKILL})
_STOP_TIMEOUT_S = 5.0


def death_reason(exitcode: int | None) -> str:
    """What a dead worker's exit status says, in words a user can act on."""
    if exitcode is None:
        return "the worker process running it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        what = {
            "SIGSEGV": "a segmentation fault in native code",
            "SIGKILL": "likely out of memory (the kernel's OOM killer sends SIGKILL)",
            "SIGABRT": "an abort in native code",
            "SIGBUS": "a bus error in native code",
            "SIGFPE": "a floating-point exception in native code",
            "SIGILL": "an illegal instruction (a library built for another CPU?)",
        }.get(name, "killed by a signal")
        return f"the worker process running it died: {name}, {what}"
    return f"the worker process running it exited with status {exitcode} before answering"


def _context(preload: tuple[str, ...]) -> Any:
    """A fork server where the platform has one (Linux, macOS), else plain spawn.

    Never plain fork: the parent runs onnxruntime sessions, and forking a process with live
    thread pools can deadlock the child. The fork server is a fresh single-threaded process.
    ``preload``: modules every worker imports anyway, loaded once into the fork server and
    shared by every worker forked from it, so a worker (or a replacement for a dead one) starts
    in milliseconds, not seconds.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return context


def _worker_main(conn: Connection, fn: Callable[..., Any]) -> None:
    """A worker's loop: receive ``(index, args)``, answer ``(index, ("ok"|"error", value))``."""
    # Ctrl-C reaches the whole process group; the parent decides, and stops workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, args = message
        try:
            answer: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as exc:
            line = (str(exc).strip().splitlines() or [""])[0][:200]
            where = traceback.format_exc(limit=2).strip().splitlines()[-1][:200]
            answer = ("error", f"{type(exc).__name__}: {line}" if line else where)
        try:
            conn.send((index, answer))
        except Exception as exc:  # a result that cannot be pickled fails its job, not the worker
            conn.send((index, ("error", f"cannot send the result back: {exc}")))


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    job: int | None = None
    alone: bool = False


@dataclass
class _Pool:
    fn: Callable[..., Any]
    size: int
    preload: tuple[str, ...] = ()
    workers: list[_Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.context = _context(self.preload)

    def start(self) -> _Worker:
        parent, child = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=_worker_main, args=(child, self.fn), daemon=True, name="apo-worker"
        )
        added = {k: v for k, v in _THREAD_CAPS.items() if k not in os.environ}
        os.environ.update(added)  # the fork server (or a spawned child) copies it as it starts
        try:
            process.start()
        finally:
            for name in added:
                os.environ.pop(name, None)
        child.close()
        worker = _Worker(process, parent)
        self.workers.append(worker)
        return worker

    def idle(self, backlog: int) -> _Worker | None:
        """A free worker; a new one only while ``backlog`` jobs justify it."""
        for worker in [w for w in self.workers if w.job is None and not w.process.is_alive()]:
            self.discard(worker)  # died between jobs: nothing lost, just replace it
        for worker in self.workers:
            if worker.job is None and worker.process.is_alive():
                return worker
        wanted = min(self.size, 1 + (backlog - 1) // MIN_JOBS_PER_WORKER)
        if len(self.workers) < wanted or not self.workers:
            return self.start()
        return None

    def busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.job is not None]

    def discard(self, worker: _Worker) -> None:
        self.workers.remove(worker)
        with contextlib.suppress(OSError):
            worker.conn.close()
        worker.process.join(timeout=_STOP_TIMEOUT_S)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=_STOP_TIMEOUT_S)

    def close(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        for worker in self.workers:
            worker.process.join(timeout=_STOP_TIMEOUT_S if worker.job is None else 0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=_STOP_TIMEOUT_S)
            with contextlib.suppress(OSError):
                worker.conn.close()
        self.workers.clear()


def run_ordered(
    work: Callable[[J, Any], R],
    jobs: list[J],
    previous: dict[str, Any],
    workers: int,
    on_worker_death: Callable[[J, str], R],
    *,
    key: Callable[[J], str],
    quick: Callable[[J, Any], R | None] | None = None,
    preload: tuple[str, ...] = (),
) -> Iterator[R]:
    """``work(job, previous.get(key(job)))`` for every job in worker processes, in order.

    At most ``workers`` processes, started as needed: one per ``MIN_JOBS_PER_WORKER`` jobs waiting.

    ``on_worker_death(job, reason)`` turns a job whose worker died, or whose call raised, into a
    result for that job alone. ``quick(job, previous)`` (optional) runs here first; a non-None
    answer is that job's result and no worker sees it. ``key`` names a job in ``previous``;
    ``preload`` are the modules every worker imports anyway (see ``_context``).
    """
    pool = _Pool(work, max(1, workers), preload)
    waiting: deque[int] = deque(range(len(jobs)))
    alone: deque[int] = deque()  # SIGKILLed once: retried with no other job running
    done: dict[int, R] = {}
    checked: set[int] = set()  # quick() already said no
    next_out = 0

    def dispatch() -> None:
        while alone or waiting:
            if alone:
                if pool.busy():
                    return  # let the others finish, then run it on its own
                index = alone.popleft()
                worker = pool.idle(1)
                assert worker is not None
                worker.alone = True
            else:
                if any(w.alone for w in pool.busy()):
                    return
                index = waiting[0]
                if quick is not None and index not in checked:
                    answer = quick(jobs[index], previous.get(key(jobs[index])))
                    if answer is not None:
                        waiting.popleft()
                        done[index] = answer
                        continue
                    checked.add(index)
                worker = pool.idle(len(waiting) + len(pool.busy()))
                if worker is None:
                    return
                waiting.popleft()
                worker.alone = False
            try:
                worker.conn.send((index, (jobs[index], previous.get(key(jobs[index])))))
            except OSError:  # the worker died before taking it: the job never started
                (alone if worker.alone else waiting).appendleft(index)
                pool.discard(worker)
                continue
            worker.job = index

    def on_death(worker: _Worker) -> None:
        index, was_alone = worker.job, worker.alone
        worker.process.join(timeout=_STOP_TIMEOUT_S)
        exitcode = worker.process.exitcode
        pool.discard(worker)
        if index is None:
            return
        if exitcode is not None and -exitcode in _RETRY_SIGNALS and not was_alone:
            alone.append(index)
            return
        reason = death_reason(exitcode)
        if was_alone:
            reason += " (twice; the second time it ran alone)"
        done[index] = on_worker_death(jobs[index], reason)

    def receive(worker: _Worker) -> bool:
        """Read one answer; False when the pipe is closed (the worker is gone)."""
        try:
            index, (kind, value) = worker.conn.recv()
        except (EOFError, OSError):
            return False
        worker.job = None
        done[index] = value if kind == "ok" else on_worker_death(jobs[index], value)
        return True

    try:
        while next_out < len(jobs):
            dispatch()
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
            if next_out >= len(jobs):
                break
            busy = pool.busy()
            assert busy, "no job in flight and none done: scheduling bug"
            handles: dict[Any, _Worker] = {}
            for worker in busy:
                handles[worker.conn] = worker
                handles[worker.process.sentinel] = worker
            for ready in wait(list(handles)):
                worker = handles[ready]
                if worker not in pool.workers or worker.job is None:
                    continue  # already handled through its other handle
                # A finished answer is read before a death is declared: a worker may exit right
                # after sending it.
                if worker.conn.poll() and receive(worker):
                    continue
                if not worker.process.is_alive() or ready is worker.process.sentinel:
                    on_death(worker)
                elif ready is worker.conn:
                    on_death(worker)  # pipe closed under a live process: treat it as lost
    finally:
        pool.close()
