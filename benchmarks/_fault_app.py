"""The worker app of the fault runs (``benchmarks/faults.py``) and fault tests (``tests/test_faults.py``).

Run as ``asyncq worker benchmarks._fault_app:app`` (what the runs and tests do) or ``python -m
benchmarks._fault_app`` from the repository root: the worker reads ASYNCQ_REDIS_URL,
ASYNCQ_MAX_RECOVERIES and ASYNCQ_WORKER_* like a deployed worker. Every start and every completion of a job
is recorded in a SEPARATE Redis, ``ASYNCQ_FAULT_STORE`` (a URL), so the record survives whatever happens to
the queue's Redis (a restart, a lost AOF tail) and a job that ran twice is visible. Jobs are numbered by the
producer (the ``n`` argument); fuzzed jobs use negative numbers.

The record (keys in the store, see ``Store`` below for reading it back):

- ``fault:starts`` / ``fault:done``: HASH n -> how many times the job started / completed
- ``fault:st:<n>``: LIST, one ``time|pid|job_try|recoveries`` entry per start (time: Unix seconds)
- ``fault:dn:<n>``: LIST, one ``time|pid`` entry per completion
- ``fault:running:<pid>``: HASH n -> start time, the jobs that process has started and not completed
- ``fault:order``: LIST of n in completion order
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

import asyncq

STORE_ENV = "ASYNCQ_FAULT_STORE"
STARTS = "fault:starts"
DONE = "fault:done"
ORDER = "fault:order"
START_LOG = "fault:st:"
DONE_LOG = "fault:dn:"
RUNNING = "fault:running:"

app = asyncq.App()

_store: aioredis.Redis | None = None


def _client() -> aioredis.Redis:
    global _store
    if _store is None:
        url = os.environ.get(STORE_ENV)
        if not url:
            raise RuntimeError(f"{STORE_ENV} is not set: the fault app needs a Redis URL to record runs in")
        _store = aioredis.Redis.from_url(url)
    return _store


async def record_start(n: int) -> int:
    """Record that job n started in this process; returns how many times it has started, this one included."""
    ctx = asyncq.current_job()
    recoveries = getattr(ctx, "recoveries", None)  # the counter of lost workers (issue 10); absent before it
    now, pid = time.time(), os.getpid()
    pipe = _client().pipeline(transaction=True)
    pipe.hincrby(STARTS, str(n), 1)
    pipe.rpush(f"{START_LOG}{n}", f"{now:.6f}|{pid}|{ctx.job_try}|{'' if recoveries is None else recoveries}")
    pipe.hset(f"{RUNNING}{pid}", str(n), f"{now:.6f}")
    starts, _, _ = await pipe.execute()
    return int(starts)


async def record_done(n: int) -> None:
    now, pid = time.time(), os.getpid()
    pipe = _client().pipeline(transaction=True)
    pipe.hincrby(DONE, str(n), 1)
    pipe.rpush(f"{DONE_LOG}{n}", f"{now:.6f}|{pid}")
    pipe.hdel(f"{RUNNING}{pid}", str(n))
    pipe.rpush(ORDER, str(n))
    await pipe.execute()


@app.task(name="work")
async def work(n: int, seconds: float, first_seconds: float | None = None) -> int:
    """Sleep ``seconds`` (``first_seconds`` on the job's first start, if given), recording start and end."""
    starts = await record_start(n)
    await asyncio.sleep(first_seconds if first_seconds is not None and starts == 1 else seconds)
    await record_done(n)
    return n


@app.task(name="poison")
async def poison(n: int, after: float = 0.0) -> None:
    """Kill the worker process running it (exit code 7) ``after`` seconds in, every time: a poison pill."""
    await record_start(n)
    await asyncio.sleep(after)
    os._exit(7)


# --- reading the record back (the driver and the tests) ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class Start:
    at: float
    pid: int
    job_try: int
    recoveries: int | None


class Store:
    """Sync reader of the record, for the driver and the tests."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.r = redis.Redis.from_url(url)

    def close(self) -> None:
        self.r.close()

    def counts(self, key: str) -> dict[int, int]:
        return {int(k): int(v) for k, v in self.r.hgetall(key).items()}

    def starts(self) -> dict[int, int]:
        return self.counts(STARTS)

    def done(self) -> dict[int, int]:
        return self.counts(DONE)

    def done_count(self) -> int:
        return int(self.r.hlen(DONE))

    def running_on(self, pid: int) -> dict[int, float]:
        """The jobs process ``pid`` started and did not complete, with their start times."""
        return {int(k): float(v) for k, v in self.r.hgetall(f"{RUNNING}{pid}").items()}

    def start_log(self, n: int) -> list[Start]:
        out = []
        for raw in self.r.lrange(f"{START_LOG}{n}", 0, -1):
            at, pid, job_try, rec = raw.decode().split("|")
            out.append(Start(float(at), int(pid), int(job_try), int(rec) if rec else None))
        return out

    def first_start_times(self, ns: list[int], chunk: int = 2000) -> dict[int, float]:
        """n -> the time job n first started, for the jobs of ``ns`` that started (pipelined)."""
        out: dict[int, float] = {}
        for i in range(0, len(ns), chunk):
            part = ns[i:i + chunk]
            pipe = self.r.pipeline(transaction=False)
            for n in part:
                pipe.lindex(f"{START_LOG}{n}", 0)
            for n, raw in zip(part, pipe.execute(), strict=True):
                if raw is not None:
                    out[n] = float(raw.split(b"|")[0])
        return out

    def done_times(self, n: int) -> list[float]:
        return [float(raw.split(b"|")[0]) for raw in self.r.lrange(f"{DONE_LOG}{n}", 0, -1)]

    def order(self) -> list[int]:
        return [int(x) for x in self.r.lrange(ORDER, 0, -1)]


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s")
    asyncio.run(asyncq.run_worker(app))
