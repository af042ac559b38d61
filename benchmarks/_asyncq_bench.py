"""asyncq through its public API: ``await task.enqueue()``, ``app.enqueue_many``, ``run_worker``.

Defaults everywhere (JSON serializer, pub/sub wake-up with poll_interval 1.0 s, claim_batch 200) except the
concurrency a workload asks for.
"""

from __future__ import annotations

import asyncio
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

from asyncq import App, WorkerSettings, run_worker

app = App(redis_url=REDIS_URL)


noop = app.task(name=NOOP)(noop_body)
sleep_50ms = app.task(name=SLEEP)(sleep_body)
latency = app.task(name=LATENCY)(latency_body)
long = app.task(name=LONG)(long_body)


TASKS = {NOOP: noop, SLEEP: sleep_50ms, LATENCY: latency, LONG: long}


class Producer:
    batch_size = 1000

    async def open(self) -> None:
        await app.ping()

    async def close(self) -> None:
        await app.close()

    async def send(self, kind: str, *args: Any) -> None:
        await TASKS[kind].enqueue(*args)

    async def send_many(self, kind: str, n: int) -> None:
        t = TASKS[kind]
        await app.enqueue_many([t.s() for _ in range(n)], batch_size=n)


def serve(concurrency: int | None) -> None:
    settings = WorkerSettings() if concurrency is None else WorkerSettings(concurrency=concurrency)
    asyncio.run(run_worker(app, settings))


if __name__ == "__main__":
    _driver.main(Producer, serve)
