"""Running a worker as the whole process (what `asyncq worker` does), with an exit that cannot hang.

``asyncio.run`` cancels every task left at the end and waits for all of them without a limit, and the
interpreter then joins every non-daemon thread. Two things can make that wait forever: a task whose cancellation
redis-py swallowed (a command with a socket timeout), and a plain ``def`` task still running in a worker thread
(threads cannot be cancelled; the job's lease runs out and it runs again elsewhere). A worker that was told to
stop must stop, so here both waits are bounded, and past them the process ends with ``os._exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from asyncq.app import App
from asyncq.settings import WorkerSettings
from asyncq.worker.lifecycle import STOP_WAIT, run_worker
from asyncq.worker.sources import JobSource

log = logging.getLogger("asyncq.worker")


def serve(app: App, settings: WorkerSettings | None = None, *, sources: Sequence[JobSource] = (),
          **overrides: Any) -> None:
    """Run a worker in a new event loop until it stops, then end the process's waits within a few seconds."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run_worker(app, settings, sources=sources, **overrides))
    finally:
        _close(loop)
    _leave_stuck_threads(STOP_WAIT)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=STOP_WAIT))
        stuck = [t.get_name() for t in pending if not t.done()]
        if stuck:
            log.warning("%d task(s) ignored their cancellation (%s); leaving them", len(stuck), ", ".join(stuck[:5]))
    with contextlib.suppress(TimeoutError, RuntimeError):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), STOP_WAIT))
    loop.close()


def _leave_stuck_threads(seconds: float) -> None:
    """Join the other non-daemon threads for up to ``seconds``; if any is still running (a sync task that
    ignores its job's end), flush and leave with ``os._exit`` instead of waiting for it forever."""
    deadline = time.monotonic() + seconds
    for t in threading.enumerate():
        if t is threading.main_thread() or t.daemon:
            continue
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
             and t.is_alive()]
    if stuck:
        log.warning("%d thread(s) still busy after the worker stopped (a plain def task that does not return); "
                    "exiting without waiting for them", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
