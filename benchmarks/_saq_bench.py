"""SAQ 0.26 on Redis: ``await queue.enqueue(name, **kwargs)``, ``Worker(queue, functions, concurrency)``.

Defaults otherwise (connection pool sized above the concurrency, concurrency 10 unless a workload asks for
more, job timeout 10 s, results kept 600 s,
pub/sub notification of new jobs). SAQ has no batch enqueue: "batch" keeps 100 ``enqueue`` calls in flight
with asyncio.gather.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import _driver
from _common import LATENCY, LONG, LONG_SECONDS, NOOP, REDIS_URL, SLEEP, SLEEP_SECONDS, done, record_latency
from saq import Queue, Worker

# Each of SAQ's `concurrency` dequeue loops holds a connection in a blocking BLMOVE, and redis-py 6+ caps a
# pool at 100 connections by default: the pool must be larger than the concurrency or SAQ stalls with
# "Too many connections" (seen at concurrency 1000). SAQ users have to do the same.
_c = int(os.environ.get("BENCH_CONCURRENCY") or 10)
queue = Queue.from_url(f"{REDIS_URL}?max_connections={_c + 100}")


async def noop(ctx: dict[str, Any]) -> None:
    done()


async def sleep_50ms(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(SLEEP_SECONDS)
    done()


async def latency(ctx: dict[str, Any], *, enqueued_at: float) -> None:
    record_latency(enqueued_at)
    done()


async def long(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(LONG_SECONDS)
    done()


FUNCTIONS = [(NOOP, noop), (SLEEP, sleep_50ms), (LATENCY, latency), (LONG, long)]


class Producer:
    batch_size = 100

    async def open(self) -> None:
        await queue.connect()

    async def close(self) -> None:
        await queue.disconnect()

    async def send(self, kind: str, *args: Any) -> None:
        kwargs = {"enqueued_at": args[0]} if kind == LATENCY else {}
        await queue.enqueue(kind, **kwargs)

    async def send_many(self, kind: str, n: int) -> None:
        await asyncio.gather(*(queue.enqueue(kind) for _ in range(n)))


def serve(concurrency: int | None) -> None:
    async def run() -> None:
        kw = {} if concurrency is None else {"concurrency": concurrency}
        worker = Worker(queue, functions=FUNCTIONS, **kw)
        await worker.start()

    asyncio.run(run())


if __name__ == "__main__":
    _driver.main(Producer, serve)
