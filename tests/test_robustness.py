"""No input crashes a worker: bad entries written straight into asyncq's keys, beside good jobs.

Each test plants one kind of bad data the way a buggy client, a bad migration or a person with redis-cli would,
enqueues good jobs around it, and checks three things: the worker is still serving, the good jobs completed,
and the bad entry sits in the dead-letter store with a reason a person can act on.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from asyncq import App, JobSpec, JobStatus, TaskExited, WorkerSettings, admin, current_job, keys
from asyncq.broker import Lease, now_ms
from asyncq.worker.lifecycle import Worker

from .bad_servers import BadServer
from .conftest import WorkerRunner, redis_url, wait_until

LANE = keys.lane_key("default")
FUZZ_DB = 14  # the fuzz test runs its own worker per example, in a database of its own


def payload(function: str, args: Any = (), kwargs: Any = None, **extra: Any) -> bytes:
    """An arq payload as a producer would write it, with any field overridden."""
    d = {"t": None, "f": function, "a": list(args) if isinstance(args, tuple) else args, "k": kwargs or {},
         "et": now_ms(), "q": "default", "p": 5, **extra}
    return orjson.dumps(d)


def plant(r: redis.Redis, job_id: bytes | str, data: bytes | None, score: float | None = None) -> None:
    """A job written by hand: its payload key and its lane entry, due now unless ``score`` says otherwise."""
    if data is not None:
        r.set(keys.JOB_PREFIX.encode() + (job_id if isinstance(job_id, bytes) else job_id.encode()), data)
    r.zadd(LANE, {job_id: now_ms() if score is None else score})


def make_app(url: str, **settings: Any) -> App:
    app = App(redis_url=url, **settings)

    @app.task(name="echo")
    async def echo(x: Any) -> Any:
        return x

    @app.task(name="add", max_tries=1)
    def add(a: int, b: int) -> int:
        return a + b

    return app


async def dead_letter(app: App, job_id: str) -> admin.DeadLetter:
    async def find() -> admin.DeadLetter | None:
        return next((d for d in await admin.list_dead_letters(app, limit=1000) if d.job_id == job_id), None)

    found = await wait_until(find, timeout=20)
    assert isinstance(found, admin.DeadLetter)
    return found


@pytest.fixture
def bad_app(url: str) -> Iterator[App]:
    app = make_app(url)
    yield app


async def good_jobs_complete(app: App, n: int = 5) -> None:
    jobs = [await app.tasks["echo"].enqueue(i) for i in range(n)]
    assert [await j.result(timeout=20) for j in jobs] == list(range(n))


def serving(w: Worker, task: asyncio.Task[None] | None = None) -> bool:
    return not w.stopping.is_set() and w.health() in ("serving", "full")


# --- bad ids and keys ------------------------------------------------------------------------------------
async def test_an_id_that_is_not_utf8_is_dead_lettered_escaped(
    bad_app: App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    raw = b"bad-\xff\xfe-id"
    plant(sync_redis, raw, payload("echo", (1,)))
    w = await workers.start(bad_app)
    await good_jobs_complete(bad_app)
    d = await dead_letter(bad_app, "bad-\\xff\\xfe-id")
    assert d.reason and "not valid UTF-8" in d.reason
    assert d.meta["raw_id_hex"] == raw.hex()
    assert d.args == (1,)  # the payload was kept, readable
    assert sync_redis.zscore(LANE, raw) is None and not sync_redis.exists(keys.JOB_PREFIX.encode() + raw)
    assert serving(w)
    # Retrying it gives it a sane id: it runs.
    assert await admin.retry_dead_letter(bad_app, d.job_id) is admin.RetryOutcome.retried
    assert await bad_app.job(d.job_id).result(timeout=20) == 1


async def test_a_retry_counter_that_is_not_an_integer_is_dead_lettered(
    bad_app: App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    job = await bad_app.tasks["echo"].enqueue("x")
    sync_redis.set(keys.retry_key(job.job_id), "not-a-number")
    w = await workers.start(bad_app)
    await good_jobs_complete(bad_app)
    d = await dead_letter(bad_app, job.job_id)
    assert d.reason and "retry counter is not an integer" in d.reason
    assert serving(w)


async def test_a_job_key_of_the_wrong_type_is_dead_lettered_and_kept(
    bad_app: App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    sync_redis.hset(keys.job_key("hashed"), mapping={"f": "echo"})
    sync_redis.zadd(LANE, {"hashed": now_ms()})
    w = await workers.start(bad_app)
    await good_jobs_complete(bad_app)
    d = await dead_letter(bad_app, "hashed")
    assert d.reason and "payload key is a hash" in d.reason
    (raw,) = await (await bad_app.broker()).dlq_payloads(["hashed"])
    assert raw  # DUMP of the hash: RESTORE brings it back
    sync_redis.restore("restored", 0, raw)
    assert sync_redis.hgetall("restored") == {b"f": b"echo"}
    assert serving(w)


async def test_a_lane_key_of_the_wrong_type_is_skipped_and_the_other_queues_run(
    bad_app: App, workers: WorkerRunner, sync_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    @bad_app.task(name="other", queue="other")
    async def other() -> str:
        return "ok"

    sync_redis.set(keys.lane_key("default", 9), "not a zset")
    w = await workers.start(bad_app, queues=("default", "other"))
    job = await other.enqueue()
    assert await job.result(timeout=20) == "ok"
    await good_jobs_complete(bad_app)  # the broken lane is skipped, the default lane of the queue still runs
    await wait_until(lambda: "holds data asyncq cannot use" in caplog.text)
    assert keys.lane_key("default", 9) in caplog.text and serving(w)


async def test_a_lease_key_without_ttl_is_repaired(
    bad_app: App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    job = await bad_app.tasks["echo"].enqueue("late")
    sync_redis.set(keys.in_progress_key(job.job_id), "someone-who-never-comes-back")  # no TTL: forever
    await workers.start(bad_app, lease=1.0)
    assert await job.result(timeout=20) == "late"


# --- bad payloads --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x9f random bytes \xff", "undecodable payload"),
        (payload("echo", {"x": 1}), "'args' ('a') is a dict"),  # never quietly turned into kwargs
        (payload("echo", (1,), kwargs=[1]), "'kwargs' ('k') is a list"),
        (payload(7, (1,)), "'function' ('f') is a int"),
        (payload("echo", (1,), et="yesterday"), "'enqueue time' ('et') is a str"),
        (orjson.dumps([1, 2, 3]), "payload is a list"),
        (payload("add", (1,)), "arguments do not fit add(a, b): missing a required argument: 'b'"),
        (payload("echo", (1,), kwargs={"y": 2}), "arguments do not fit echo"),
    ],
    ids=["random-bytes", "dict-args", "list-kwargs", "int-function", "str-time", "list-payload", "too-few",
         "unknown-kwarg"],
)
async def test_a_bad_payload_is_dead_lettered_with_the_field_named(
    bad_app: App, workers: WorkerRunner, sync_redis: redis.Redis, data: bytes, reason: str
) -> None:
    plant(sync_redis, "bad", data)
    w = await workers.start(bad_app)
    await good_jobs_complete(bad_app)
    d = await dead_letter(bad_app, "bad")
    assert d.reason and reason in d.reason, d.reason
    assert serving(w)


async def test_odd_scores_still_run(bad_app: App, workers: WorkerRunner, sync_redis: redis.Redis) -> None:
    plant(sync_redis, "minus-inf", payload("echo", ("a",)), score=float("-inf"))
    plant(sync_redis, "negative", payload("echo", ("b",)), score=-5)
    with pytest.raises(redis.ResponseError):  # Redis itself refuses NaN scores: nothing to handle
        sync_redis.zadd(LANE, {"nan": float("nan")})
    w = await workers.start(bad_app)
    assert await bad_app.job("minus-inf").result(timeout=20) == "a"
    assert await bad_app.job("negative").result(timeout=20) == "b"
    assert serving(w)


async def test_a_10_mb_payload_runs(bad_app: App, workers: WorkerRunner) -> None:
    big = "x" * 10_000_000
    job = await bad_app.tasks["echo"].enqueue(big)
    await workers.start(bad_app)
    assert len(await job.result(timeout=60)) == len(big)


async def test_an_unknown_task_is_dead_lettered_after_the_wait(url: str, workers: WorkerRunner,
                                                               sync_redis: redis.Redis) -> None:
    app = make_app(url)
    plant(sync_redis, "who", payload("no.such.task", (1,)))
    w = await workers.start(app, unknown_task_wait=0.5)
    await good_jobs_complete(app)
    d = await dead_letter(app, "who")
    assert d.reason == "unknown task 'no.such.task'" and serving(w)


# --- task bodies that try to end the worker -------------------------------------------------------------------
async def test_system_exit_and_keyboard_interrupt_fail_the_job_not_the_worker(
    bad_app: App, workers: WorkerRunner
) -> None:
    @bad_app.task(name="sync_exit", max_tries=1)
    def sync_exit() -> None:
        sys.exit(3)

    @bad_app.task(name="async_exit", max_tries=1)
    async def async_exit() -> None:
        raise SystemExit(4)

    @bad_app.task(name="interrupt", max_tries=1)
    async def interrupt() -> None:
        raise KeyboardInterrupt

    w = await workers.start(bad_app)
    for task, code in ((sync_exit, "SystemExit(3)"), (async_exit, "SystemExit(4)"), (interrupt, "KeyboardInterrupt")):
        job = await task.enqueue()
        with pytest.raises(TaskExited, match=code.replace("(", r"\(").replace(")", r"\)")):
            await job.result(timeout=20)
        assert (await job.info()).status in (JobStatus.failed, JobStatus.dead)
    await good_jobs_complete(bad_app)
    assert serving(w)


# --- recovery -------------------------------------------------------------------------------------------------
async def lost_claim(app: App, lease_ms: int = 300, worker_id: str = "lost-worker") -> list[str]:
    """A worker that claims what is due and then vanishes (killed): its claims' leases lapse on their own."""
    broker = await app.broker()
    claimed, _, _ = await broker.claim(keys.lanes_by_priority("default"), ["default"] * 10, 100, lease_ms,
                                       worker_id)
    return [c.job_id for c in claimed]


async def test_a_recovered_job_runs_ahead_of_newer_work_and_is_not_charged_a_try(
    url: str, workers: WorkerRunner
) -> None:
    app = make_app(url)
    order: list[str] = []

    @app.task(name="record")
    async def record(name: str) -> tuple[int, int]:
        order.append(name)
        return current_job().job_try, current_job().recoveries

    first = await record.enqueue("first")
    assert await lost_claim(app) == [first.job_id]
    backlog = [("backlog", i) for i in range(1000)]
    await app.enqueue_many([JobSpec("record", (f"{name}-{i}",), {}) for name, i in backlog])
    await asyncio.sleep(0.4)  # the lost claim's lease has lapsed
    await workers.start(app, concurrency=1, claim_batch=1)
    assert await first.result(timeout=30) == [1, 1]  # the same first try, one recovery (JSON: a list)
    assert order[0] == "first", order[:5]
    info = await first.info()
    assert (info.tries, info.recoveries) == (1, 1)


async def test_a_job_that_keeps_losing_its_worker_is_dead_lettered_as_a_poison_pill(
    url: str, workers: WorkerRunner
) -> None:
    app = make_app(url, max_recoveries=2)
    job = await app.tasks["echo"].enqueue("pill")
    for n in range(3):  # three workers lost while running it; the third recovery is one too many
        assert await lost_claim(app, worker_id=f"lost-{n}") == [job.job_id]
        await asyncio.sleep(0.4)
    await workers.start(app)
    d = await dead_letter(app, job.job_id)
    assert d.reason == "worker lost 3 times; the task may be killing its worker"
    assert (d.recoveries, d.tries) == (3, 1)
    info = await job.info()
    assert info.recoveries == 3 and info.status is JobStatus.failed


async def test_a_late_outcome_is_kept_unless_someone_claimed_the_job_again(url: str) -> None:
    """The finish script's ownership rule, on real Redis: a lapsed lease may still finish (an outage ended it),
    but not after another claim (the job runs elsewhere now)."""
    app = make_app(url)
    broker = await app.broker()
    lanes, queues = keys.lanes_by_priority("default"), ["default"] * 10
    a = await app.tasks["echo"].enqueue("a")
    (ca,), _, _ = await broker.claim(lanes, queues, 1, 200, "w1")
    await asyncio.sleep(0.3)  # lapsed; nobody claimed it since
    lease = Lease(ca.job_id, ca.token, ca.lane, ca.queue, ca.generation)
    assert await broker.renew([lease], 10_000) == [1]  # taken back
    assert await broker.finish([(lease, b"", 0)]) == [1]
    assert await a.status() is JobStatus.not_found  # finished, no result kept

    b = await app.tasks["echo"].enqueue("b")
    (cb,), _, _ = await broker.claim(lanes, queues, 1, 200, "w1")
    await asyncio.sleep(0.3)
    (again,), _, _ = await broker.claim(lanes, queues, 1, 10_000, "w2")  # recovered by another worker
    assert again.job_id == b.job_id and again.recoveries == 1
    stale = Lease(cb.job_id, cb.token, cb.lane, cb.queue, cb.generation)
    assert await broker.finish([(stale, b"", 0)]) == [0]
    assert await broker.renew([stale], 10_000) == [0]
    await app.close()


async def test_no_lapsed_lease_is_recovered_inside_a_reconnect_window(url: str) -> None:
    app = make_app(url)
    broker = await app.broker()
    lanes, queues = keys.lanes_by_priority("default"), ["default"] * 10
    job = await app.tasks["echo"].enqueue("x")
    await broker.claim(lanes, queues, 1, 200, "w1")
    await asyncio.sleep(0.3)
    # Another worker just came back from an outage: nobody recovers for the next 0.5 s.
    claimed, _, _ = await broker.claim(lanes, queues, 1, 10_000, "w2", reconnect_until_ms=now_ms() + 500)
    assert claimed == []
    await asyncio.sleep(0.6)
    claimed, _, _ = await broker.claim(lanes, queues, 1, 10_000, "w3")
    assert [c.job_id for c in claimed] == [job.job_id]
    await app.close()


# --- a worker whose Redis hangs ---------------------------------------------------------------------------------
async def test_a_worker_whose_redis_hangs_reports_wedged_and_still_stops_in_bounded_time() -> None:
    hole = BadServer(hang=True)
    try:
        app = make_app(f"redis://127.0.0.1:{hole.port}/0", command_timeout=60, connect_timeout=2)
        w = Worker(app, WorkerSettings(handle_signals=False, wedged_after=1.0, heartbeat_interval=0.5,
                                       shutdown_grace=1.0))
        task = asyncio.create_task(w.main())
        await wait_until(lambda: w.health() == "wedged", timeout=20)
        started = time.monotonic()
        w.stop()
        await asyncio.wait_for(task, timeout=60)
        took = time.monotonic() - started
        print(f"\nstopped in {took:.1f}s with every Redis command hanging")
        assert took < 1.0 + 4 * 5.0 + 5  # grace, then each bounded shutdown step
        await asyncio.wait_for(app.close(), 10)
    finally:
        hole.close()


# --- fuzz ----------------------------------------------------------------------------------------------------
KEY_KINDS = ["lane-member", "payload", "retry", "in-progress", "claimed", "recoveries", "running", "paused",
             "reconnect", "heartbeat", "abort-message"]


@st.composite
def garbage(draw: st.DrawFn) -> tuple[str, bytes, bytes]:
    return draw(st.sampled_from(KEY_KINDS)), draw(st.binary(min_size=0, max_size=40)), draw(
        st.binary(min_size=0, max_size=200))


def write_garbage(r: redis.Redis, kind: str, ident: bytes, value: bytes) -> None:
    job = b"fz-" + ident
    if kind == "lane-member":
        r.zadd(LANE, {job: now_ms()})
    elif kind == "payload":
        r.set(keys.JOB_PREFIX.encode() + job, value)
        r.zadd(LANE, {job: now_ms()})
    elif kind == "retry":
        r.set(keys.RETRY_PREFIX.encode() + job, value)
        r.zadd(LANE, {job: now_ms()})
    elif kind == "in-progress":
        r.set(keys.IN_PROGRESS_PREFIX.encode() + job, value)
        r.zadd(LANE, {job: now_ms()})
    elif kind == "claimed":
        r.hset(keys.claimed_key("default"), job, value)
        r.zadd(keys.running_key("default"), {job: now_ms() - 1000})
        r.zadd(LANE, {job: now_ms()})
    elif kind == "recoveries":
        r.hset(keys.RECOVERIES, job, value)
    elif kind == "running":
        r.zadd(keys.running_key("default"), {job: now_ms() - 1000})
    elif kind == "paused":
        r.sadd(keys.PAUSED_SET, value or b"x")
    elif kind == "reconnect":
        r.set(keys.RECONNECT_UNTIL, value)
    elif kind == "heartbeat":
        r.set(keys.worker_key("fz-" + ident.hex()), value)
        r.zadd(keys.WORKERS_SET, {"fz-" + ident.hex(): now_ms()})
    else:
        r.publish(keys.ABORT_CHANNEL, value)


# No example database (nothing written into the tree) and no "explain" phase (it parses source with ast, which
# CPython 3.11 can trip over while the worker's threads run: "AST constructor recursion depth mismatch").
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None,
          phases=(Phase.generate, Phase.shrink))
@given(entries=st.lists(garbage(), min_size=1, max_size=25))
def test_fuzz_random_bytes_in_every_key_the_worker_reads(entries: list[tuple[str, bytes, bytes]]) -> None:
    url = redis_url(FUZZ_DB)
    r = redis.Redis.from_url(url)
    r.flushdb()

    async def scenario() -> None:
        app = make_app(url)
        w = Worker(app, WorkerSettings(handle_signals=False, heartbeat_interval=0.2, lease=1.0,
                                       unknown_task_wait=0.2))
        task = asyncio.create_task(w.main())
        try:
            half = len(entries) // 2
            for kind, ident, value in entries[:half]:
                write_garbage(r, kind, ident, value)
            jobs = [await app.tasks["echo"].enqueue(i) for i in range(3)]
            for kind, ident, value in entries[half:]:
                write_garbage(r, kind, ident, value)
            jobs += [await app.tasks["echo"].enqueue(i) for i in range(3, 6)]
            r.delete(keys.PAUSED_SET)  # a paused "default" would (rightly) hold the good jobs
            assert [await j.result(timeout=30) for j in jobs] == list(range(6))
            assert not task.done(), "the worker stopped"
            await admin.list_workers(app)  # the CLI and dashboard read the same heartbeats
            await admin.list_dead_letters(app, limit=1000)
        finally:
            w.stop()
            await asyncio.wait_for(task, timeout=60)
            await app.close()

    asyncio.run(scenario())
    r.flushdb()
    r.close()


async def test_a_worker_that_reclaims_its_own_running_job_keeps_one_run(
    url: str, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    """A worker whose loop stalled past the lease may claim its own running job back (the lease lapsed, nobody
    else took it): it must keep the one run it has, under the new lease, and not start a second copy."""
    app = make_app(url)
    started = asyncio.Event()
    release = asyncio.Event()
    runs: list[int] = []

    @app.task(name="long")
    async def long() -> str:
        runs.append(current_job().job_try)
        started.set()
        await release.wait()
        return "done"

    w = await workers.start(app, lease=30.0)
    job = await long.enqueue()
    await asyncio.wait_for(started.wait(), 10)
    # What a stall past the lease leaves in Redis: the lease key gone, the running entry due.
    sync_redis.delete(keys.in_progress_key(job.job_id))
    sync_redis.zadd(keys.running_key("default"), {job.job_id: now_ms() - 1000})
    await app.tasks["echo"].enqueue("wake")  # a wake-up: the worker claims, and gets its own job back
    await wait_until(lambda: sync_redis.get(keys.in_progress_key(job.job_id)) is not None)
    release.set()
    assert await job.result(timeout=20) == "done"
    assert runs == [1] and serving(w)
    info = await job.info()
    assert info.recoveries == 1 and info.tries == 1
