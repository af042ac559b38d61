"""Celery 5.6 with a Redis broker and a Redis result backend, its prefork or threads pool.

The pool comes from ``BENCH_CELERY_POOL`` (prefork | threads), set by run.py. Celery's defaults otherwise:
prefetch multiplier 4, early ack, results stored (``ignore_result=False``), mingle/gossip/heartbeat on,
concurrency = number of CPUs unless a workload asks for more. Tasks are plain ``def`` (Celery runs no
coroutines), so W2 and W4 use ``time.sleep``. Batches are ``group(...).apply_async()``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import _driver
from _common import LATENCY, LONG, LONG_SECONDS, NOOP, REDIS_URL, SLEEP, SLEEP_SECONDS, done, record_latency
from celery import Celery, group

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.broker_connection_retry_on_startup = True


@app.task(name=NOOP)
def noop() -> None:
    done()


@app.task(name=SLEEP)
def sleep_50ms() -> None:
    time.sleep(SLEEP_SECONDS)
    done()


@app.task(name=LATENCY)
def latency(enqueued_at: float) -> None:
    record_latency(enqueued_at)
    done()


@app.task(name=LONG)
def long() -> None:
    time.sleep(LONG_SECONDS)
    done()


TASKS = {NOOP: noop, SLEEP: sleep_50ms, LATENCY: latency, LONG: long}


class Producer:
    batch_size = 1000

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, kind: str, *args: Any) -> None:
        TASKS[kind].delay(*args)

    async def send_many(self, kind: str, n: int) -> None:
        t = TASKS[kind]
        group(t.s() for _ in range(n)).apply_async()


def serve(concurrency: int | None) -> None:
    pool = os.environ.get("BENCH_CELERY_POOL", "prefork")
    argv = ["worker", f"--pool={pool}", "--loglevel=WARNING"]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)


if __name__ == "__main__":
    _driver.main(Producer, serve)
