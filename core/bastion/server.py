"""Serving the application with waitress, in one process or in several.

Python runs one thread at a time per process, so one waitress process uses one core
however many threads it has. ``processes > 1`` pre-forks workers that accept on one
shared listening socket (as gunicorn does): the kernel hands each connection to one of
them. The parent only supervises: it restarts a worker that dies, and stops them all
on SIGTERM or SIGINT.

Each worker starts its own search indexer; the indexer's file lock keeps one writer
across processes, and the others poll the outbox. On SQLite the workers share one
database file (WAL lets readers run beside the single writer); past one machine, use
PostgreSQL.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

#: A worker that dies sooner than this after its start counts as a crash loop.
QUICK_DEATH_SECONDS = 5.0
#: Give up after this many quick deaths in a row: something is wrong with the set-up.
MAX_QUICK_DEATHS = 5
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def serve(
    app: Flask,
    *,
    host: str,
    port: int,
    threads: int,
    processes: int,
    on_start: Callable[[Flask], Any],
    options: dict[str, Any],
) -> None:
    """Serve until stopped. ``on_start`` runs in each serving process before it accepts."""
    import waitress

    # The command's own session (start-up work) must not sit in a transaction for the
    # server's lifetime, nor be inherited by forked workers.
    _release_connections()
    if processes <= 1:
        on_start(app)
        waitress.serve(app, host=host, port=port, threads=threads, **options)
        return
    listener = _listen(host, port)
    _Supervisor(app, listener, threads, processes, on_start, options).run()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=1024)
    listener.set_inheritable(True)
    return listener


def _release_connections() -> None:
    """End the current session and close every pooled connection (in an app context)."""
    from bastion.db import db

    db.session.remove()
    db.engine.dispose()


class _Supervisor:
    def __init__(
        self,
        app: Flask,
        listener: socket.socket,
        threads: int,
        processes: int,
        on_start: Callable[[Flask], Any],
        options: dict[str, Any],
    ) -> None:
        self.app = app
        self.listener = listener
        self.threads = threads
        self.processes = processes
        self.on_start = on_start
        self.options = options
        self.workers: dict[int, float] = {}  # pid -> start time
        self.stopping = False
        self.quick_deaths = 0

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for _ in range(self.processes):
            self._spawn()
        try:
            self._supervise()
        finally:
            self._stop_workers()
            self.listener.close()

    def _spawn(self) -> None:
        # Signals wait until the child has its own handlers: a SIGTERM landing between
        # fork and that point would run the supervisor's handler in the worker.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: serve until told to stop, never return to the CLI
            code = 0
            try:
                for signum in STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                _die_with(supervisor)
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                self._work()
            except BaseException:  # a worker must end here, whatever happened
                log.exception("A server worker stopped on an error.")
                code = 1
            finally:
                os._exit(code)
        self.workers[pid] = time.monotonic()
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _work(self) -> None:
        import waitress

        self.on_start(self.app)
        waitress.serve(self.app, sockets=[self.listener], threads=self.threads, **self.options)

    def _supervise(self) -> None:
        while not self.stopping:
            try:
                pid, status = os.wait()
            except InterruptedError:
                continue
            except ChildProcessError:
                return
            started = self.workers.pop(pid, None)
            if started is None or self.stopping:
                continue
            self._note_death(pid, status, time.monotonic() - started)
            self._spawn()

    def _note_death(self, pid: int, status: int, lived: float) -> None:
        log.error(
            "Server worker %s ended (%s) after %.0f s; starting another.",
            pid,
            _describe(status),
            lived,
        )
        self.quick_deaths = self.quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
        if self.quick_deaths >= MAX_QUICK_DEATHS:
            raise SystemExit(
                f"Server workers keep dying at start ({self.quick_deaths} times in a row); "
                "see the log above for the cause."
            )

    def _stop(self, _signum: int, _frame: Any) -> None:
        self.stopping = True
        for pid in list(self.workers):
            _signal(pid, signal.SIGTERM)

    def _stop_workers(self) -> None:
        for pid in list(self.workers):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.workers and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            self.workers.pop(pid, None)
        for pid in list(self.workers):  # still there after the grace period
            _signal(pid, signal.SIGKILL)


def _die_with(supervisor: int) -> None:
    """Ask Linux to stop this worker if the supervisor dies (even by SIGKILL), so no
    orphan keeps serving on the port; elsewhere, do nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before the request was made
        os._exit(0)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
