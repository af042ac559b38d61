"""``asyncq demo``: asyncq end to end in a few seconds, with nothing to set up.

It starts a private Redis (unless ASYNCQ_REDIS_URL names one) and two real worker processes
(``python -m asyncq worker asyncq.demo:app`` and, for the Celery-style tasks, ``asyncq.demo:celery_app``),
enqueues jobs through the native API and through Celery's API (``delay()``, a chain, a group), prints their
results, then stops the workers with SIGTERM (graceful shutdown) and the private Redis.

The tasks below are the demo's ``app``; the worker process imports it by that path. They use their own queue,
``demo``, so pointing the demo at a shared Redis never takes other people's jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from asyncq.app import App
from asyncq.compat import Celery, group
from asyncq.context import current_job
from asyncq.embedded import EmbeddedRedis
from asyncq.exceptions import AsyncqError
from asyncq.job import Job
from asyncq.retry import RetryPolicy

QUEUE = "demo"
CELERY_QUEUE = "demo-celery"
RESULT_TIMEOUT = 15.0

app = App()

# The same kind of work written against Celery's API: only the import differs from a Celery project.
celery_app = Celery("demo", task_default_queue=CELERY_QUEUE)


@celery_app.task(name="demo.celery.add")
def add(x: int, y: int) -> int:
    return x + y


@celery_app.task(name="demo.celery.notify", bind=True, max_retries=3, default_retry_delay=0.2)
async def notify(self: Any, user_id: int) -> str:
    """``async def`` with ``bind=True`` and ``self.retry()``: Celery cannot run this; asyncq can."""
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("push service busy"))
    await asyncio.sleep(0.1)
    return f"notified user {user_id} after {self.request.retries} retry"


@app.task(name="demo.send_webhook", queue=QUEUE)
async def send_webhook(url: str, event: str) -> dict[str, Any]:
    """An I/O-bound async task: awaits (here, a sleep standing in for an HTTP call) without blocking others."""
    await asyncio.sleep(0.3)
    return {"event": event, "status": 200}


@app.task(name="demo.resize_image", queue=QUEUE)
def resize_image(width: int, height: int, max_side: int = 256) -> list[int]:
    """A plain ``def`` task: runs in the worker's thread pool, never on its event loop."""
    time.sleep(0.1)
    scale = max_side / max(width, height)
    return [round(width * scale), round(height * scale)]


@app.task(name="demo.flaky_charge", queue=QUEUE, max_tries=3, retry=RetryPolicy(base=0.2, jitter=False))
async def flaky_charge(order_id: int) -> str:
    """Fails on its first try (a flaky payment API) and succeeds on the retry the policy schedules."""
    if current_job().job_try == 1:
        raise ConnectionError(f"payment API timed out for order {order_id}")
    return f"order {order_id} charged on try {current_job().job_try}"


@contextlib.contextmanager
def redis_for_demo(console: Console) -> Iterator[str]:
    url = os.environ.get("ASYNCQ_REDIS_URL")
    if url:
        console.print(f"using the Redis at ASYNCQ_REDIS_URL (queue {QUEUE!r})", style="dim", markup=False)
        yield url
        return
    with EmbeddedRedis() as embedded:
        console.print(f"started a private Redis at {embedded.url}", style="dim", markup=False)
        yield embedded.url


@contextlib.contextmanager
def worker_process(url: str, console: Console, target: str = "asyncq.demo:app",
                   queue: str = QUEUE) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-m", "asyncq", "worker", target, "--redis-url", url, "--queues", queue,
           "--log-level", "warning"]
    env = {**os.environ, "ASYNCQ_REDIS_URL": url}  # the Celery-style app reads its broker from here
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=env)
    console.print(f"started a worker process for {target} (pid {proc.pid})", style="dim", markup=False)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # graceful: finish running jobs, hand back the rest
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        console.print(f"worker stopped (exit code {proc.returncode})", style="dim", markup=False)


async def enqueue_and_collect() -> list[tuple[str, Job, Any, float, int]]:
    async with app:
        started = time.monotonic()
        jobs = [
            ("send_webhook", await send_webhook.enqueue("https://example.com/hook", "signup")),
            ("resize_image", await resize_image.enqueue(1920, 1080)),
            ("flaky_charge", await flaky_charge.enqueue(1001)),
        ]
        batch = await app.enqueue_many([send_webhook.s(f"https://example.com/{i}", "batch") for i in range(5)])
        jobs += [(f"send_webhook #{i}", job) for i, job in enumerate(batch, start=1)]

        async def collect(label: str, job: Job) -> tuple[str, Job, Any, float]:
            try:
                value: Any = await job.result(timeout=RESULT_TIMEOUT)
            except Exception as exc:  # an asyncq error, or the task's own error rebuilt
                value = exc
            return label, job, value, time.monotonic() - started

        rows = await asyncio.gather(*(collect(label, job) for label, job in jobs))
        tries = {job.job_id: (await job.info()).tries for _, job in jobs}
        return [(label, job, value, elapsed, tries[job.job_id]) for label, job, value, elapsed in rows]


def show(console: Console, rows: list[tuple[str, Job, Any, float, int]]) -> bool:
    table = Table("task", "job id", "tries", "result", "done after")
    ok = True
    for label, job, value, elapsed, tries in rows:
        failed = isinstance(value, BaseException)
        ok = ok and not failed
        shown = Text(f"{type(value).__name__}: {value}" if failed else orjson.dumps(value).decode(),
                     style="red" if failed else "")
        table.add_row(label, job.job_id[:12], str(tries), shown, f"{elapsed:.2f}s")
    console.print(table)
    return ok


def celery_style() -> list[tuple[str, str, Any, float]]:
    """Celery code, unchanged but for its import: blocking ``delay().get()``, a chain and a group."""
    rows: list[tuple[str, str, Any, float]] = []
    started = time.monotonic()

    def run(label: str, result: Any) -> None:
        try:
            value: Any = result.get(timeout=RESULT_TIMEOUT)
        except Exception as exc:
            value = exc
        rows.append((label, str(result.id), value, time.monotonic() - started))

    run("add.delay(2, 3)", add.delay(2, 3))
    run("notify.delay(42)", notify.delay(42))
    run("(add.s(1, 2) | add.s(10))", (add.s(1, 2) | add.s(10)).apply_async())
    run("group(add.s(i, i) for i in 0..4)", group(add.s(i, i) for i in range(5)).apply_async())
    return rows


def show_celery(console: Console, rows: list[tuple[str, str, Any, float]]) -> bool:
    table = Table("Celery-style call (asyncq.compat)", "task id", "result", "done after")
    ok = True
    for label, task_id, value, elapsed in rows:
        failed = isinstance(value, BaseException)
        ok = ok and not failed
        shown = Text(f"{type(value).__name__}: {value}" if failed else orjson.dumps(value).decode(),
                     style="red" if failed else "")
        table.add_row(label, task_id[:12], shown, f"{elapsed:.2f}s")
    console.print(table)
    return ok


def main() -> int:
    """Run the demo; returns the exit code (0 when every job gave the expected result)."""
    console = Console(highlight=False)
    console.print("asyncq demo", style="bold")
    try:
        with (
            redis_for_demo(console) as url,
            worker_process(url, console) as proc,
            worker_process(url, console, "asyncq.demo:celery_app", CELERY_QUEUE) as celery_proc,
        ):
            # This process is the producer: the demo's own apps, pointed at the demo's Redis before first use.
            app.settings = dataclasses.replace(app.settings, redis_url=url)
            celery_app.conf.broker_url = url
            ok = show(console, asyncio.run(enqueue_and_collect()))
            ok = show_celery(console, celery_style()) and ok
            for p in (proc, celery_proc):
                if p.poll() is not None:
                    console.print(f"a worker exited early (code {p.returncode})", style="red", markup=False)
                    ok = False
            celery_app.close()
    except AsyncqError as exc:  # no redis-server to start, or ASYNCQ_REDIS_URL unreachable
        Console(stderr=True).print(f"error: {exc}", style="red", markup=False, soft_wrap=True)
        return 1
    console.print("done" if ok else "some jobs did not give their result", style="green" if ok else "red")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
