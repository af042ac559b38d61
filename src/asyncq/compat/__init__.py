"""Celery's API on asyncq: change ``from celery import ...`` to ``from asyncq.compat import ...``.

    from asyncq.compat import Celery, shared_task

    app = Celery("proj", broker="redis://127.0.0.1:6379/0", backend="redis://127.0.0.1:6379/0")

    @app.task(bind=True, autoretry_for=(IOError,), retry_backoff=True, max_retries=5)
    def deliver(self, message_id): ...

    @app.task
    async def notify(user_id): ...     # async def bodies run natively

    deliver.delay(1).get(timeout=10)

Run the worker with ``asyncq worker -A proj``. migration_guide/ explains each difference.

Or move without editing any import: ``asyncq.compat.install_as_celery()`` at the top of the project package
makes every ``import celery...`` in that process resolve to this package (see ``asyncq.compat.alias``).
"""

from asyncq.compat import states as states
from asyncq.compat._state import current_task as current_task
from asyncq.compat.alias import install_as_celery as install_as_celery
from asyncq.compat.app import Celery as Celery
from asyncq.compat.app import app_or_default as app_or_default
from asyncq.compat.app import current_app as current_app
from asyncq.compat.app import shared_task as shared_task
from asyncq.compat.canvas import Signature as Signature
from asyncq.compat.canvas import chain as chain
from asyncq.compat.canvas import chord as chord
from asyncq.compat.canvas import group as group
from asyncq.compat.canvas import maybe_signature as maybe_signature
from asyncq.compat.canvas import signature as signature
from asyncq.compat.canvas import subtask as subtask
from asyncq.compat.result import AsyncResult as AsyncResult
from asyncq.compat.result import EagerResult as EagerResult
from asyncq.compat.result import GroupResult as GroupResult
from asyncq.compat.schedules import crontab as crontab
from asyncq.compat.schedules import schedule as schedule
from asyncq.compat.task import Task as Task

__all__ = [
    "AsyncResult",
    "Celery",
    "EagerResult",
    "GroupResult",
    "Signature",
    "Task",
    "app_or_default",
    "chain",
    "chord",
    "crontab",
    "current_app",
    "current_task",
    "group",
    "install_as_celery",
    "maybe_signature",
    "schedule",
    "shared_task",
    "signature",
    "states",
    "subtask",
]
