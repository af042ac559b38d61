"""asyncq keeps arq's key layout and payload format: an arq producer feeds an asyncq worker, and arq's own
``Job`` reads what an asyncq worker wrote (with the same serializer on both sides, as arq requires).

arq is an optional extra (``asyncq[arq]``): arq 0.28 pins redis-py < 6, so it cannot live in the project's
environment (which runs the newest redis-py). These tests run arq and an asyncq worker together in a venv of
their own (``.venvs/arq028``: this checkout installed editable with the ``arq`` extra, so redis-py 5): that venv
is also where asyncq itself is tested on redis-py 5. One script does the arq side and the worker, and prints
what it saw; each test below checks one fact of it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from asyncq import App

from .conftest import CORE_DB, WorkerRunner, flushed_url
from .venvs import ARQ028, ensure, run_script

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # 300: a cold venv build runs in the fixture

ARQ = ARQ028

SCRIPT = r'''
import asyncio, json, sys

import redis
from arq.connections import RedisSettings, create_pool
from arq.jobs import Job as ArqJob

from asyncq import App, JobDeadLettered, Worker, WorkerSettings

URL = sys.argv[1]
app = App(redis_url=URL)
started, release = asyncio.Event(), asyncio.Event()


@app.task(name="add")
async def add(a, b):
    return a + b


@app.task(name="mail", queue="emails")
async def mail(to):
    return f"sent to {to}"


@app.task(name="square")
async def square(x):
    return x * x


@app.task(name="hold")
async def hold():
    started.set()
    await release.wait()


async def main():
    out = {"redis": redis.__version__}
    settings = RedisSettings.from_dsn(URL)
    pool = await create_pool(settings, job_serializer=app.serializer.dumps, job_deserializer=app.serializer.loads)
    plain = await create_pool(settings)  # arq's default serializer: unsigned pickle
    sq = await square.enqueue(7)
    arq_sq = ArqJob(sq.job_id, pool, _deserializer=app.serializer.loads)
    out["square_status_before"] = (await arq_sq.status()).value
    worker = Worker(app, WorkerSettings(handle_signals=False, queues=("default", "emails"), heartbeat_interval=0.5))
    running = asyncio.create_task(worker.main())
    try:
        job = await pool.enqueue_job("add", 20, 22)
        out["add_read_by_arq"] = await job.result(timeout=10, poll_delay=0.05)
        other = await pool.enqueue_job("mail", to="ops@example.com", _queue_name="arq:queue:emails")
        out["mail_read_by_asyncq"] = await app.job(other.job_id).result(timeout=10)
        out["square_read_by_arq"] = await arq_sq.result(timeout=10, poll_delay=0.05)
        out["square_status_after"] = (await arq_sq.status()).value
        info = await arq_sq.result_info()
        out["square_info"] = [info.success, info.function, list(info.args), info.queue_name, info.job_try]
        held = await hold.enqueue()
        await asyncio.wait_for(started.wait(), 10)
        out["hold_status_seen_by_arq"] = (await ArqJob(held.job_id, pool).status()).value
        release.set()
        await held.result(timeout=10)
        pickled = await plain.enqueue_job("add", 1, 2)
        try:
            await app.job(pickled.job_id).result(timeout=10)
            out["pickle"] = "ran"
        except JobDeadLettered as exc:
            out["pickle"] = str(exc)
        out["pickle_status"] = (await app.job(pickled.job_id).info()).status.value
        health = await pool.get("arq:queue:health-check")
        out["health"] = health.decode() if health else None
    finally:
        worker.stop()
        await running
        await pool.aclose()
        await plain.aclose()
        await app.close()
    print(json.dumps(out))


asyncio.run(main())
'''


@pytest.fixture(scope="module")
def seen() -> dict[str, Any]:
    venv = ensure(ARQ)
    url = flushed_url(CORE_DB)
    with tempfile.TemporaryDirectory(prefix="asyncq-arq-") as tmp:
        ran = run_script(venv, SCRIPT, Path(tmp), name="arq_side.py", timeout=120, args=[url])
    report = ran.json()
    assert isinstance(report, dict)
    report["venv"] = venv.versions
    print(f"\narq interop venv: {json.dumps(venv.versions)}")
    return report


def test_the_interop_venv_runs_asyncq_on_redis_py_5(seen: dict[str, Any]) -> None:
    assert seen["redis"].startswith("5.") and seen["venv"]["arq"] == "0.28.0"


def test_an_arq_producer_feeds_an_asyncq_worker(seen: dict[str, Any]) -> None:
    assert seen["add_read_by_arq"] == 42  # arq enqueued it, asyncq ran it, arq read the result
    assert seen["mail_read_by_asyncq"] == "sent to ops@example.com"  # arq's _queue_name reaches asyncq's queue


def test_arq_reads_an_asyncq_status_result_and_info(seen: dict[str, Any]) -> None:
    assert seen["square_status_before"] == "queued" and seen["square_status_after"] == "complete"
    assert seen["square_read_by_arq"] == 49
    assert seen["square_info"] == [True, "square", [7], "default", 1]


def test_arq_sees_a_running_asyncq_job_as_in_progress(seen: dict[str, Any]) -> None:
    assert seen["hold_status_seen_by_arq"] == "in_progress"


def test_a_pickle_payload_from_a_default_arq_producer_is_dead_lettered_not_run(seen: dict[str, Any]) -> None:
    """arq pickles by default; asyncq refuses unsigned pickle (it would run code from Redis)."""
    assert "could not run" in seen["pickle"] and seen["pickle_status"] == "dead"


def test_the_worker_writes_arqs_health_line(seen: dict[str, Any]) -> None:
    health = seen["health"]
    assert health and " j_complete=" in health and " j_failed=" in health and " queued=" in health, health


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
