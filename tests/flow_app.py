"""An App for the flow-control tests that run real worker processes (tests/test_flow_control.py).

Run as ``python -m tests.flow_app``. The capped task writes each start and each end, with the worker's pid,
to Redis, so the test can rebuild every interval a job was in flight, across processes, and check the cap.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis.asyncio as aioredis

import asyncq

app = asyncq.App()

STARTS = "test:flow:starts"  # HASH "<n>:<try>" -> "<pid> <start ms>"
ENDS = "test:flow:ends"  # HASH "<n>:<try>" -> end ms
CAP = 3

_client: aioredis.Redis | None = None


def client() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(app.settings.redis_url)
    return _client


@app.task(name="capped", max_concurrency=CAP, max_tries=5)
async def capped(n: int, seconds: float) -> int:
    key = f"{n}:{time.time_ns()}"
    await client().hset(STARTS, key, f"{os.getpid()} {time.time() * 1000:.3f}")
    await asyncio.sleep(seconds)
    await client().hset(ENDS, key, f"{time.time() * 1000:.3f}")
    return n


if __name__ == "__main__":
    asyncio.run(asyncq.run_worker(app))
