"""Raw arq 0.28 through its public API: ``await pool.enqueue_job(name)``, ``Worker(...).async_run()``.

Everything but max_jobs is arq's default (poll_delay 0.5 s, pickle, keep_result 3600 s). arq has no batch
enqueue; its "batch" mode keeps 100 ``enqueue_job`` calls in flight with asyncio.gather.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import _driver
from _common import (
    LATENCY,
    LONG,
    LONG_SECONDS,
    NOOP,
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    SLEEP,
    SLEEP_SECONDS,
    done,
    record_latency,
)
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

REDIS_SETTINGS = RedisSettings(host=REDIS_HOST, port=REDIS_PORT, database=REDIS_DB)


async def noop(ctx: dict[str, Any]) -> None:
    done()


async def sleep_50ms(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(SLEEP_SECONDS)
    done()


async def latency(ctx: dict[str, Any], enqueued_at: float) -> None:
    record_latency(enqueued_at)
    done()


async def long(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(LONG_SECONDS)
    done()


FUNCTIONS = [func(noop, name=NOOP), func(sleep_50ms, name=SLEEP), func(latency, name=LATENCY), func(long, name=LONG)]


class Producer:
    batch_size = 100

    async def open(self) -> None:
        self.pool = await create_pool(REDIS_SETTINGS)

    async def close(self) -> None:
        await self.pool.aclose()

    async def send(self, kind: str, *args: Any) -> None:
        if await self.pool.enqueue_job(kind, *args) is None:
            raise SystemExit("arq refused a job")

    async def send_many(self, kind: str, n: int) -> None:
        await asyncio.gather(*(self.pool.enqueue_job(kind) for _ in range(n)))


def serve(concurrency: int | None) -> None:
    async def run() -> None:
        kw = {} if concurrency is None else {"max_jobs": concurrency}
        worker = Worker(functions=FUNCTIONS, redis_settings=REDIS_SETTINGS, **kw)
        try:
            with contextlib.suppress(asyncio.CancelledError):  # arq cancels its main task on SIGTERM
                await worker.async_run()
        finally:
            await worker.close()

    asyncio.run(run())


if __name__ == "__main__":
    _driver.main(Producer, serve)
