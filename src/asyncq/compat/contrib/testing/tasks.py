"""Celery's test helper task: ``celery.ping``, which ``start_worker`` sends to know the worker is serving."""

from __future__ import annotations

from typing import Any

from asyncq.compat.app import shared_task


def _ping() -> str:
    """Answer 'pong' (a round trip through the broker, a worker and the result backend)."""
    return "pong"


#: the task (``shared_task`` is untyped: it returns a proxy or a task depending on the current app)
ping: Any = shared_task(name="celery.ping")(_ping)
