"""asyncq keeps arq's key layout and payload format: an arq producer feeds an asyncq worker, and arq's own
``Job`` reads what an asyncq worker wrote (with the same serializer on both sides, as arq requires)."""

from __future__ import annotations

import pickle

import pytest
from arq.connections import RedisSettings, create_pool
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus as ArqJobStatus

from asyncq import App, JobDeadLettered, JobStatus

from .conftest import CORE_DB, WorkerRunner, redis_url


def arq_settings() -> RedisSettings:
    return RedisSettings.from_dsn(redis_url(CORE_DB))


async def test_arq_producer_feeds_an_asyncq_worker(app: App, workers: WorkerRunner) -> None:
    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="mail", queue="emails")
    async def mail(to: str) -> str:
        return f"sent to {to}"

    pool = await create_pool(
        arq_settings(), job_serializer=app.serializer.dumps, job_deserializer=app.serializer.loads
    )
    try:
        await workers.start(app, queues=("default", "emails"))
        arq_job = await pool.enqueue_job("add", 20, 22)
        assert arq_job is not None
        assert await arq_job.result(timeout=10, poll_delay=0.05) == 42  # arq reads our result
        other = await pool.enqueue_job("mail", to="ops@example.com", _queue_name="arq:queue:emails")
        assert other is not None
        assert await app.job(other.job_id).result(timeout=10) == "sent to ops@example.com"
    finally:
        await pool.aclose()


async def test_arq_job_reads_an_asyncq_result_status_and_info(app: App, workers: WorkerRunner) -> None:
    @app.task(name="square")
    async def square(x: int) -> int:
        return x * x

    job = await square.enqueue(7)
    pool = await create_pool(arq_settings())
    try:
        arq_job = ArqJob(job.job_id, pool, _deserializer=app.serializer.loads)
        assert await arq_job.status() == ArqJobStatus.queued
        await workers.start(app)
        assert await arq_job.result(timeout=10, poll_delay=0.05) == 49
        assert await arq_job.status() == ArqJobStatus.complete
        info = await arq_job.result_info()
        assert info is not None and info.success and info.function == "square" and info.args == [7]
        assert info.queue_name == "default" and info.job_try == 1
    finally:
        await pool.aclose()


async def test_arq_sees_a_running_asyncq_job_as_in_progress(app: App, workers: WorkerRunner) -> None:
    import asyncio

    started = asyncio.Event()
    release = asyncio.Event()

    @app.task(name="hold")
    async def hold() -> None:
        started.set()
        await release.wait()

    await workers.start(app)
    job = await hold.enqueue()
    await asyncio.wait_for(started.wait(), 10)
    pool = await create_pool(arq_settings())
    try:
        assert await ArqJob(job.job_id, pool).status() == ArqJobStatus.in_progress
    finally:
        release.set()
        await pool.aclose()
    await job.result(timeout=10)


async def test_a_pickle_payload_from_a_default_arq_producer_is_dead_lettered_not_run(
    app: App, workers: WorkerRunner
) -> None:
    """arq pickles by default; asyncq refuses unsigned pickle (it would run code from Redis)."""

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    pool = await create_pool(arq_settings())  # arq's default: pickle.dumps
    try:
        arq_job = await pool.enqueue_job("add", 1, 2)
        assert arq_job is not None
        await workers.start(app)
        with pytest.raises(JobDeadLettered, match="could not run"):
            await app.job(arq_job.job_id).result(timeout=10)
        assert (await app.job(arq_job.job_id).info()).status is JobStatus.dead
    finally:
        await pool.aclose()
    assert pickle  # the module is imported to make the point above explicit


async def test_signed_pickle_and_msgpack_end_to_end(url: str, workers: WorkerRunner) -> None:
    from datetime import datetime

    for kind, extra in (("pickle", {"signing_key": "k" * 32}), ("msgpack", {})):
        app = App(redis_url=url, serializer=kind, **extra)

        @app.task(name=f"echo_{kind}", queue=kind)  # one queue per serializer: workers must agree on it
        async def echo(x: object) -> object:
            return x

        await workers.start(app, queues=(kind,))
        value = {"when": datetime(2026, 1, 1).isoformat(), "blob": b"\x00\xff", "n": [1, 2]}
        assert await (await app.enqueue(f"echo_{kind}", value)).result(timeout=10) == value
        await app.close()
