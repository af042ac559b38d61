"""A compat worker in a thread, shared by the compat tests.

A plain module, not a test module: importing a test module from another test (late, inside a test) makes
pytest rewrite its asserts deep in a stack, where CPython 3.11.7's "AST constructor recursion depth mismatch"
bug fires. Tests import this instead.
"""

from __future__ import annotations

import asyncio
import threading
import time

from asyncq import Worker, WorkerSettings
from asyncq.compat import Celery

#: the Redis database the compat tests share
COMPAT_DB = 4


class ThreadWorker:
    """An asyncq worker for a Celery app, in a thread with its own event loop."""

    def __init__(self, app: Celery, **settings: object) -> None:
        self.app = app
        self.settings = WorkerSettings(handle_signals=False, heartbeat_interval=0.3, **settings)  # type: ignore[arg-type]
        self.worker: Worker | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.worker = Worker(self.app.asyncq_app, self.settings)
        self.ready.set()
        await self.worker.main()
        await self.app.asyncq_app.close()

    def __enter__(self) -> ThreadWorker:
        self.thread.start()
        self.ready.wait(10)
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.worker is not None
        self.loop.call_soon_threadsafe(self.worker.stop)  # the worker's events belong to its own loop
        self.thread.join(30)
