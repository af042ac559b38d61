"""asyncq's Celery compatibility layer (W5): ``from asyncq.compat import Celery``, ``@app.task``, ``delay()``.

Written against the announced API: ``app = Celery("bench", broker=URL, backend=URL)``, ``@app.task`` on a
plain ``def``, ``task.delay()`` returning an AsyncResult; the jobs are run by an ordinary asyncq worker
(``run_worker`` on the asyncq App behind the compat app, concurrency 100). run.py measures this system only
when ``from asyncq.compat import Celery`` works in the project's environment.
"""

from __future__ import annotations

import asyncio
from typing import Any

import _driver
from _common import LATENCY, NOOP, REDIS_URL, done, record_latency

from asyncq import App, WorkerSettings, run_worker
from asyncq.compat import Celery

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)


@app.task(name=NOOP)
def noop() -> None:
    done()


@app.task(name=LATENCY)
def latency(enqueued_at: float) -> None:
    record_latency(enqueued_at)
    done()


TASKS = {NOOP: noop, LATENCY: latency}


def asyncq_app() -> App:
    """The asyncq App behind the compat app: the one an ``asyncq worker proj:app`` process runs."""
    return app.asyncq_app


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
        for _ in range(n):
            t.delay()


def serve(concurrency: int | None) -> None:
    settings = WorkerSettings(concurrency=concurrency or 100)
    asyncio.run(run_worker(asyncq_app(), settings))


if __name__ == "__main__":
    _driver.main(Producer, serve)
