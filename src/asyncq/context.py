"""What a running task (and every hook) can know about the job it serves.

``current_job()`` works in ``async def`` tasks and in plain ``def`` tasks running in the thread pool (anyio
copies the context into the thread), so a task never needs a ``ctx`` parameter to learn its id or try.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio

from asyncq.exceptions import AsyncqError


@dataclass(slots=True)
class JobContext:
    job_id: str
    task_name: str
    queue: str
    #: the task's own try, from 1: a try that ended because its worker was lost is run again as the same try
    job_try: int
    max_tries: int
    enqueue_ms: int
    start_ms: int
    worker_id: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: the job's headers (``enqueue_with(..., headers={...})``), e.g. a trace context
    headers: dict[str, Any] = field(default_factory=dict)
    #: times this job was recovered after its worker was lost (killed, or cut off from Redis past its lease)
    recoveries: int = 0
    #: free space for hooks (a tracing span, a metrics timer) to pass state from start to end
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def queue_wait_ms(self) -> int:
        return max(0, self.start_ms - self.enqueue_ms)


_current: ContextVar[JobContext | None] = ContextVar("asyncq_current_job", default=None)


def current_job() -> JobContext:
    """The job the calling task is running for; raises outside a task."""
    ctx = _current.get()
    if ctx is None:
        raise AsyncqError("current_job() is only available inside a task run by an asyncq worker")
    return ctx


def set_current(ctx: JobContext | None) -> Any:
    return _current.set(ctx)


def reset_current(token: Any) -> None:
    _current.reset(token)


#: threads for plain ``def`` bodies outside a worker (and before one sets its own): anyio's default size
DEFAULT_THREADS = 40
_default_limiter = anyio.CapacityLimiter(DEFAULT_THREADS)
_limiter: ContextVar[anyio.CapacityLimiter | None] = ContextVar("asyncq_thread_limiter", default=None)


def thread_limiter() -> anyio.CapacityLimiter:
    """The limiter for plain ``def`` bodies: the running worker's (sized by its ``threads`` setting), so that
    asyncq tasks and Celery-style tasks share one pool; outside a worker, a process-wide one of 40."""
    return _limiter.get() or _default_limiter


def set_thread_limiter(limiter: anyio.CapacityLimiter | None) -> Any:
    return _limiter.set(limiter)


def reset_thread_limiter(token: Any) -> None:
    _limiter.reset(token)
