"""Process-level faults (issue 10): SIGKILLed workers, a poison pill, a Redis restart, a hung Redis, a backlog.

Real worker processes (``asyncq worker benchmarks._fault_app:app``, the app of ``benchmarks/faults.py``), whose task
records each start and each completion per job in a separate store, so a job that ran twice or never is
visible. Tests that stop or freeze Redis run their own redis-server on a private port
(``benchmarks/_redis_proc.py``); the others use database 13 of the test run's Redis.

Nothing here asserts a duration except the shutdown bound (d), which is the behaviour under test and has
10 s of slack; the backlog test (e) asserts an order.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from benchmarks._fault_app import STORE_ENV, Store
from benchmarks._redis_proc import RedisProc

from asyncq import App, JobSpec, keys
from asyncq.admin import DeadLetter, list_dead_letters

from .conftest import flushed_url, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH"),
]

ROOT = Path(__file__).resolve().parent.parent
FAULT_DB = 13
LANE = keys.lane_key(keys.DEFAULT_QUEUE)


class Harness:
    """Worker processes and private redis-servers of one test; ``close()`` (the fixture) ends them all."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []
        self.servers: list[RedisProc] = []
        self.apps: list[App] = []
        self.stores: list[Store] = []

    def app(self, url: str) -> App:
        a = App(redis_url=url)
        self.apps.append(a)
        return a

    def store(self, url: str) -> Store:
        s = Store(url)
        self.stores.append(s)
        return s

    def redis_server(self, *, appendonly: bool = False) -> RedisProc:
        server = RedisProc(appendonly=appendonly, name="asyncq-test-faults")
        self.servers.append(server)
        server.start()
        return server

    def worker(
        self, url: str, store_url: str, name: str, env: dict[str, str] | None = None, **settings: object
    ) -> subprocess.Popen[bytes]:
        """``asyncq worker benchmarks._fault_app:app`` (as deployed) with ASYNCQ_WORKER_<FIELD> settings."""
        full = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "ASYNCQ_REDIS_URL": url,
            STORE_ENV: store_url,
            **(env or {}),
        }
        settings.setdefault("poll_interval", 0.2)
        settings.setdefault("heartbeat_interval", 1)
        for key, value in settings.items():
            full[f"ASYNCQ_WORKER_{key.upper()}"] = str(value)
        with (self.tmp / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "asyncq", "worker", "benchmarks._fault_app:app"], cwd=ROOT, env=full,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True, start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def close(self) -> None:
        for a in self.apps:
            await a.close()
        for s in self.stores:
            s.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        for server in self.servers:
            server.close()


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        await harness.close()


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def work(n: int, seconds: float, first_seconds: float | None = None) -> JobSpec:
    """Job n of the fault app's ``work`` task, by name (the producer does not import the task code)."""
    kwargs = {} if first_seconds is None else {"first_seconds": first_seconds}
    return JobSpec("work", (n, seconds), kwargs).set(job_id=f"j{n}")


async def dead_letters(app: App) -> dict[str, DeadLetter]:
    return {d.job_id: d for d in await list_dead_letters(app, limit=1000)}


def lane_size(url: str) -> int:
    r = redis.Redis.from_url(url)
    try:
        return int(r.zcard(LANE))
    finally:
        r.close()


# --- (a) ------------------------------------------------------------------------------------------------------
async def test_jobs_of_a_worker_sigkilled_three_times_complete_and_are_not_dead_lettered(h: Harness) -> None:
    """Worker deaths are not task failures: 3 kills (more than the default max_tries of 3 allows if deaths
    counted as tries) under the default max_recoveries of 10: every job completes once, none dead-lettered,
    and the task saw job_try 1 every time and recoveries 3 on its last run."""
    url = flushed_url(FAULT_DB)
    store = h.store(url)
    app = h.app(url)
    jobs = range(6)
    await app.enqueue_many([work(n, 4.0) for n in jobs])
    for kill in (1, 2, 3):
        w = h.worker(url, url, f"w{kill}", concurrency=10, lease=1.5)
        # every job is running for the kill-th time (4 s jobs: none can have completed)
        await wait_until(lambda k=kill: all(store.starts().get(n) == k for n in jobs), timeout=30)
        sigkill(w)
    h.worker(url, url, "final", concurrency=10, lease=1.5)
    dead: dict[str, DeadLetter] = {}

    async def settled() -> bool:
        nonlocal dead
        dead = await dead_letters(app)
        return len(store.done()) + len(dead) >= len(jobs) and lane_size(url) == 0

    await wait_until(settled, timeout=40)
    assert not dead, f"dead-lettered: {[(i, d.reason) for i, d in dead.items()]}"
    assert store.done() == {n: 1 for n in jobs}
    assert store.starts() == {n: 4 for n in jobs}
    for n in jobs:
        log = store.start_log(n)
        assert [s.job_try for s in log] == [1, 1, 1, 1], f"job {n}: a lost worker was counted as a try"
        assert log[-1].recoveries == 3, f"job {n}: current_job().recoveries on the 4th run: {log[-1].recoveries}"


# --- (b) ------------------------------------------------------------------------------------------------------
async def test_a_task_that_kills_its_worker_is_dead_lettered_as_worker_lost(h: Harness) -> None:
    """The poison pill: a task that os._exit(7)s its worker every time, workers restarted as a supervisor
    would. With ASYNCQ_MAX_RECOVERIES=2 it runs 3 times, then is dead-lettered "worker lost ..." with a
    ``recoveries`` field; the good jobs beside it complete and the restarted worker serves new work."""
    url = flushed_url(FAULT_DB)
    store = h.store(url)
    app = h.app(url)
    env = {"ASYNCQ_MAX_RECOVERIES": "2"}
    good = range(10)
    await app.enqueue_many([work(n, 0.05) for n in good])
    await app.enqueue_many([JobSpec("poison", (100,), {"after": 2.0}).set(job_id="poison")])
    exits: list[int] = []
    w = h.worker(url, url, "w0", env=env, concurrency=20, lease=1)
    dead: dict[str, DeadLetter] = {}
    deadline = time.monotonic() + 50
    while "poison" not in dead:
        assert time.monotonic() < deadline, f"poison not dead-lettered; worker exits {exits}, dead {dead}"
        if w.poll() is not None:
            exits.append(w.returncode)
            w = h.worker(url, url, f"w{len(exits)}", env=env, concurrency=20, lease=1)
        dead = await dead_letters(app)
        await asyncio.sleep(0.1)
    reason = dead["poison"].reason or ""
    assert reason.startswith("worker lost"), f"dead-letter reason: {reason!r}"
    assert isinstance(dead["poison"].meta.get("recoveries"), int), dead["poison"].meta
    assert store.starts().get(100) == 3, f"the poison pill ran {store.starts().get(100)} times, not 1 + 2"
    assert exits == [7, 7, 7], f"worker exit codes: {exits}"
    # the fleet is not stuck: new work completes
    await app.enqueue_many([work(n, 0.05) for n in range(10, 15)])
    await wait_until(lambda: set(store.done()) >= set(range(15)), timeout=30)
    dead = await dead_letters(app)
    assert not set(dead) & {f"j{n}" for n in range(15)}, "a good job was dead-lettered"


# --- (c) ------------------------------------------------------------------------------------------------------
async def test_every_job_completes_exactly_once_across_a_redis_restart(h: Harness) -> None:
    """Redis (AOF, fsync every second) stopped with SHUTDOWN while jobs are finishing, started again 10 s later
    on the same port and directory. Leases (2 s) lapse meanwhile. Every job starts once and completes once:
    outcomes finished during the outage are held by their workers and written when Redis is back."""
    server = h.redis_server(appendonly=True)
    url = server.url()
    store_url = flushed_url(FAULT_DB)
    store = h.store(store_url)
    app = h.app(url)
    jobs = range(300)
    await app.enqueue_many([work(n, 0.2 + (n % 7) * 0.2) for n in jobs])
    workers = [h.worker(url, store_url, f"w{i}", concurrency=30, lease=2) for i in range(2)]
    await wait_until(lambda: len(store.done()) >= 100, timeout=30)
    server.shutdown()
    stopped_with = len(store.done())
    await asyncio.sleep(10)
    server.start()
    await wait_until(lambda: len(store.done()) == len(jobs), timeout=60)
    await wait_until(lambda: lane_size(url) == 0, timeout=60)  # every outcome written: nothing can run again
    dead = await dead_letters(h.app(url))  # a new connection: the first App's died with the server
    print(f"\nRedis restart: stopped with {stopped_with}/{len(jobs)} completed; "
          f"started twice: {sorted(n for n, c in store.starts().items() if c > 1)}")
    assert all(w.poll() is None for w in workers), "a worker died with Redis"
    assert not dead, f"dead-lettered: {[(i, d.reason) for i, d in dead.items()]}"
    twice = {n: c for n, c in store.starts().items() if c != 1}
    assert not twice, f"{len(twice)} jobs started more than once: {sorted(twice)[:20]}"
    assert store.done() == {n: 1 for n in jobs}


# --- (d) ------------------------------------------------------------------------------------------------------
async def test_worker_exits_within_its_grace_period_when_redis_hangs(h: Harness) -> None:
    """The redis-server is SIGSTOPped (connections stay open, nothing answers; the App's timeouts are set far
    beyond the bound), then the worker gets SIGTERM with 5 jobs running: it exits within shutdown_grace + 10 s.
    After SIGCONT the jobs it abandoned are recovered by another worker and complete."""
    server = h.redis_server()
    url = server.url()
    store_url = flushed_url(FAULT_DB)
    store = h.store(store_url)
    app = h.app(url)
    jobs = range(5)
    await app.enqueue_many([work(n, 0.2, first_seconds=300) for n in jobs])
    hang = {"ASYNCQ_COMMAND_TIMEOUT": "300", "ASYNCQ_CONNECT_TIMEOUT": "300"}
    grace = 2.0
    w = h.worker(url, store_url, "w", env=hang, concurrency=10, lease=2, shutdown_grace=grace)
    await wait_until(lambda: len(store.starts()) == len(jobs), timeout=30)
    server.pause()
    try:
        time.sleep(1.0)  # the lease renewals (every lease/3) are now hanging
        w.send_signal(signal.SIGTERM)
        try:
            rc = w.wait(grace + 10)
        except subprocess.TimeoutExpired:
            sigkill(w)
            pytest.fail(f"the worker did not exit within shutdown_grace + 10 s of SIGTERM while Redis hung; "
                        f"its log ends: {h.log('w')[-1500:]}")
    finally:
        server.resume()
    print(f"\nworker exit code with Redis hung: {rc}")
    h.worker(url, store_url, "rescuer", concurrency=10, lease=2)
    await wait_until(lambda: set(store.done()) == set(jobs), timeout=40)


# --- (e) ------------------------------------------------------------------------------------------------------
async def test_a_killed_workers_jobs_run_again_ahead_of_a_newer_backlog(h: Harness) -> None:
    """3 jobs are running when 5,000 newer jobs are queued behind them and their worker is SIGKILLed. A
    lapsed lease keeps the job's place in the order it was due, so the 3 complete about one lease (2 s)
    later, while most of the backlog (10 slots x 50 ms: at most 200 jobs/s) is still waiting; they must
    complete before the last 1,500 backlog jobs."""
    url = flushed_url(FAULT_DB)
    store = h.store(url)
    app = h.app(url)
    held = [0, 1, 2]
    await app.enqueue_many([work(n, 0.5, first_seconds=300) for n in held])
    victim = h.worker(url, url, "victim", concurrency=3, lease=2)
    await wait_until(lambda: set(store.starts()) == set(held), timeout=30)
    backlog = range(1000, 6000)
    await app.enqueue_many([work(n, 0.05) for n in backlog])
    assert set(store.starts()) == set(held)  # the victim's slots are full: it took none of the backlog
    sigkill(victim)
    killed_at = time.time()
    h.worker(url, url, "rescuer", concurrency=10, lease=2)
    await wait_until(lambda: all(n in store.done() for n in held), timeout=60)
    order = store.order()
    last_held = max(order.index(n) for n in held)
    backlog_before = sum(1 for n in order[:last_held] if n >= 1000)
    recovered_in = max(store.done_times(n)[0] for n in held) - killed_at
    print(f"\nrecovery under a 5,000-job backlog: held jobs completed {recovered_in:.1f} s after the kill, "
          f"after {backlog_before} backlog jobs")
    assert backlog_before < len(backlog) - 1500, (
        f"the killed worker's jobs completed after {backlog_before} of {len(backlog)} newer jobs: "
        f"recovered jobs wait behind the backlog"
    )
