"""The worker in-process: results, retries, dead letters, timeouts, threads, priorities, wake-up, hooks."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

from asyncq import (
    App,
    Hooks,
    JobAborted,
    JobContext,
    JobDeadLettered,
    JobNotFound,
    JobStatus,
    JobTimeout,
    RemoteTaskError,
    Retry,
    TaskTimeout,
    current_job,
    keys,
)

from .conftest import WorkerRunner, wait_until


class PaymentDeclined(Exception):
    """A user exception: result() must re-raise it with this type."""


async def test_result_value_and_info(app: App, workers: WorkerRunner) -> None:
    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    w = await workers.start(app)
    job = await add.enqueue(2, 3)
    assert await job.result(timeout=10) == 5
    info = await job.info()
    assert info.status is JobStatus.complete and info.result == 5 and info.tries == 1
    assert info.worker == w.worker_id and info.function == "add" and info.args == (2, 3)
    assert info.enqueued_at and info.started_at and info.finished_at
    assert info.enqueued_at <= info.started_at <= info.finished_at


async def test_exception_is_reraised_with_its_type(app: App, workers: WorkerRunner) -> None:
    @app.task(name="charge", max_tries=1)
    async def charge(amount: int) -> None:
        raise PaymentDeclined(f"card declined for {amount}")

    await workers.start(app)
    job = await charge.enqueue(10)
    with pytest.raises(PaymentDeclined, match="card declined for 10") as exc:
        await job.result(timeout=10)
    assert "PaymentDeclined" in exc.value.remote_traceback  # type: ignore[attr-defined]
    assert await job.status() is JobStatus.failed


async def test_unimportable_exception_type_becomes_remote_task_error(app: App, sync_redis: redis.Redis) -> None:
    job = app.job("x1")
    sync_redis.set(
        keys.result_key("x1"),
        app.serializer.dumps({
            "t": 1, "f": "f", "a": [], "k": {}, "et": 1, "s": False, "st": 1, "ft": 2, "q": "default", "id": "x1",
            "x": "failed",
            "r": {"__asyncq_error__": 1, "type": "somelib.NotLoaded", "message": "boom", "args": ["boom"],
                  "traceback": "tb"},
        }),
    )
    with pytest.raises(RemoteTaskError, match="somelib.NotLoaded: boom") as exc:
        await job.result(timeout=1)
    assert exc.value.exc_type == "somelib.NotLoaded" and exc.value.remote_traceback == "tb"


async def test_result_timeout_and_not_found(app: App) -> None:
    @app.task(name="never_run")
    async def never_run() -> None: ...

    job = await never_run.enqueue()
    started = time.monotonic()
    with pytest.raises(JobTimeout, match="did not finish within 0.3 s \\(it is queued\\)"):
        await job.result(timeout=0.3)
    assert time.monotonic() - started < 5
    with pytest.raises(JobNotFound, match="not found"):
        await app.job("no-such-id").result(timeout=1)
    assert await app.job("no-such-id").status() is JobStatus.not_found


async def test_retries_with_backoff_then_success(app: App, workers: WorkerRunner) -> None:
    attempts: list[int] = []

    @app.task(name="flaky", max_tries=4, retry={"base": 0.05, "jitter": False})
    async def flaky() -> str:
        attempts.append(current_job().job_try)
        if len(attempts) < 3:
            raise ConnectionError("endpoint down")
        return "delivered"

    await workers.start(app)
    job = await flaky.enqueue()
    assert await job.result(timeout=10) == "delivered"
    assert attempts == [1, 2, 3]
    assert (await job.info()).tries == 3


async def test_retry_only_on_listed_exceptions(app: App, workers: WorkerRunner, sync_redis: redis.Redis) -> None:
    calls = 0

    @app.task(name="picky", max_tries=5, retry={"base": 0.01, "retry_on": (ConnectionError,)})
    async def picky() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad input is not worth retrying")

    await workers.start(app)
    job = await picky.enqueue()
    with pytest.raises(ValueError):
        await job.result(timeout=10)
    assert calls == 1
    meta = sync_redis.hget(keys.DLQ_META, job.job_id)
    assert meta is not None and b"not retryable" in meta


async def test_explicit_retry_signal(app: App, workers: WorkerRunner) -> None:
    seen: list[int] = []

    @app.task(name="poll_status", max_tries=3)
    async def poll_status() -> int:
        seen.append(current_job().job_try)
        if len(seen) < 2:
            raise Retry(defer=0.05)
        return len(seen)

    await workers.start(app)
    assert await (await poll_status.enqueue()).result(timeout=10) == 2


async def test_last_failure_goes_to_dead_letters_with_args_error_and_traceback(
    app: App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task(name="always_fails", max_tries=2, retry={"base": 0.01})
    async def always_fails(order_id: int) -> None:
        raise PaymentDeclined(f"order {order_id}")

    await workers.start(app)
    job = await always_fails.enqueue(99)
    with pytest.raises(PaymentDeclined):
        await job.result(timeout=10)
    import orjson

    meta = orjson.loads(sync_redis.hget(keys.DLQ_META, job.job_id))
    assert meta["function"] == "always_fails" and meta["tries"] == 2 and meta["queue"] == "default"
    assert "PaymentDeclined: order 99" in meta["error"] and "Traceback" in meta["traceback"]
    payload = app.serializer.loads(sync_redis.hget(keys.DLQ_PAYLOADS, job.job_id))
    assert payload["a"] == [99]
    assert sync_redis.zscore(keys.DLQ_INDEX, job.job_id) is not None
    assert not sync_redis.exists(keys.job_key(job.job_id), keys.in_progress_key(job.job_id))


async def test_dead_letter_retry_runs_the_job_again(app: App, workers: WorkerRunner, sync_redis: redis.Redis) -> None:
    fixed = False

    @app.task(name="needs_fix", max_tries=1)
    async def needs_fix() -> str:
        if not fixed:
            raise RuntimeError("bug")
        return "ok now"

    await workers.start(app)
    job = await needs_fix.enqueue()
    with pytest.raises(RuntimeError):
        await job.result(timeout=10)
    fixed = True
    broker = await app.broker()
    assert await broker.dlq_retry(job.job_id, keys.lane_key("default"), "default", 60_000) == 1
    assert await job.result(timeout=10) == "ok now"
    assert sync_redis.zcard(keys.DLQ_INDEX) == 0


async def test_timeout_cancels_async_and_abandons_sync(app: App, workers: WorkerRunner) -> None:
    @app.task(name="slow_async", timeout=0.2, max_tries=1)
    async def slow_async() -> None:
        await asyncio.sleep(5)

    @app.task(name="slow_sync", timeout=0.2, max_tries=1)
    def slow_sync() -> None:
        time.sleep(1)

    await workers.start(app)
    for task in (slow_async, slow_sync):
        job = await task.enqueue()
        with pytest.raises(TaskTimeout, match="ran longer than its timeout of 0.2 s"):
            await job.result(timeout=10)


async def test_plain_def_runs_in_a_thread_and_does_not_block_the_loop(app: App, workers: WorkerRunner) -> None:
    release = threading.Event()

    @app.task(name="blocking")
    def blocking() -> str:
        release.wait(10)
        return threading.current_thread().name

    @app.task(name="quick")
    async def quick() -> str:
        return "quick"

    await workers.start(app, concurrency=10)
    slow_job = await blocking.enqueue()
    await wait_until(lambda: slow_job.status(), timeout=5)
    assert await (await quick.enqueue()).result(timeout=5) == "quick"  # the loop is free while the thread blocks
    release.set()
    thread_name = await slow_job.result(timeout=10)
    assert thread_name != threading.main_thread().name


async def test_queues_are_served_in_priority_order_then_lanes(app: App, workers: WorkerRunner) -> None:
    order: list[str] = []

    @app.task(name="record")
    async def record(label: str) -> None:
        order.append(label)

    await record.enqueue_with(("default-p5",))
    await record.enqueue_with(("default-p1",), priority=1)
    await record.enqueue_with(("default-p9",), priority=9)
    await record.enqueue_with(("high-p5",), queue="high")
    await workers.start(app, queues=("high", "default"), concurrency=1)
    await wait_until(lambda: len(order) == 4, timeout=10)
    assert order == ["high-p5", "default-p9", "default-p5", "default-p1"]


async def test_wake_up_starts_a_job_without_waiting_for_the_poll(app: App, workers: WorkerRunner) -> None:
    @app.task(name="ping")
    async def ping() -> str:
        return "pong"

    await workers.start(app, poll_interval=30.0)  # the safety poll would take 30 s
    await asyncio.sleep(0.2)
    started = time.monotonic()
    assert await (await ping.enqueue()).result(timeout=10) == "pong"
    assert time.monotonic() - started < 5


async def test_delayed_job_runs_when_due_not_at_the_next_poll(app: App, workers: WorkerRunner) -> None:
    started_at: list[float] = []

    @app.task(name="later")
    async def later() -> None:
        started_at.append(time.time())

    await workers.start(app, poll_interval=30.0)
    t0 = time.time()
    job = await later.enqueue_with(delay=1.0)
    assert await job.status() is JobStatus.deferred
    await job.result(timeout=10)
    assert 1.0 <= started_at[0] - t0 < 5


async def test_no_prefetch_a_short_job_goes_to_a_free_worker(app: App, workers: WorkerRunner) -> None:
    ran_by: dict[str, str] = {}
    release = asyncio.Event()

    @app.task(name="long")
    async def long() -> None:
        ran_by["long"] = current_job().worker_id
        await release.wait()

    @app.task(name="short")
    async def short(i: int) -> None:
        ran_by[f"short{i}"] = current_job().worker_id

    busy = await workers.start(app, concurrency=1)
    long_job = await long.enqueue()
    await wait_until(lambda: "long" in ran_by)
    free = await workers.start(app, concurrency=1)
    jobs = await app.enqueue_many([short.s(i) for i in range(5)])
    for j in jobs:
        await j.result(timeout=10)
    assert {ran_by[f"short{i}"] for i in range(5)} == {free.worker_id}
    assert ran_by["long"] == busy.worker_id
    assert await long_job.status() is JobStatus.in_progress
    release.set()
    await long_job.result(timeout=10)


async def test_lease_is_renewed_so_a_long_job_never_runs_twice(app: App, workers: WorkerRunner) -> None:
    runs = 0

    @app.task(name="longer_than_lease")
    async def longer_than_lease() -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(2.5)

    await workers.start(app, lease=0.6)
    await workers.start(app, lease=0.6)
    await (await longer_than_lease.enqueue()).result(timeout=20)
    assert runs == 1


async def test_abort_queued_and_running(app: App, workers: WorkerRunner) -> None:
    started = asyncio.Event()

    @app.task(name="abortable")
    async def abortable() -> None:
        started.set()
        await asyncio.sleep(30)

    queued = await abortable.enqueue_with(delay=60)
    assert await queued.abort() is True
    with pytest.raises(JobAborted):
        await queued.result(timeout=5)
    assert await queued.status() is JobStatus.aborted

    await workers.start(app)
    running = await abortable.enqueue()
    await asyncio.wait_for(started.wait(), 10)
    assert await running.abort() is True
    with pytest.raises(JobAborted):
        await running.result(timeout=10)
    assert await running.status() is JobStatus.aborted
    assert await app.job("unknown").abort() is False


async def test_unknown_task_is_put_back_then_run_by_a_worker_that_knows_it(url: str, workers: WorkerRunner) -> None:
    old = App(redis_url=url)
    new = App(redis_url=url)

    @old.task(name="existing")
    async def existing() -> None: ...

    @new.task(name="added_in_v2")
    async def added_in_v2() -> str:
        return "v2"

    await workers.start(old)
    job = await new.enqueue("added_in_v2")
    broker = await old.broker()
    await wait_until(lambda: broker.hexists(keys.UNKNOWN_SINCE, job.job_id), timeout=10)
    assert await job.status() in (JobStatus.deferred, JobStatus.queued, JobStatus.in_progress)
    await workers.start(new)
    assert await job.result(timeout=20) == "v2"
    assert (await job.info()).tries == 1  # putting it back did not cost a try
    await old.close()
    await new.close()


async def test_unknown_task_is_dead_lettered_after_the_wait(app: App, workers: WorkerRunner) -> None:
    @app.task(name="known")
    async def known() -> None: ...

    await workers.start(app, unknown_task_wait=0)
    job = await app.enqueue("nobody.knows.me")
    with pytest.raises(JobDeadLettered, match="no worker knew task 'nobody.knows.me'"):
        await job.result(timeout=10)
    assert (await job.info()).dead_letter_reason == "unknown task 'nobody.knows.me'"


async def test_undecodable_payload_is_dead_lettered_and_the_worker_goes_on(
    app: App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task(name="fine")
    async def fine() -> str:
        return "fine"

    sync_redis.set(keys.job_key("garbage"), b"\x00\x01 not json")
    sync_redis.zadd("arq:queue", {"garbage": 0})
    await workers.start(app)
    with pytest.raises(JobDeadLettered, match="could not run"):
        await app.job("garbage").result(timeout=10)
    assert b"undecodable payload" in sync_redis.hget(keys.DLQ_META, "garbage")
    assert sync_redis.hget(keys.DLQ_PAYLOADS, "garbage") == b"\x00\x01 not json"  # kept for a person to inspect
    assert await (await fine.enqueue()).result(timeout=10) == "fine"


async def test_hooks_see_start_success_retry_failure_and_dead_letter(app: App, workers: WorkerRunner) -> None:
    events: list[tuple[str, str]] = []

    class Recorder(Hooks):
        async def on_start(self, ctx: JobContext) -> None:
            events.append(("start", ctx.task_name))

        async def on_success(self, ctx: JobContext, result: Any) -> None:
            events.append(("success", ctx.task_name))

        async def on_retry(self, ctx: JobContext, exc: BaseException, delay: float) -> None:
            events.append(("retry", ctx.task_name))

        async def on_failure(self, ctx: JobContext, exc: BaseException) -> None:
            events.append(("failure", ctx.task_name))

        async def on_dead_letter(self, ctx: JobContext | None, job_id: str, reason: str) -> None:
            events.append(("dead_letter", ctx.task_name if ctx else "?"))

    class Broken(Hooks):
        async def on_start(self, ctx: JobContext) -> None:
            raise RuntimeError("a broken exporter must not fail jobs")

    app.hooks.extend([Broken(), Recorder()])

    @app.task(name="ok")
    async def ok() -> int:
        return 1

    @app.task(name="bad", max_tries=2, retry={"base": 0.01})
    async def bad() -> None:
        raise ValueError

    await workers.start(app)
    assert await (await ok.enqueue()).result(timeout=10) == 1
    with pytest.raises(ValueError):
        await (await bad.enqueue()).result(timeout=10)
    assert events == [
        ("start", "ok"), ("success", "ok"),
        ("start", "bad"), ("retry", "bad"), ("start", "bad"), ("dead_letter", "bad"), ("failure", "bad"),
    ]


async def test_periodic_task_runs_once_per_tick_with_several_workers(app: App, workers: WorkerRunner) -> None:
    ticks: list[str] = []

    @app.periodic(every=0.5, name="heartbeat_report")
    async def heartbeat_report() -> None:
        ticks.append(current_job().job_id)

    await workers.start(app)
    await workers.start(app)
    await workers.start(app)
    await asyncio.sleep(2.3)
    assert len(ticks) >= 3
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"


def test_cron_expressions_are_validated() -> None:
    from asyncq.cron import parse_schedule

    with pytest.raises(Exception, match="invalid cron expression"):
        parse_schedule(cron="every day")
    with pytest.raises(Exception, match="exactly one of"):
        parse_schedule()
    trig = parse_schedule(cron="*/15 * * * *")
    from datetime import UTC, datetime

    nxt = trig.next_after(datetime(2026, 1, 1, 10, 7, tzinfo=UTC))
    assert nxt == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)


async def test_worker_stats_and_heartbeat(app: App, workers: WorkerRunner, sync_redis: redis.Redis) -> None:
    @app.task(name="noop")
    async def noop() -> None: ...

    w = await workers.start(app, heartbeat_interval=0.2)
    for j in await app.enqueue_many([noop.s() for _ in range(20)]):
        await j.result(timeout=10)
    await wait_until(lambda: sync_redis.get(keys.worker_key(w.worker_id)) is not None)
    assert sync_redis.zscore(keys.WORKERS_SET, w.worker_id) is not None
    assert sync_redis.get("arq:queue:health-check") is not None  # arq's own health key
    assert w.stats["complete"] == 20
    await workers.stop(w)
    assert sync_redis.get(keys.worker_key(w.worker_id)) is None


async def test_result_not_kept_does_not_hang(app: App, workers: WorkerRunner) -> None:
    @app.task(name="fire_and_forget", keep_result=0)
    async def fire_and_forget() -> int:
        return 1

    await workers.start(app)
    job = await fire_and_forget.enqueue()
    with pytest.raises(JobNotFound, match="keep_result"):
        await job.result()  # no timeout: must still return once the job is gone


async def test_a_retry_counter_past_max_tries_is_dead_lettered(
    app: App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    """A counter that an older version (which counted lost workers as tries) or a person left past the limit."""

    @app.task(name="poison", max_tries=2)
    async def poison() -> None: ...

    job = await poison.enqueue()
    sync_redis.set(keys.retry_key(job.job_id), 2)
    await workers.start(app)
    with pytest.raises(JobDeadLettered):
        await job.result(timeout=10)
    assert (await job.info()).dead_letter_reason == "max tries exceeded"


async def test_many_running_jobs_do_not_starve_an_idle_worker(app: App, workers: WorkerRunner) -> None:
    """arq keeps running ids at the head of its queue, so an idle worker reading a window of them sees nothing
    runnable. asyncq moves a claimed id's score to its lease end, out of every claimer's way."""
    release = asyncio.Event()
    ran_by: dict[str, str] = {}

    @app.task(name="hog")
    async def hog(i: int) -> None:
        ran_by[f"hog{i}"] = current_job().worker_id
        await release.wait()

    @app.task(name="urgent")
    async def urgent() -> str:
        return current_job().worker_id

    busy = await workers.start(app, concurrency=300)
    await app.enqueue_many([hog.s(i) for i in range(300)])
    await wait_until(lambda: len(ran_by) == 300, timeout=20)
    idle = await workers.start(app, concurrency=5, claim_batch=1)
    job = await urgent.enqueue()
    assert await job.result(timeout=10) == idle.worker_id
    info = await app.job(next(iter(busy.running))).info()
    assert info.status is JobStatus.in_progress and info.worker == busy.worker_id and info.started_at is not None
    release.set()


async def test_a_paused_queue_keeps_its_jobs_until_resumed(app: App, workers: WorkerRunner) -> None:
    @app.task(name="paused_task", queue="bulk")
    async def paused_task() -> str:
        return "ran"

    @app.task(name="other", queue="default")
    async def other() -> str:
        return "other ran"

    broker = await app.broker()
    await broker.pause("bulk")
    assert await broker.paused() == {"bulk"}
    await workers.start(app, queues=("bulk", "default"))
    job = await paused_task.enqueue()
    assert await (await other.enqueue()).result(timeout=10) == "other ran"  # the worker is alive and serving
    with pytest.raises(JobTimeout):
        await job.result(timeout=0.5)
    await broker.resume("bulk")
    assert await job.result(timeout=10) == "ran"


async def test_worker_start_and_stop_hooks(app: App, workers: WorkerRunner) -> None:
    seen: list[str] = []

    class Lifecycle(Hooks):
        async def on_worker_start(self, worker: Any) -> None:
            seen.append(f"start {worker.worker_id}")

        async def on_worker_stop(self, worker: Any) -> None:
            seen.append(f"stop {worker.worker_id}")

    app.hooks.append(Lifecycle())

    @app.task(name="x")
    async def x() -> None: ...

    w = await workers.start(app)
    await workers.stop(w)
    assert seen == [f"start {w.worker_id}", f"stop {w.worker_id}"]
