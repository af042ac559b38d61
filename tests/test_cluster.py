"""asyncq on a real Redis Cluster (issue #19): 3 masters x 1 replica on private ports (tests/cluster_harness.py).

The core scenarios of the standalone suite, on the cluster layout: enqueue and result with wake-up, delays,
retries, dead letters and their retry, a periodic task once per tick with two workers, abort, leases recovered
after a real worker process is SIGKILLed; sharded queues (jobs spread over shards, a tenant on one shard, a
worker drains every shard without starving one, a worker not told the shard count still finds every shard);
the compat layer's ``delay().get()`` and a chord; and the Celery wire-protocol bridge refused. In-process
workers unless the scenario is about a process. The failover scenarios are in tests/test_cluster_failover.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncq import (
    App,
    ConfigurationError,
    JobAborted,
    JobSpec,
    JobStatus,
    Retry,
    Worker,
    WorkerSettings,
    admin,
    current_job,
)
from asyncq.cluster import shard_of
from asyncq.compat import Celery, chord
from asyncq.embedded import EmbeddedCluster, find_cluster_tools

from .cluster_harness import fresh_cluster
from .cluster_runlog import RUNLOG_ENV, RunLog
from .compat_worker import ThreadWorker
from .conftest import WorkerRunner, stop_process, wait_until
from .web.test_api import client_for  # at import: a test module imported inside a test trips CPython 3.11.7's AST bug

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster() -> EmbeddedCluster:
    return fresh_cluster()


@pytest.fixture
async def capp(cluster: EmbeddedCluster) -> AsyncIterator[App]:
    app = App(redis_url=cluster.url)
    yield app
    await app.close()


def shard(job_id: str) -> tuple[str, int]:
    found = shard_of(job_id)
    assert found is not None, f"job id {job_id!r} carries no shard tag"
    return found


# --- the harness itself ----------------------------------------------------------------------------------------
def test_the_test_cluster_is_three_masters_each_with_a_synced_replica(cluster: EmbeddedCluster) -> None:
    masters = cluster.masters()
    assert len(masters) == 3 and len(cluster.nodes) == 6
    for port in masters:
        assert len(cluster.replicas_of(port)) == 1
    assert cluster.is_ready()
    assert cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster.ports)
    assert 6379 not in cluster.ports
    # keys under one hash tag share a slot, hence a master
    assert cluster.keyslot("{q:1}:a") == cluster.keyslot("{q:1}:b") == cluster.keyslot("q:1")


def test_an_embedded_cluster_cleans_up_and_refuses_a_bad_shape() -> None:
    fresh_cluster()  # skips with the reason when no cluster can be started here
    with pytest.raises(ConfigurationError, match="needs >= 1 master"):
        EmbeddedCluster(masters=0)
    with EmbeddedCluster(masters=1, replicas=0) as small:
        (node,) = small.nodes
        directory, pid = small.directory, node.pid
        assert directory is not None and (node.directory / "nodes.conf").is_file()
        assert small.masters() == [node.port] and small.url == f"redis+cluster://127.0.0.1:{node.port}"
    assert not directory.exists() and not node.running and pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_node_restarted_from_a_short_lived_thread_outlives_it(cluster: EmbeddedCluster) -> None:
    # die_with_parent (PR_SET_PDEATHSIG) follows the forking thread: the cluster forks from a thread of its own
    replica = cluster.replicas_of(cluster.masters()[0])[0]
    cluster.kill_node(replica)
    helper = threading.Thread(target=cluster.restart_node, args=(replica,))
    helper.start()
    helper.join()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # a SIGTERM from the thread's exit would land within milliseconds
        assert cluster.node(replica).running
        time.sleep(0.05)
    assert cluster.is_ready()


def test_the_newest_redis_server_is_chosen_and_a_missing_redis_cli_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    newest = tmp_path / "redis-server"  # newer than any real one here, and without a redis-cli beside it
    newest.write_text("#!/bin/sh\necho 'Redis server v=99.0.0 sha=0 malloc=libc bits=64'\n")
    newest.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="no redis-cli found beside .*redis-tools"):
        find_cluster_tools()
    (tmp_path / "redis-cli").write_text("#!/bin/sh\n")
    (tmp_path / "redis-cli").chmod(0o755)
    assert find_cluster_tools() == (str(newest), str(tmp_path / "redis-cli"))


# --- core scenarios --------------------------------------------------------------------------------------------
async def test_enqueue_and_result_with_wake_up(capp: App, workers: WorkerRunner) -> None:
    @capp.task(name="c.add")
    async def add(a: int, b: int) -> int:
        return a + b

    await workers.start(capp, poll_interval=30.0)  # a start within seconds needs the wake-up, not the poll
    started = time.monotonic()
    job = await add.enqueue(2, 3)
    assert shard(job.job_id) == ("default", 0)
    assert await job.result(timeout=10) == 5
    assert time.monotonic() - started < 5
    assert await job.status() is JobStatus.complete
    jobs = await capp.enqueue_many([add.s(i, i) for i in range(50)])
    assert [await j.result(timeout=20) for j in jobs] == [2 * i for i in range(50)]


async def test_a_sync_producer_spreads_over_shards_too(cluster: EmbeddedCluster, workers: WorkerRunner) -> None:
    app = sharded_app(cluster)
    try:
        # what a Django view or a Celery-style delay() does: the blocking client, from a thread without a loop
        jobs = await asyncio.to_thread(app.enqueue_many_sync, [JobSpec("c.sharded", (n,), {}) for n in range(8)])
        assert Counter(shard(j.job_id)[1] for j in jobs) == {s: 2 for s in range(SHARDS)}
        await workers.start(app, queues=("q",))
        assert [await app.job(j.job_id).result(timeout=10) for j in jobs] == list(range(8))
    finally:
        await app.close()


async def test_a_delayed_job_waits_then_runs_without_the_poll(capp: App, workers: WorkerRunner) -> None:
    ran_at: list[float] = []

    @capp.task(name="c.later")
    async def later() -> None:
        ran_at.append(time.time())

    await workers.start(capp, poll_interval=30.0)
    t0 = time.time()
    job = await later.enqueue_with(delay=1.0)
    assert await job.status() is JobStatus.deferred
    await job.result(timeout=10)
    assert 1.0 <= ran_at[0] - t0 < 5


async def test_retries_then_success(capp: App, workers: WorkerRunner) -> None:
    tries: list[int] = []

    @capp.task(name="c.flaky", max_tries=4, retry={"base": 0.01})
    async def flaky() -> str:
        tries.append(current_job().job_try)
        if len(tries) < 3:
            raise ConnectionError("endpoint down")
        return "delivered"

    @capp.task(name="c.polls", max_tries=3)
    async def polls() -> int:
        if current_job().job_try < 2:
            raise Retry(defer=0.05)
        return current_job().job_try

    await workers.start(capp)
    job = await flaky.enqueue()
    assert await job.result(timeout=10) == "delivered"
    assert tries == [1, 2, 3] and (await job.info()).tries == 3
    assert await (await polls.enqueue()).result(timeout=10) == 2


async def test_dead_letters_are_listed_and_retried_from_the_dead_letter_queue(
    capp: App, workers: WorkerRunner
) -> None:
    fixed = False

    @capp.task(name="c.needs_fix", max_tries=1)
    async def needs_fix(order: int) -> str:
        if not fixed:
            raise RuntimeError(f"bug on order {order}")
        return "ok now"

    await workers.start(capp)
    job = await needs_fix.enqueue(7)
    with pytest.raises(RuntimeError, match="bug on order 7"):
        await job.result(timeout=10)
    letters = await admin.list_dead_letters(capp)
    (letter,) = [d for d in letters if d.job_id == job.job_id]
    assert letter.args == (7,) and letter.error and "bug on order 7" in letter.error
    assert await admin.count_dead_letters(capp) == 1
    fixed = True
    assert await admin.retry_dead_letter(capp, job.job_id) is admin.RetryOutcome.retried
    assert await capp.job(job.job_id).result(timeout=10) == "ok now"
    assert await admin.count_dead_letters(capp) == 0


async def test_a_periodic_task_runs_once_per_tick_with_two_workers(capp: App, workers: WorkerRunner) -> None:
    ticks: list[str] = []

    @capp.periodic(every=0.5, name="c.report")
    async def report() -> None:
        ticks.append(current_job().job_id)

    await workers.start(capp)
    await workers.start(capp)
    await wait_until(lambda: len(ticks) >= 3, timeout=20)
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"


async def test_abort_a_queued_and_a_running_job(capp: App, workers: WorkerRunner) -> None:
    started = asyncio.Event()

    @capp.task(name="c.abortable")
    async def abortable() -> None:
        started.set()
        await asyncio.sleep(30)

    queued = await abortable.enqueue_with(delay=60)
    assert await queued.abort() is True
    with pytest.raises(JobAborted):
        await queued.result(timeout=5)
    assert await queued.status() is JobStatus.aborted

    await workers.start(capp)
    running = await abortable.enqueue()
    await asyncio.wait_for(started.wait(), 10)
    assert await running.abort() is True
    with pytest.raises(JobAborted):
        await running.result(timeout=10)
    assert await running.status() is JobStatus.aborted


# --- sharded queues --------------------------------------------------------------------------------------------
SHARDS = 4


def sharded_app(cluster: EmbeddedCluster) -> App:
    app = App(redis_url=cluster.url, queue_shards={"q": SHARDS})

    @app.task(name="c.sharded", queue="q")
    async def sharded(n: int) -> int:
        return n

    return app


async def test_jobs_spread_over_the_shards_and_a_tenant_stays_on_one(cluster: EmbeddedCluster) -> None:
    app = sharded_app(cluster)
    try:
        plain = await app.enqueue_many([JobSpec("c.sharded", (n,), {}) for n in range(40)])
        per_shard = Counter(shard(j.job_id) for j in plain)
        assert per_shard == {("q", s): 10 for s in range(SHARDS)}, per_shard
        acme = await app.enqueue_many([JobSpec("c.sharded", (n,), {}).set(tenant="acme") for n in range(20)])
        # jobs with ids of their own follow their tenant too, and a repeated id is still enqueued once
        acme += await app.enqueue_many([JobSpec("c.sharded", (n,), {}).set(tenant="acme", job_id=f"order-{n}")
                                        for n in range(20)])
        assert len({shard(j.job_id) for j in acme}) == 1
        again = await app.enqueue_many([JobSpec("c.sharded", (0,), {}).set(tenant="acme", job_id="order-0")])
        assert again[0].job_id == acme[20].job_id
        (stats,) = [s for s in await admin.queue_stats(app, ["q"]) if s.queue == "q"]
        assert stats.length == 80  # `asyncq queues` adds up every shard
    finally:
        await app.close()


async def test_a_worker_drains_every_shard_without_starving_one(
    cluster: EmbeddedCluster, workers: WorkerRunner
) -> None:
    app = sharded_app(cluster)
    order: list[int] = []

    @app.task(name="c.record", queue="q")
    async def record() -> None:
        order.append(shard(current_job().job_id)[1])

    try:
        await app.enqueue_many([record.s() for _ in range(50 * SHARDS)])
        await workers.start(app, queues=("q",), concurrency=2, claim_batch=2)
        await wait_until(lambda: len(order) == 50 * SHARDS, timeout=60)
        # claims rotate over the shards: no shard waits for another to be empty
        assert set(order[: 4 * SHARDS]) == set(range(SHARDS)), order[: 4 * SHARDS]
        assert Counter(order) == {s: 50 for s in range(SHARDS)}
    finally:
        await app.close()


async def test_a_worker_not_told_the_shard_count_still_drains_every_shard(
    cluster: EmbeddedCluster, workers: WorkerRunner
) -> None:
    producer = sharded_app(cluster)
    consumer = App(redis_url=cluster.url)  # no queue_shards: learns the count the producers recorded
    done: list[int] = []

    @consumer.task(name="c.sharded", queue="q")
    async def sharded(n: int) -> None:
        done.append(n)

    try:
        await producer.enqueue_many([JobSpec("c.sharded", (n,), {}) for n in range(40)])
        await workers.start(consumer, queues=("q",))
        await wait_until(lambda: len(done) == 40, timeout=30)
        assert sorted(done) == list(range(40))
    finally:
        await producer.close()
        await consumer.close()


def test_the_cli_reads_every_shard(cluster: EmbeddedCluster) -> None:
    app = sharded_app(cluster)
    broken = App(redis_url=cluster.url, queue_shards={"bad": SHARDS})

    @broken.task(name="c.broken", queue="bad", max_tries=1)
    async def broken_task() -> None:
        raise ValueError("boom")

    async def setup() -> str:
        try:
            await app.enqueue_many([JobSpec("c.sharded", (n,), {}) for n in range(12)])  # spread over 4 shards
            job = await broken_task.enqueue()
            await Worker(broken, WorkerSettings(queues=("bad",), burst=True, handle_signals=False)).main()
            await wait_until(lambda: admin.count_dead_letters(broken), timeout=10)
            return job.job_id
        finally:
            await app.close()
            await broken.close()

    dead = asyncio.run(setup())
    env = {**os.environ, "ASYNCQ_REDIS_URL": cluster.url}

    def cli(*args: str) -> Any:
        proc = subprocess.run([sys.executable, "-m", "asyncq", *args, "--json"], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    queues = {q["queue"]: q for q in cli("queues")["queues"]}
    assert queues["q"]["length"] == 12 and queues["bad"]["dead_letters"] == 1, queues
    letters = cli("dlq", "list")
    assert [d["job_id"] for d in (letters["dead_letters"] if isinstance(letters, dict) else letters)] == [dead], letters


async def test_pause_holds_every_shard_and_resume_releases_them(
    cluster: EmbeddedCluster, workers: WorkerRunner
) -> None:
    app = sharded_app(cluster)
    done: list[int] = []

    @app.task(name="c.count", queue="q")
    async def count(n: int) -> None:
        done.append(n)

    env = {**os.environ, "ASYNCQ_REDIS_URL": cluster.url}
    try:
        jobs = await app.enqueue_many([count.s(n) for n in range(8)])  # two per shard
        pause = await asyncio.create_subprocess_exec(sys.executable, "-m", "asyncq", "pause", "q", env=env)
        assert await pause.wait() == 0
        await workers.start(app, queues=("q",), poll_interval=0.2)
        assert {shard(j.job_id)[1] for j in jobs} == set(range(SHARDS))
        await asyncio.sleep(1.0)  # five polls of every shard: a paused queue gives nothing
        assert done == []
        resume = await asyncio.create_subprocess_exec(sys.executable, "-m", "asyncq", "resume", "q", env=env)
        assert await resume.wait() == 0
        await wait_until(lambda: len(done) == 8, timeout=20)
    finally:
        await app.close()


async def test_a_queue_paused_before_its_shards_were_used_stays_paused_on_every_shard(
    cluster: EmbeddedCluster, workers: WorkerRunner
) -> None:
    app = sharded_app(cluster)  # knows 4 shards; the cluster has recorded none yet when `asyncq pause` runs
    done: list[int] = []

    @app.task(name="c.count", queue="q")
    async def count(n: int) -> None:
        done.append(n)

    env = {**os.environ, "ASYNCQ_REDIS_URL": cluster.url}
    try:
        pause = await asyncio.create_subprocess_exec(sys.executable, "-m", "asyncq", "pause", "q", env=env)
        assert await pause.wait() == 0
        await workers.start(app, queues=("q",), poll_interval=0.2)
        await app.enqueue_many([count.s(n) for n in range(8)])
        await asyncio.sleep(1.0)
        assert done == [], "a paused queue ran jobs on the shards it had not used when it was paused"
        resume = await asyncio.create_subprocess_exec(sys.executable, "-m", "asyncq", "resume", "q", env=env)
        assert await resume.wait() == 0
        await wait_until(lambda: len(done) == 8, timeout=20)
    finally:
        await app.close()


async def test_a_plain_url_with_cluster_true_uses_the_cluster_layout(
    cluster: EmbeddedCluster, workers: WorkerRunner
) -> None:
    app = App(redis_url=f"redis://127.0.0.1:{cluster.masters()[0]}", cluster=True)

    @app.task(name="c.double")
    async def double(x: int) -> int:
        return 2 * x

    try:
        await workers.start(app)
        job = await double.enqueue(21)
        assert shard(job.job_id) == ("default", 0)
        assert await job.result(timeout=10) == 42
    finally:
        await app.close()


def test_shards_are_refused_on_one_redis() -> None:
    with pytest.raises(ConfigurationError, match="needs Redis Cluster"):
        App(redis_url="redis://127.0.0.1:1/0", queue_shards={"q": 2})


async def test_the_dashboard_shows_every_shard(cluster: EmbeddedCluster, workers: WorkerRunner) -> None:
    app = App(redis_url=cluster.url, queue_shards={"web": 3})

    @app.task(name="c.double", queue="web")
    async def double(x: int) -> int:
        return 2 * x

    @app.task(name="c.boom", queue="web", max_tries=1)
    async def boom(x: int) -> None:
        raise ValueError(f"boom {x}")

    try:
        async with client_for(app) as client:
            jobs = await app.enqueue_many([double.s(i) for i in range(9)])
            overview = (await client.get("/api/overview")).json()
            (web,) = [q for q in overview["queues"] if q["queue"] == "web"]
            assert web["length"] == 9
            w = await workers.start(app, queues=("web",))
            failed = [await boom.enqueue(i) for i in range(3)]
            assert [await j.result(timeout=10) for j in jobs] == [2 * i for i in range(9)]

            async def all_dead() -> bool:
                return bool((await client.get("/api/dead-letters")).json()["total"] == 3)

            await wait_until(all_dead, timeout=20)
            overview = (await client.get("/api/overview")).json()
            assert w.worker_id in {x["worker_id"] for x in overview["workers"]}
            (web,) = [q for q in overview["queues"] if q["queue"] == "web"]
            assert (web["length"], web["dead_letters"]) == (0, 3)
            for job in (jobs[4], failed[2]):
                assert (await client.get(f"/api/jobs/{job.job_id}")).status_code == 200
            listed = {r["job_id"] for r in (await client.get("/api/jobs")).json()}
            assert {j.job_id for j in jobs} <= listed
    finally:
        await app.close()


# --- a real worker process, SIGKILLed -----------------------------------------------------------------------
def start_worker(cluster: EmbeddedCluster, log: Path, runlog: Path, **settings: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ASYNCQ_REDIS_URL": cluster.url, "PYTHONPATH": str(ROOT), RUNLOG_ENV: str(runlog)}
    for key, value in settings.items():
        env[f"ASYNCQ_WORKER_{key.upper()}"] = str(value)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "asyncq", "worker", "tests.cluster_app:app"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        stop_process(p, grace=5)


@pytest.mark.slow
async def test_leases_of_a_sigkilled_worker_process_are_recovered(
    capp: App, cluster: EmbeddedCluster, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    runs = RunLog(tmp_path / "runs.log")
    n = 60
    await capp.enqueue_many([JobSpec("cluster.work", (i, 1.5), {}) for i in range(n)])
    victim = start_worker(cluster, tmp_path / "victim.log", runs.path, concurrency=200, lease=2)
    procs.append(victim)
    await wait_until(lambda: len(runs.counts("start")) == n, timeout=30)
    assert not runs.counts("done")  # all in flight
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    rescuer = start_worker(cluster, tmp_path / "rescuer.log", runs.path, concurrency=200, lease=2)
    procs.append(rescuer)
    await wait_until(lambda: len(runs.counts("done")) == n, timeout=60)
    done, started = runs.counts("done"), runs.counts("start")
    assert set(done) == set(range(n)) and all(c == 1 for c in done.values())
    assert max(started.values()) == 2  # each ran again once, after its lease ran out
    assert rescuer.poll() is None, (tmp_path / "rescuer.log").read_text()[-2000:]


# --- refused -------------------------------------------------------------------------------------------------
def test_the_celery_bridge_is_refused_on_a_cluster_url(cluster: EmbeddedCluster) -> None:
    env = {**os.environ, "ASYNCQ_REDIS_URL": cluster.url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "asyncq", "worker", "tests.cluster_app:app", "--celery-queues", "celery"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "cluster" in proc.stderr.lower() and "celery" in proc.stderr.lower(), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


# --- the compat layer ------------------------------------------------------------------------------------------
def test_compat_delay_get_and_a_chord(cluster: EmbeddedCluster) -> None:
    celery = Celery("cl", broker=cluster.url, backend=cluster.url)

    @celery.task(name="cl.add")
    def add(x: int, y: int) -> int:
        return x + y

    @celery.task(name="cl.tsum")
    def tsum(xs: list[int]) -> int:
        return sum(xs)

    try:
        with ThreadWorker(celery):
            assert add.delay(1, 2).get(timeout=10) == 3
            assert chord([add.s(i, i) for i in range(5)], tsum.s()).apply_async().get(timeout=20) == 20
    finally:
        celery.close()
