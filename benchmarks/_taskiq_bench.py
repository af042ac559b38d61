"""taskiq 0.13 with taskiq-redis 1.2: ``RedisStreamBroker`` (acknowledged delivery, the README's choice) and
``RedisAsyncResultBackend``.

The worker is taskiq's receiver run in-process (``taskiq.api.run_receiver_task``), which is what one child of
``taskiq worker bench:broker --workers 1 --max-async-tasks N`` runs; defaults otherwise (max_async_tasks 100,
ack when the result is saved, xread_count 100). taskiq has no batch enqueue: "batch" keeps 100 ``kiq()``
calls in flight with asyncio.gather.
"""

from __future__ import annotations

import asyncio
from typing import Any

import _driver
from _common import LATENCY, LONG, LONG_SECONDS, NOOP, REDIS_URL, SLEEP, SLEEP_SECONDS, done, record_latency
from taskiq.api import run_receiver_task
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

broker = RedisStreamBroker(url=REDIS_URL).with_result_backend(RedisAsyncResultBackend(redis_url=REDIS_URL))


@broker.task(task_name=NOOP)
async def noop() -> None:
    done()


@broker.task(task_name=SLEEP)
async def sleep_50ms() -> None:
    await asyncio.sleep(SLEEP_SECONDS)
    done()


@broker.task(task_name=LATENCY)
async def latency(enqueued_at: float) -> None:
    record_latency(enqueued_at)
    done()


@broker.task(task_name=LONG)
async def long() -> None:
    await asyncio.sleep(LONG_SECONDS)
    done()


TASKS = {NOOP: noop, SLEEP: sleep_50ms, LATENCY: latency, LONG: long}


class Producer:
    batch_size = 100

    async def open(self) -> None:
        await broker.startup()

    async def close(self) -> None:
        await broker.shutdown()

    async def send(self, kind: str, *args: Any) -> None:
        await TASKS[kind].kiq(*args)

    async def send_many(self, kind: str, n: int) -> None:
        t = TASKS[kind]
        await asyncio.gather(*(t.kiq() for _ in range(n)))


def serve(concurrency: int | None) -> None:
    broker.is_worker_process = True
    asyncio.run(run_receiver_task(broker, max_async_tasks=concurrency or 100, run_startup=True))


if __name__ == "__main__":
    _driver.main(Producer, serve)
