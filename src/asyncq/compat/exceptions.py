"""Celery's exceptions, under Celery's names, rooted in asyncq's tree.

Each also subclasses what Celery users catch (``TimeoutError`` is a builtin ``TimeoutError`` too), so
``except celery.exceptions.X`` code keeps working after the import change.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from asyncq.exceptions import AsyncqError, JobAborted, UnknownTaskError


class CeleryError(AsyncqError):
    """Root of the Celery-named exceptions."""


class TaskPredicate(CeleryError):
    """Control-flow signals a task raises (Retry, Ignore, Reject)."""


class Retry(TaskPredicate):
    """Raised by ``self.retry()``: the task is tried again ``when`` (seconds or a datetime)."""

    #: the max_retries that allowed this retry (None: unlimited), so the worker's log shows the real limit
    limit: int | None = None

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | datetime | None = None,
        is_eager: bool = False,
        sig: Any = None,
        **kwargs: Any,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        self.is_eager = is_eager
        self.sig = sig
        super().__init__(message or f"Retry in {when}" + (f": {exc!r}" if exc else ""))

    def humanize(self) -> str:
        return f"in {self.when}s" if isinstance(self.when, int | float) else f"at {self.when}"


class Ignore(TaskPredicate):
    """Raised in a task to end it with no state stored (the message is acknowledged)."""


class Reject(TaskPredicate):
    """Raised in a task to reject it; ``requeue=True`` puts it back, else it is stored as FAILURE."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)


class MaxRetriesExceededError(CeleryError):
    def __init__(self, *args: Any, task_args: Any = None, task_kwargs: Any = None) -> None:
        super().__init__(*args)
        self.task_args = task_args
        self.task_kwargs = task_kwargs


class TimeoutError(CeleryError, builtins.TimeoutError):
    """``AsyncResult.get()`` ran out of time."""


class TaskRevokedError(CeleryError, JobAborted):
    """The task was revoked (or expired) before or while it ran."""

    def __init__(self, message: str = "revoked", *, job_id: str | None = None) -> None:
        JobAborted.__init__(self, message, job_id=job_id)


class NotRegistered(CeleryError, UnknownTaskError):
    """A task name this app has not registered."""


class SoftTimeLimitExceeded(CeleryError):
    """Raised *inside* a task when its soft time limit passes, so it can clean up."""


class TimeLimitExceeded(CeleryError):
    """The task ran past its hard time limit and was stopped."""


class WorkerLostError(CeleryError):
    """The worker running the task was lost."""


class ChordError(CeleryError):
    """A member of a chord's header failed, so the body cannot run."""


class ImproperlyConfigured(CeleryError, ValueError):
    """A configuration asyncq cannot honour; the message says why and what to do."""
