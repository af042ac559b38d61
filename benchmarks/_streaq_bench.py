"""streaq 7 (Redis streams, coredis): ``await task.enqueue()``, ``worker.enqueue_many([...])``, ``run_sync()``.

streaq fixes concurrency when the Worker is built, so run.py passes it in ``BENCH_CONCURRENCY``. Defaults
otherwise (concurrency 16, prefetch = concurrency, pickle, idle_timeout 60 s, results kept 5 min).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import _driver
from _common import (
    LATENCY,
    LONG,
    NOOP,
    REDIS_URL,
    SLEEP,
    latency_body,
    long_body,
    noop_body,
    sleep_body,
)
from streaq import Worker

_c = os.environ.get("BENCH_CONCURRENCY")
worker: Worker[Any] = Worker(redis_url=REDIS_URL) if not _c else Worker(redis_url=REDIS_URL, concurrency=int(_c))


noop = worker.task(name=NOOP)(noop_body)
sleep_50ms = worker.task(name=SLEEP)(sleep_body)
latency = worker.task(name=LATENCY)(latency_body)
long = worker.task(name=LONG)(long_body)


TASKS = {NOOP: noop, SLEEP: sleep_50ms, LATENCY: latency, LONG: long}


class Producer:
    batch_size = 1000

    async def open(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        await self.stack.enter_async_context(worker)

    async def close(self) -> None:
        await self.stack.aclose()

    async def send(self, kind: str, *args: Any) -> None:
        await TASKS[kind].enqueue(*args)

    async def send_many(self, kind: str, n: int) -> None:
        t = TASKS[kind]
        await worker.enqueue_many([t.enqueue() for _ in range(n)])


def serve(concurrency: int | None) -> None:
    worker.run_sync()


if __name__ == "__main__":
    _driver.main(Producer, serve)
