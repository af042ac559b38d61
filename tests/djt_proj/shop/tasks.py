"""The project's django.tasks: found by ``asyncq worker --django`` (each installed app's ``tasks`` module)."""

from __future__ import annotations

import importlib.util
import threading

if importlib.util.find_spec("django.tasks") is not None:
    from django.tasks import task
else:
    from django_tasks import task

from shop.models import Event, Order


@task
def record(label: str) -> str:
    """Writes an Event row: the rows' order is the order the worker ran these in."""
    Event.objects.create(label=label)
    return label


@task(priority=50)
def process_order(order_id: int) -> dict[str, object]:
    """The ORM from a def task in a worker thread: reads the committed row, updates it."""
    order = Order.objects.get(pk=order_id)
    order.processed = True
    order.save()
    return {"item": order.item, "thread": threading.current_thread().name != "MainThread"}


@task(queue_name="reports")
async def add_async(a: int, b: int) -> int:
    """An async task on the worker's loop, with the async ORM."""
    await Event.objects.acreate(label=f"async:{a}+{b}")
    return a + b


@task
def boom(reason: str) -> None:
    raise ValueError(f"boom: {reason}")


@task(takes_context=True)
def who_am_i(context) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {"id": context.task_result.id, "attempt": context.attempt}


@task
def connection_was_closed() -> dict[str, object]:
    """Whether this thread's database connection was closed since its last use (CONN_MAX_AGE=0: as Django does
    after each request, the worker does around each task); leaves an open connection behind for the next run."""
    from django.db import connection

    fresh = connection.connection is None
    Event.objects.count()
    return {"fresh": fresh, "thread": threading.get_ident()}
