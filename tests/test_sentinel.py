"""Redis Sentinel: URL parsing, Celery's form, and a real failover under a running worker process.

The setup (tests/sentinel_cluster.py) is one master, one replica and three ``redis-server --sentinel``
processes on free private ports. The failover test enqueues jobs through the Sentinel URL, starts
``asyncq worker`` on the same URL, runs ``SENTINEL FAILOVER`` while jobs are in flight, and checks that every
job completes (run twice only within the at-least-once window: a run whose outcome the old master took
after its demotion). benchmarks/sentinel.py is the longer run with a producer during the failover.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from asyncq import App
from asyncq.exceptions import BrokerUnavailable, ConfigurationError
from asyncq.redis_url import SentinelUrl, check, from_celery, parse_sentinel
from asyncq.task import JobSpec
from tests.conftest import stop_process, wait_until
from tests.sentinel_app import DONE, RUNS
from tests.sentinel_cluster import SERVICE, SentinelCluster, sentinel_supported

ROOT = Path(__file__).resolve().parents[1]


def test_sentinel_url_forms() -> None:
    assert parse_sentinel("redis+sentinel://:pw@h1:1,h2:2/mymaster/3") == SentinelUrl(
        sentinels=(("h1", 1), ("h2", 2)), service_name="mymaster", db=3, password="pw")
    got = parse_sentinel("rediss+sentinel://u:p@[::1]:5,h/svc?sentinel_password=s")
    assert got.sentinels == (("::1", 5), ("h", 26379)) and got.ssl and got.username == "u"
    assert got.sentinel_password == "s" and got.db == 0
    for bad, says in [
        ("redis+sentinel://h:1", "service name is missing"),
        ("redis+sentinel://h:x/svc", "is not host:port"),
        ("redis+sentinel://h:1/svc/notadb", "/service_name/db"),
        ("redis+sentinel://h:1/svc?timeout=3", "unknown option"),
        ("redis+sentinel://:secret@h:1", "***"),
    ]:
        with pytest.raises(ConfigurationError, match=says.replace("*", r"\*")) as info:
            check(bad)
        assert "secret" not in str(info.value) and "redis+sentinel://" in str(info.value)
    with pytest.raises(ConfigurationError, match="not a Redis URL"):
        check("http://example.com")
    check("redis://127.0.0.1:1/0")


def test_celery_sentinel_broker_url() -> None:
    url = from_celery("sentinel://:pw@h1:26379/2;sentinel://:pw@h2:26380/2", {"master_name": "cluster1"})
    assert url == "redis+sentinel://:pw@h1:26379,h2:26380/cluster1/2"
    assert from_celery("redis://h:1/0", {}) == "redis://h:1/0"
    with pytest.raises(ConfigurationError, match="master_name"):
        from_celery("sentinel://h1:26379", {})
    from asyncq.compat import Celery  # here: the core tests above do not need the Celery layer

    celery = Celery("proj", broker="sentinel://h1:1;sentinel://h2:2",
                    broker_transport_options={"master_name": "mymaster"})
    assert celery.asyncq_app.settings.redis_url == "redis+sentinel://h1:1,h2:2/mymaster/0"


def test_cli_rejects_a_bad_sentinel_url_with_the_form() -> None:
    proc = subprocess.run([sys.executable, "-m", "asyncq", "queues", "--redis-url", "redis+sentinel://h:1"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "service name is missing" in proc.stderr and "redis+sentinel://" in proc.stderr


needs_sentinel = pytest.mark.skipif(not sentinel_supported(), reason="this redis-server has no Sentinel mode")


@pytest.fixture(scope="module")
def cluster() -> Iterator[SentinelCluster]:
    if not sentinel_supported():
        pytest.skip("this redis-server has no Sentinel mode")
    with SentinelCluster() as c:
        yield c


@needs_sentinel
@pytest.mark.timeout(120)
async def test_a_worker_process_follows_a_failover_and_every_job_completes(
        cluster: SentinelCluster, tmp_path: Path) -> None:
    url = cluster.url(db=1)
    app = App(redis_url=url)
    n_jobs = 300
    async with app:
        await (await app.broker()).flushdb()
        await app.enqueue_many([JobSpec("sentinel.work", (n, 0.05), {}) for n in range(n_jobs)])
    # the jobs are on the replica before the failover (replication is asynchronous)
    redis.Redis(port=cluster.master_port()).execute_command("WAIT", 1, 5000)
    log = tmp_path / "worker.log"
    env = {**os.environ, "ASYNCQ_REDIS_URL": url, "ASYNCQ_WORKER_LEASE": "3", "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncq", "worker", "tests.sentinel_app:app", "--concurrency", "20"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def done() -> int:
            return int(redis.Redis(port=cluster.master_port(), db=1).zcard(DONE))

        await wait_until(lambda: done() >= 50, timeout=30)
        before = done()
        new_master = await asyncio.to_thread(cluster.failover)
        assert before < n_jobs, "the failover must happen while jobs are left"
        await wait_until(lambda: done() == n_jobs, timeout=60)
        r = redis.Redis(port=new_master, db=1)
        runs = {int(k): int(v) for k, v in r.hgetall(RUNS).items()}
        assert sorted(runs) == list(range(n_jobs))
        # a job runs again only if the old master took its outcome after the promotion (lost with it)
        assert sum(1 for v in runs.values() if v > 1) <= 20
        assert proc.poll() is None, log.read_text()[-2000:]
    finally:
        stop_process(proc)
    text = log.read_text()
    assert "Traceback" not in text or "ConnectionError" in text, text[-3000:]
    assert proc.returncode == 0, text[-3000:]
    assert SERVICE in cluster.url()


@needs_sentinel
@pytest.mark.timeout(120)
async def test_with_min_replicas_to_write_no_acknowledged_job_is_lost_across_a_failover(tmp_path: Path) -> None:
    """Producers (async and sync) enqueue before and right after the failover, retrying what fails: with
    min-replicas-to-write 1 the old master refuses writes once its replica is promoted (NOREPLICAS, which the
    Sentinel pool treats as a lost master), so every acknowledged job completes while the worker runs
    through it. The producer holds still from a WAIT before the failover until the Sentinels name the new
    master: a write the old master acknowledged in the milliseconds before the promotion, not yet
    replicated, would be lost (Redis's asynchronous replication; benchmarks/sentinel.py counts those)."""
    with SentinelCluster(min_replicas_to_write=1) as c:
        url = c.url(db=2)
        env = {**os.environ, "ASYNCQ_REDIS_URL": url, "ASYNCQ_WORKER_LEASE": "3", "PYTHONPATH": str(ROOT)}
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "asyncq", "worker", "tests.sentinel_app:app"],
                                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        acked: list[int] = []
        failed = 0

        hold = asyncio.Event()
        idle = asyncio.Event()

        async def produce(stop: asyncio.Event) -> None:
            nonlocal failed
            async with App(redis_url=url) as app:
                n = 0
                while not stop.is_set():
                    if hold.is_set():
                        idle.set()
                        await asyncio.sleep(0.01)
                        continue
                    idle.clear()
                    spec = JobSpec("sentinel.work", (n, 0.01), {}).set(job_id=f"j{n}")
                    try:
                        if n % 2:
                            await asyncio.to_thread(app.enqueue_many_sync, [spec])  # SyncBroker
                        else:
                            await app.enqueue_many([spec])
                    except BrokerUnavailable:
                        failed += 1
                        await asyncio.sleep(0.05)
                        continue
                    acked.append(n)
                    n += 1
                    await asyncio.sleep(0.01)

        try:
            stop = asyncio.Event()
            producer = asyncio.create_task(produce(stop))
            await wait_until(lambda: len(acked) >= 100, timeout=30)
            hold.set()
            await idle.wait()
            redis.Redis(port=c.master_port()).execute_command("WAIT", 1, 5000)
            await asyncio.to_thread(c.failover)
            mark = len(acked)
            hold.clear()  # the old master may still be reachable and not yet demoted: NOREPLICAS, retried
            def done() -> int:
                return int(redis.Redis(port=c.master_port(), db=2).zcard(DONE))

            def state() -> str:
                roles = [redis.Redis(port=p).info("replication") for p in c.data_ports]
                return (f"acked {len(acked)} (at the failover {mark}), failed enqueues {failed}, done {done()}, "
                        f"roles {[(r['role'], r.get('connected_slaves')) for r in roles]}; worker log: "
                        f"{log.read_text()[-1500:]}")

            try:  # producing again, on the new master
                await wait_until(lambda: len(acked) >= mark + 100, timeout=60)
            except AssertionError:
                raise AssertionError(f"the producer did not resume: {state()}") from None
            stop.set()
            await producer
            try:
                await wait_until(lambda: done() >= len(acked), timeout=60)
            except AssertionError:
                raise AssertionError(f"jobs did not complete: {state()}") from None
            assert done() == len(acked)
        finally:
            stop_process(proc)
        assert proc.returncode == 0, log.read_text()[-3000:]


@needs_sentinel
@pytest.mark.timeout(60)
async def test_cli_and_celery_layer_on_a_sentinel_url(cluster: SentinelCluster) -> None:
    """The CLI (``asyncq check``, ``asyncq queues``) and asyncq.compat's Celery form reach the master through
    the Sentinels."""
    url = cluster.url(db=3)
    redis.Redis(port=cluster.master_port(), db=3).flushdb()
    from asyncq.compat import Celery

    hosts = ";".join(f"sentinel://127.0.0.1:{p}/3" for p in cluster.sentinel_ports)
    celery = Celery("proj", broker=hosts, broker_transport_options={"master_name": SERVICE})

    @celery.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    await asyncio.to_thread(add.delay, 1, 2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["check", "--redis", url], ["queues", "--json", "--redis-url", url]):
        proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "asyncq", *args], cwd=ROOT, env=env,
                                       capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
    assert '"queue": "celery"' in proc.stdout and '"length": 1' in proc.stdout, proc.stdout
