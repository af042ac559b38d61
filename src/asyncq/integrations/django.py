"""Django: enqueue a job only once the surrounding database transaction has committed.

    from asyncq.integrations.django import enqueue_on_commit

    with transaction.atomic():
        order = Order.objects.create(...)
        enqueue_on_commit(send_receipt, order.id)      # nothing is enqueued if the block rolls back

Outside a transaction (autocommit) the job is enqueued at once, as Django runs ``on_commit`` callbacks then.
A worker therefore never reads a row that is not committed yet, and a rolled-back request leaves no job
behind. Pass ids, not model instances.

In an async view, run the transaction in ``sync_to_async`` (Django's ORM transactions are synchronous); the
callback then enqueues on the view's event loop through asgiref. In a plain sync view (WSGI) there is no
event loop: the callback runs a short one with a connection of its own, opened and closed for the call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from django.db import transaction

from asyncq.app import App
from asyncq.task import JobSpec, Task


async def _enqueue_with_own_connection(app: App, spec: JobSpec) -> None:
    twin = App(settings=app.settings, serializer=app.serializer)
    twin.tasks = app.tasks  # for each task's queue and priority
    async with twin:
        await twin.enqueue_many([spec])


def _enqueue_now(app: App, spec: JobSpec) -> None:
    outer = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if outer is not None and outer.is_running():  # inside sync_to_async: enqueue on the view's event loop
        async_to_sync(app.enqueue_many)([spec])
    else:  # a plain sync view: no loop to borrow
        asyncio.run(_enqueue_with_own_connection(app, spec))


def enqueue_on_commit(task: Task[Any, Any], /, *args: Any, using: str | None = None, **kwargs: Any) -> None:
    """Enqueue ``task(*args, **kwargs)`` when the transaction on database ``using`` commits (at once in
    autocommit). Per-call options: ``enqueue_spec_on_commit(task.app, task.s(...).set(queue=...))``."""
    enqueue_spec_on_commit(task.app, task.s(*args, **kwargs), using=using)


def enqueue_spec_on_commit(app: App, spec: JobSpec, *, using: str | None = None) -> None:
    """Enqueue a prepared ``JobSpec`` (``task.s(...).set(...)``) when the transaction commits."""
    transaction.on_commit(lambda: _enqueue_now(app, spec), using=using)


def __getattr__(name: str) -> Any:
    if name == "AsyncqBackend":
        from asyncq.integrations.django_backend import AsyncqBackend

        return AsyncqBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AsyncqBackend", "enqueue_on_commit", "enqueue_spec_on_commit"]  # noqa: F822  (AsyncqBackend: __getattr__)
