"""``App.enqueue`` warns once per task name and process when live workers lack the task (closest names
suggested), and says nothing while no worker is alive. Real in-process workers on the core test database."""

from __future__ import annotations

import logging

import pytest

from asyncq import App, admin
from asyncq.task import JobSpec

from .conftest import WorkerRunner, wait_until


def warnings_about(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "asyncq.app" and r.levelno == logging.WARNING and f"named {name!r}" in r.getMessage()]


async def test_enqueue_warns_once_for_a_task_no_live_worker_has(url: str, workers: WorkerRunner,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    served = App(redis_url=url)

    @served.task(name="reports.send_email", queue="tn")
    async def send_email(to: str) -> str:
        return to

    producer = App(redis_url=url)
    producer.unknown_tasks.refresh = 0  # read the worker list on every check (the default caches it 10 s)
    caplog.set_level(logging.WARNING, logger="asyncq.app")
    try:
        await producer.enqueue("reports.send_emial", "a@example.org")  # no worker alive: nothing to compare
        assert warnings_about(caplog, "reports.send_emial") == []

        await workers.start(served, queues=("tn", "default"))
        await wait_until(lambda: _alive(producer))
        await producer.enqueue("reports.send_emial", "a@example.org")
        (message,) = warnings_about(caplog, "reports.send_emial")
        assert "no live worker has a task named 'reports.send_emial'" in message
        assert "did you mean 'reports.send_email'" in message and "unknown_task_wait" in message

        await producer.enqueue("reports.send_emial", "b@example.org")  # once per name and process
        assert len(warnings_about(caplog, "reports.send_emial")) == 1
        job = await producer.enqueue("reports.send_email", "c@example.org")  # a known name: no warning
        assert await job.result(timeout=10) == "c@example.org"
        assert warnings_about(caplog, "reports.send_email") == []
    finally:
        await producer.close()
        await served.close()


async def _alive(app: App) -> bool:
    return any(w.alive and w.tasks for w in await admin.list_workers(app))


async def test_sync_enqueue_warns_too(url: str, workers: WorkerRunner, caplog: pytest.LogCaptureFixture) -> None:
    """``enqueue_many_sync`` (what the Celery layer's ``delay()`` and Django views use) checks names as well."""
    served = App(redis_url=url)

    @served.task(name="reports.send_email", queue="tn")
    async def send_email(to: str) -> str:
        return to

    producer = App(redis_url=url)
    producer.unknown_tasks.refresh = 0
    caplog.set_level(logging.WARNING, logger="asyncq.app")
    try:
        await workers.start(served, queues=("tn", "default"))
        await wait_until(lambda: _alive(producer))
        producer.enqueue_many_sync([JobSpec("reports.send_emial", ("a@example.org",), {})])
        (message,) = warnings_about(caplog, "reports.send_emial")
        assert "did you mean 'reports.send_email'" in message
        producer.enqueue_many_sync([JobSpec("reports.send_emial", ("b@example.org",), {})])
        assert len(warnings_about(caplog, "reports.send_emial")) == 1
    finally:
        await producer.close()
        await served.close()
