"""An App for tests that run real worker processes (crash, shutdown, outage).

Run as ``python -m tests.proc_app``: the worker reads its settings from ASYNCQ_WORKER_* and the Redis URL
from ASYNCQ_REDIS_URL, as a deployed worker would. Tasks record each start and each finish in Redis so the
test can count runs across processes.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

import asyncq

app = asyncq.App()

_client: aioredis.Redis | None = None

RUNS = "test:runs"  # HASH n -> how many times the job started
DONE = "test:done"  # HASH n -> how many times the job finished


def client() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(app.settings.redis_url)
    return _client


@app.task(name="slow", max_tries=5)
async def slow(n: int, seconds: float) -> int:
    await client().hincrby(RUNS, str(n), 1)
    await asyncio.sleep(seconds)
    await client().hincrby(DONE, str(n), 1)
    return n


@app.task(name="echo")
async def echo(x: object) -> object:
    return x


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(asyncq.run_worker(app))
