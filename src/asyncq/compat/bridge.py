"""Running asyncq's async API from Celery's sync API (``delay()``, ``get()``), from plain code or from inside a
running event loop.

Each Celery app owns one background thread with its own event loop; a sync call submits a coroutine there and
waits for it. That works the same in a Django view, a script, a thread, or an ``async def`` that has not moved to
``adelay()`` yet (it blocks that loop for one round trip, as Celery's own ``delay()`` would).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._on_stop: list[Callable[[], Coroutine[Any, Any, None]]] = []

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    ready.set()
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
                atexit.register(self.stop)
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._start()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync Celery call from the bridge's own loop would deadlock; use the a* variant")
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return fut.result(timeout)

    def on_stop(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._on_stop.append(fn)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        for fn in self._on_stop:
            with contextlib.suppress(Exception):  # closing at exit: nothing useful to do with an error
                asyncio.run_coroutine_threadsafe(fn(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        self._loop = None
