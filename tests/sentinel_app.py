"""The App that tests/test_sentinel.py and benchmarks/sentinel.py run in a real worker process behind Sentinel.

``python -m asyncq worker tests.sentinel_app:app`` with ASYNCQ_REDIS_URL=redis+sentinel://...: every run of
``work`` counts itself in Redis through the App's own (Sentinel) connection, so the counts follow the master.
"""

from __future__ import annotations

import asyncio
import time

import asyncq

app = asyncq.App()

RUNS = "test:sentinel:runs"  # HASH n -> runs started
DONE = "test:sentinel:done"  # ZSET n -> time of its (last) completion


@app.task(name="sentinel.work", max_tries=20)
async def work(n: int, seconds: float) -> int:
    broker = await app.broker()
    await broker.hincrby(RUNS, str(n), 1)
    await asyncio.sleep(seconds)
    await broker.zadd(DONE, {str(n): time.time()})
    return n
