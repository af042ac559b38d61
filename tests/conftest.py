"""Shared fixtures. Tests talk to a real Redis: the private redis-server the root ``conftest.py`` starts for the
run (or the server ``ASYNCQ_TEST_REDIS`` names), whose base URL is ``ASYNCQ_TEST_REDIS`` by the time this
module is imported. Never 127.0.0.1:6379 or any other server.

Each test module family owns one database of that server and flushes it per test, because arq's key names are
global per database (there is no prefix to isolate by). The core tests use database 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

from asyncq import App, Worker, WorkerSettings

if not os.environ.get("ASYNCQ_TEST_REDIS"):
    raise RuntimeError(
        "ASYNCQ_TEST_REDIS is not set: the repository's root conftest.py starts a private Redis and sets it. "
        "Run the tests from the repository root (bash scripts/test, or python -m pytest) without --noconftest."
    )
REDIS_BASE = os.environ["ASYNCQ_TEST_REDIS"].rstrip("/")
CORE_DB = 2


def redis_url(db: int = CORE_DB) -> str:
    """The URL of database ``db`` (0-15) of the test run's Redis."""
    return f"{REDIS_BASE}/{db}"


def flushed_url(db: int) -> str:
    """The URL of test database ``db``, emptied first."""
    u = redis_url(db)
    client = redis.Redis.from_url(u)
    client.flushdb()
    client.close()
    return u


@pytest.fixture
def url() -> str:
    return flushed_url(CORE_DB)


@pytest.fixture
async def app(url: str) -> AsyncIterator[App]:
    a = App(redis_url=url)
    yield a
    await a.close()


@pytest.fixture
def sync_redis(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url)
    yield client
    client.close()


class WorkerRunner:
    """Start in-process workers in the test's loop and stop them all at the end."""

    def __init__(self) -> None:
        self.started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(self, app: App, **settings: Any) -> Worker:
        settings.setdefault("handle_signals", False)
        settings.setdefault("heartbeat_interval", 1.0)
        w = Worker(app, WorkerSettings(**settings))
        task = asyncio.create_task(w.main())
        self.started.append((w, task))
        await asyncio.sleep(0.05)  # let it subscribe
        return w

    async def stop(self, w: Worker) -> None:
        for worker, task in self.started:
            if worker is w:
                worker.stop()
                await asyncio.wait_for(task, timeout=30)

    async def stop_all(self) -> None:
        for worker, _ in self.started:
            worker.stop()
        for _, task in self.started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)


@pytest.fixture
async def workers() -> AsyncIterator[WorkerRunner]:
    runner = WorkerRunner()
    yield runner
    await runner.stop_all()


async def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; fail the test with a clear message after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM a worker process started by a test, then SIGKILL it if it does not stop within ``grace``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run_process_group(cmd: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(cmd, capture_output=True, text=True)`` in a session of its own, for commands that start
    processes (an example's demo starts workers): when it ends, and above all when it overruns ``timeout``,
    whatever it left running is killed with it. A timeout fails the test with the output so far."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"{' '.join(map(str, cmd))} did not finish within {timeout:g} s\n--- stdout\n{out[-6000:]}\n"
            f"--- stderr\n{err[-3000:]}"
        ) from None
    finally:
        _kill_group(proc.pid, signal.SIGKILL)  # anything it started and left behind
        if proc.poll() is None:
            proc.wait(5)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)

