"""Enqueue jobs from a plain asyncio program and await their results.

    python examples/plain_asyncio/main.py                 # runs a worker in this process too
    python examples/plain_asyncio/main.py --no-worker     # with `asyncq worker main:app` running elsewhere

Redis: $ASYNCQ_REDIS_URL, else redis://127.0.0.1:6379/0.
"""

from __future__ import annotations

import asyncio
import sys
import time

from asyncq import App, JobSpec, RetryPolicy, Worker, WorkerSettings

app = App()


@app.task(name="words.count", queue="text")
async def count_words(text: str) -> int:
    await asyncio.sleep(0.1)  # stands for an HTTP call, a database query...
    return len(text.split())


@app.task(name="words.shout", queue="text", max_tries=3, retry=RetryPolicy(base=0.1, jitter=False))
def shout(text: str) -> str:  # a plain def runs in the worker's thread pool, never on its event loop
    return text.upper()


SENTENCES = [f"the quick brown fox number {i} jumps over the lazy dog" for i in range(50)]


async def main(with_worker: bool) -> None:
    worker = Worker(app, WorkerSettings(handle_signals=False, concurrency=100)) if with_worker else None
    running = asyncio.create_task(worker.main()) if worker else None
    async with app:
        started = time.perf_counter()
        jobs = await app.enqueue_many([JobSpec("words.count", (s,), {}) for s in SENTENCES])  # one round trip
        counts = await asyncio.gather(*(job.result(timeout=30) for job in jobs))
        elapsed = time.perf_counter() - started
        print(f"counted {len(counts)} sentences, {sum(counts)} words, in {elapsed:.2f} s "
              f"(50 jobs of 0.1 s each: they ran concurrently)")
        job = await shout.enqueue("asyncq")
        print("shout:", await job.result(timeout=10))
        info = await job.info()
        print(f"job {info.job_id}: {info.status.value} after {info.tries} try, on worker {info.worker}")
    if worker and running:
        worker.stop()
        await running


if __name__ == "__main__":
    asyncio.run(main(with_worker="--no-worker" not in sys.argv))
