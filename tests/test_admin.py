"""asyncq.admin against a real Redis (database 11): queue statistics, dead letters, the worker list.

Dead letters are made the way production makes them: a real worker runs a task that always fails with
max_tries=1, or meets a task name it does not know (unknown_task_wait=0).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from asyncq import (
    App,
    BrokerUnavailable,
    ConfigurationError,
    JobNotFound,
    JobSpec,
    JobStatus,
    Worker,
    WorkerSettings,
    admin,
    keys,
)
from asyncq.broker import now_ms
from asyncq.worker import run_worker

from .conftest import flushed_url, wait_until

ADMIN_DB = 11


@pytest.fixture
def aurl() -> str:
    return flushed_url(ADMIN_DB)


def make_app(url: str, *, knows_nobody: bool = False) -> App:
    app = App(redis_url=url)

    @app.task(name="admin.ok", queue="q1")
    async def ok(x: int) -> int:
        return x * 2

    @app.task(name="admin.fail", queue="q1", max_tries=1)
    async def fail(x: int) -> None:
        raise ValueError(f"always fails ({x})")

    if knows_nobody:

        @app.task(name="admin.nobody", queue="q2")
        def nobody(x: int, note: str) -> str:
            return f"{note}: finally ran {x}"

    return app


@pytest.fixture
async def app(aurl: str) -> AsyncIterator[App]:
    a = make_app(aurl)
    yield a
    await a.close()


async def burst(app: App, *queues: str) -> Worker:
    """Run a real worker in this process until the queues are empty."""
    settings = WorkerSettings(queues=queues, burst=True, handle_signals=False, unknown_task_wait=0)
    return await asyncio.wait_for(run_worker(app, settings), timeout=30)


async def make_dead_letters(app: App) -> tuple[list[str], str]:
    """Three failed jobs in q1 and one unknown-task job in q2: (q1 ids in the order they failed, q2 id)."""
    failed = []
    for i in range(3):
        job = await app.enqueue("admin.fail", i)
        await burst(app, "q1")  # one at a time: distinct dead-letter times make "newest first" well defined
        failed.append(job.job_id)
        await asyncio.sleep(0.005)
    (unknown,) = await app.enqueue_many([JobSpec("admin.nobody", (7,), {"note": "hi"}).set(queue="q2")])
    await burst(app, "q2")
    return failed, unknown.job_id


# --- queue statistics ----------------------------------------------------------------------------------------
async def test_queue_stats_counts_ready_scheduled_in_flight(app: App) -> None:
    past = datetime.now(tz=UTC) - timedelta(seconds=5)
    oldest = await app.tasks["admin.ok"].enqueue_with((1,), at=past)
    await app.tasks["admin.ok"].enqueue_with((2,))
    await app.tasks["admin.ok"].enqueue_with((3,), priority=9)
    await app.tasks["admin.ok"].enqueue_with((4,), delay=60)

    stats = await admin.queue_stats(app, queues=["empty"])
    by_name = {s.queue: s for s in stats}
    assert [s.queue for s in stats] == ["empty", "q1"]
    assert by_name["empty"] == admin.QueueStats("empty", 0, None, 0, 0, 0)
    q1 = by_name["q1"]
    assert (q1.length, q1.in_flight, q1.scheduled, q1.dead_letters) == (3, 0, 1, 0)
    assert q1.oldest_age is not None and 5 <= q1.oldest_age < 15

    # A worker claims one job (the priority-9 one first): in flight, no longer ready, not "scheduled".
    broker = await app.broker()
    claimed, _, _ = await broker.claim(keys.lanes_by_priority("q1"), ["q1"] * 10, 1, 10_000, "test-worker")
    assert [c.job_id for c in claimed] != [oldest.job_id]
    (q1,) = await admin.queue_stats(app)
    assert (q1.length, q1.in_flight, q1.scheduled) == (2, 1, 1)
    assert q1.oldest_age is not None and q1.oldest_age >= 5

    # An id that is ready in its lane but holds a live lease (an arq worker, clock skew) is not "waiting".
    await broker.zadd(keys.running_key("q1"), {oldest.job_id: now_ms() + 10_000})
    (q1,) = await admin.queue_stats(app)
    assert q1.oldest_age is not None and q1.oldest_age < 5


async def test_queue_stats_counts_dead_letters_per_queue(app: App) -> None:
    await make_dead_letters(app)
    by_name = {s.queue: s for s in await admin.queue_stats(app)}
    assert by_name["q1"].dead_letters == 3
    assert by_name["q2"].dead_letters == 1
    assert by_name["q1"].length == by_name["q2"].length == 0


async def test_queue_stats_rejects_bad_queue_name(app: App) -> None:
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        await admin.queue_stats(app, queues=["a:b"])


async def test_redis_down_raises_broker_unavailable() -> None:
    app = App(redis_url="redis://127.0.0.1:1/0", connect_timeout=1)
    try:
        for call in (
            admin.queue_stats(app),
            admin.list_dead_letters(app),
            admin.list_workers(app),
            admin.retry_all_dead_letters(app),
            admin.purge_dead_letters(app),
            admin.count_dead_letters(app),
        ):
            with pytest.raises(BrokerUnavailable, match="unreachable"):
                await call
    finally:
        await app.close()


# --- dead letters ----------------------------------------------------------------------------------------------
async def test_list_dead_letters(app: App) -> None:
    failed, unknown = await make_dead_letters(app)
    letters = await admin.list_dead_letters(app)
    assert [d.job_id for d in letters] == [unknown, *reversed(failed)]  # newest first

    nobody = letters[0]
    assert nobody.queue == "q2" and nobody.lane == keys.lane_key("q2")
    assert nobody.function == "admin.nobody"
    assert nobody.outcome == "dead"
    assert nobody.reason is not None and "unknown task" in nobody.reason
    assert nobody.args == (7,) and nobody.kwargs == {"note": "hi"}
    assert nobody.payload_error is None

    last_failed = letters[1]
    assert last_failed.queue == "q1" and last_failed.outcome == "failed"
    assert last_failed.error == "ValueError: always fails (2)"
    assert last_failed.traceback is not None and "always fails" in last_failed.traceback
    assert last_failed.tries == 1 and last_failed.args == (2,)
    assert last_failed.failed_at is not None and last_failed.worker

    assert [d.job_id for d in await admin.list_dead_letters(app, queue="q1")] == list(reversed(failed))
    assert [d.job_id for d in await admin.list_dead_letters(app, queue="q2")] == [unknown]
    assert await admin.list_dead_letters(app, queue="other") == []
    assert [d.job_id for d in await admin.list_dead_letters(app, limit=2, offset=1)] == [failed[2], failed[1]]
    assert [d.job_id for d in await admin.list_dead_letters(app, queue="q1", limit=1, offset=2)] == [failed[0]]
    assert await admin.list_dead_letters(app, limit=0) == []
    assert await admin.count_dead_letters(app) == 4
    assert await admin.count_dead_letters(app, "q1") == 3


async def test_list_dead_letters_tolerates_undecodable_payloads(app: App) -> None:
    failed, _ = await make_dead_letters(app)
    broker = await app.broker()
    await broker.hset(keys.DLQ_PAYLOADS, failed[0], b"\xff not a payload")
    await broker.hset(keys.DLQ_PAYLOADS, failed[1], b"")
    letters = {d.job_id: d for d in await admin.list_dead_letters(app)}
    assert letters[failed[0]].payload_error is not None
    assert letters[failed[0]].payload_error.startswith("undecodable payload")
    assert letters[failed[0]].args == ()
    assert letters[failed[1]].payload_error is not None and "missing" in letters[failed[1]].payload_error
    assert letters[failed[2]].payload_error is None


async def test_retry_dead_letter_runs_again(aurl: str, app: App) -> None:
    _, unknown = await make_dead_letters(app)
    assert await admin.retry_dead_letter(app, unknown) is admin.RetryOutcome.retried
    assert await app.job(unknown).status() is JobStatus.queued
    assert {s.queue: s.length for s in await admin.queue_stats(app)}["q2"] == 1
    assert unknown not in [d.job_id for d in await admin.list_dead_letters(app)]

    with pytest.raises(JobNotFound, match="no dead letter"):
        await admin.retry_dead_letter(app, unknown)
    with pytest.raises(JobNotFound, match="asyncq dlq list"):
        await admin.retry_dead_letter(app, "never-there")

    # A worker that knows the task now runs the retried job.
    fixed = make_app(aurl, knows_nobody=True)
    await burst(fixed, "q2")
    assert await app.job(unknown).result(timeout=5) == "hi: finally ran 7"


async def test_retry_dead_letter_leaves_it_when_a_live_job_has_its_id(app: App) -> None:
    failed, _ = await make_dead_letters(app)
    broker = await app.broker()
    await broker.delete(keys.result_key(failed[0]))  # the failure result would make the id a duplicate
    again = await app.tasks["admin.ok"].enqueue_with((5,), job_id=failed[0])
    assert again.created
    assert await admin.retry_dead_letter(app, failed[0]) is admin.RetryOutcome.job_exists
    assert failed[0] in [d.job_id for d in await admin.list_dead_letters(app)]


async def test_retry_all_with_queue_and_progress(app: App) -> None:
    _, unknown = await make_dead_letters(app)
    seen: list[tuple[int, int]] = []
    summary = await admin.retry_all_dead_letters(app, queue="q1", progress=lambda d, t: seen.append((d, t)))
    assert summary == admin.RetrySummary(retried=3)
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    assert [d.job_id for d in await admin.list_dead_letters(app)] == [unknown]
    assert {s.queue: s.length for s in await admin.queue_stats(app)}["q1"] == 3

    summary = await admin.retry_all_dead_letters(app)
    assert summary.retried == 1 and summary.total == 1
    assert await admin.count_dead_letters(app) == 0
    assert await admin.retry_all_dead_letters(app) == admin.RetrySummary()


async def test_purge_dead_letters(app: App) -> None:
    failed, unknown = await make_dead_letters(app)
    assert await admin.purge_dead_letters(app, [failed[0], "never-there"]) == 1
    assert await admin.count_dead_letters(app) == 3
    assert await admin.purge_dead_letters(app, queue="q2") == 1
    assert [d.job_id for d in await admin.list_dead_letters(app)] == [failed[2], failed[1]]
    assert await admin.purge_dead_letters(app, []) == 0
    assert await admin.purge_dead_letters(app) == 2
    assert await admin.list_dead_letters(app) == []
    broker = await app.broker()
    assert await broker.hlen(keys.DLQ_META) == 0 and await broker.hlen(keys.DLQ_PAYLOADS) == 0
    with pytest.raises(ConfigurationError, match="not both"):
        await admin.purge_dead_letters(app, [unknown], queue="q2")


# --- workers -------------------------------------------------------------------------------------------------------
async def test_list_workers(app: App) -> None:
    assert await admin.list_workers(app) == []
    worker = Worker(app, WorkerSettings(queues=("q1", "q2"), handle_signals=False, heartbeat_interval=0.2))
    running = asyncio.create_task(worker.main())
    try:
        (info,) = await wait_until(lambda: admin.list_workers(app), timeout=10)
        assert info.worker_id == worker.worker_id
        assert info.alive
        assert info.queues == ("q1", "q2")
        assert info.concurrency == 100 and info.running == 0
        assert "admin.ok" in info.tasks
        assert info.last_beat is not None and info.started_at is not None
    finally:
        worker.stop()
        await asyncio.wait_for(running, timeout=30)
    assert await admin.list_workers(app) == []  # a stopped worker removes itself
