"""asyncq.integrations.fastapi: the lifespan, the AsyncqApp dependency, enqueue that never waits for a queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from asyncq import App, ConfigurationError
from asyncq.integrations.fastapi import AsyncqApp, lifespan

from ..conftest import WorkerRunner, flushed_url

DB = 5


def make_app() -> App:
    app = App(redis_url=flushed_url(DB))

    @app.task(name="slowq.work", queue="slowq")
    async def work(x: int) -> int:
        return x + 1

    return app


def make_web(app: App, **options: Any) -> FastAPI:
    web = FastAPI(lifespan=lifespan(app, **options))

    @web.post("/enqueue/{x}")
    async def enqueue(x: int, tasks: AsyncqApp) -> dict[str, str]:
        job = await tasks.enqueue("slowq.work", x)
        return {"job": job.job_id}

    @web.post("/call/{x}")
    async def call(x: int, tasks: AsyncqApp) -> dict[str, int]:
        job = await tasks.enqueue("slowq.work", x)
        return {"result": await job.result(timeout=10)}

    return web


@asynccontextmanager
async def running(web: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with web.router.lifespan_context(web) as state:
        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            scope["state"] = dict(state or {})
            await web(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state, client=("127.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


async def test_enqueue_from_a_handler_never_waits_for_a_slow_queue() -> None:
    app = make_app()
    await (await app.broker()).pause("slowq")  # nobody drains it: as slow as a queue gets
    await app.enqueue_many([app.get_task("slowq.work").s(i) for i in range(5000)])  # and a long backlog
    async with running(make_web(app)) as client:
        started = time.perf_counter()
        answers = await asyncio.gather(*(client.post(f"/enqueue/{i}") for i in range(50)))
        elapsed = time.perf_counter() - started
    assert all(r.status_code == 200 for r in answers)
    # Every handler answered while its job still sits in the paused queue: none waited for the queue to move.
    # (The bound only guards against a hang; speed is measured in benchmarks/, not asserted here.)
    assert elapsed < 30, f"50 enqueues took {elapsed:.2f} s"
    statuses = {(await app.job(r.json()["job"]).status()).value for r in answers}
    assert statuses == {"queued"}


async def test_await_a_result_in_a_handler_and_mount_the_dashboard(workers: WorkerRunner) -> None:
    app = make_app()
    async with running(make_web(app, dashboard="/asyncq")) as client:
        await workers.start(app, queues=("slowq",))
        assert (await client.post("/call/41")).json() == {"result": 42}
        r = await client.get("/asyncq/api/queues")
        assert r.status_code == 200 and [q["queue"] for q in r.json()] == ["slowq"]
        assert (await client.get("/asyncq/")).status_code == 200


async def test_lifespan_fails_fast_on_an_unreachable_redis() -> None:
    web = make_web(App(redis_url="redis://127.0.0.1:1/5", connect_timeout=0.5))
    with pytest.raises(ConnectionError, match="unreachable"):
        async with running(web):
            pass


async def test_dependency_without_the_lifespan_says_what_to_do() -> None:
    web = FastAPI()

    @web.get("/")
    async def index(tasks: AsyncqApp) -> str:
        return "unreachable"

    transport = httpx.ASGITransport(app=web, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        with pytest.raises(ConfigurationError, match="lifespan"):
            await client.get("/")
