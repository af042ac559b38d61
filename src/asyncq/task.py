"""A task: a function plus the options that say where and how its jobs run.

``@app.task`` returns a Task. Calling the Task runs the function here and now (handy in tests); ``enqueue``
sends a job to Redis. Options are checked when the decorator runs, so a typo fails at import, not at 3 a.m.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from asyncq.exceptions import ConfigurationError
from asyncq.flow import FlowLimits, build_limits
from asyncq.keys import DEFAULT_PRIORITY, check_priority, check_queue_name, check_tenant
from asyncq.retry import NO_RETRY, RetryPolicy

if TYPE_CHECKING:
    from asyncq.app import App
    from asyncq.job import Job

P = ParamSpec("P")
R = TypeVar("R")

TASK_OPTIONS = ("keep_result", "max_concurrency", "max_tries", "name", "priority", "queue", "rate_limit", "retry",
                "tenant_concurrency", "tenant_from", "tenant_rate_limit", "timeout", "unique")
CALL_OPTIONS = ("at", "delay", "headers", "job_id", "priority", "queue", "tenant")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """The options of one task; ``None`` means "the App's default"."""

    name: str
    queue: str
    priority: int = DEFAULT_PRIORITY
    timeout: float | None = None
    max_tries: int | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    keep_result: float | None = None
    unique: bool = False
    #: the keyword argument whose value is the job's tenant when the call gives none (fair share)
    tenant_from: str | None = None
    #: global limits decided in the claim script (asyncq.flow)
    limits: FlowLimits = field(default_factory=FlowLimits)


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{what} must be a number of seconds >= 0 or a timedelta, got {value!r}")
    return float(value)


def build_options(fn: Callable[..., Any], default_queue: str, given: dict[str, Any]) -> TaskOptions:
    unknown = sorted(set(given) - set(TASK_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"@app.task got unknown option(s) {', '.join(unknown)} for {fn.__qualname__}; "
            f"known options: {', '.join(TASK_OPTIONS)}"
        )
    name = given.get("name") or f"{fn.__module__}.{fn.__qualname__}"
    if not isinstance(name, str) or ("<locals>" in name and "name" not in given):
        raise ConfigurationError(
            f"task {fn.__qualname__} is defined inside a function; give it an explicit name=... "
            "so workers in other processes can find it"
        )
    retry = given.get("retry", RetryPolicy())
    if retry is False:
        retry = NO_RETRY
    elif isinstance(retry, dict):
        retry = RetryPolicy(**retry)
    elif not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, a dict of its fields or False, got {retry!r}")
    max_tries = given.get("max_tries")
    if max_tries is not None and (not isinstance(max_tries, int) or max_tries < 1):
        raise ConfigurationError(f"max_tries must be an int >= 1 (1 = no retry), got {max_tries!r}")
    unique = given.get("unique", False)
    if not isinstance(unique, bool):
        raise ConfigurationError(f"unique must be True or False, got {unique!r}")
    tenant_from = given.get("tenant_from")
    if tenant_from is not None and (not isinstance(tenant_from, str) or not tenant_from.isidentifier()):
        raise ConfigurationError(f"tenant_from must name a keyword argument of the task, got {tenant_from!r}")
    return TaskOptions(
        name=name,
        queue=check_queue_name(given.get("queue") or default_queue),
        priority=check_priority(given.get("priority", DEFAULT_PRIORITY)),
        timeout=_seconds(given.get("timeout"), "timeout"),
        max_tries=max_tries,
        retry=retry,
        keep_result=_seconds(given.get("keep_result"), "keep_result"),
        unique=unique,
        tenant_from=tenant_from,
        limits=build_limits(given, name),
    )


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call choices that override the task's own (all optional)."""

    job_id: str | None = None
    queue: str | None = None
    priority: int | None = None
    delay: float | None = None
    at: datetime | None = None
    headers: dict[str, Any] | None = None
    tenant: str | None = None

    @classmethod
    def build(cls, given: dict[str, Any]) -> CallOptions:
        unknown = sorted(set(given) - set(CALL_OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"unknown enqueue option(s) {', '.join(unknown)}; known: {', '.join(CALL_OPTIONS)}"
            )
        if given.get("delay") is not None and given.get("at") is not None:
            raise ConfigurationError("give either delay= (seconds or timedelta) or at= (a datetime), not both")
        at = given.get("at")
        if at is not None and not isinstance(at, datetime):
            raise ConfigurationError(f"at= must be a datetime, got {at!r}")
        job_id = given.get("job_id")
        if job_id is not None and (not isinstance(job_id, str) or not job_id):
            raise ConfigurationError(f"job_id must be a non-empty string, got {job_id!r}")
        queue = given.get("queue")
        priority = given.get("priority")
        headers = given.get("headers")
        if headers is not None and not isinstance(headers, dict):
            raise ConfigurationError(f"headers must be a dict, got {headers!r}")
        tenant = given.get("tenant")
        return cls(
            job_id=job_id,
            queue=None if queue is None else check_queue_name(queue),
            priority=None if priority is None else check_priority(priority),
            delay=_seconds(given.get("delay"), "delay"),
            at=at,
            headers=headers,
            tenant=None if tenant is None else check_tenant(tenant),
        )


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to enqueue: ``task.s(*args, **kwargs).set(delay=5)``, for ``app.enqueue_many``."""

    task_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: CallOptions = CallOptions()

    def set(self, **options: Any) -> JobSpec:
        merged = {k: getattr(self.options, k) for k in CALL_OPTIONS if getattr(self.options, k) is not None}
        merged.update(options)
        return replace(self, options=CallOptions.build(merged))


class Task(Generic[P, R]):
    """A registered function. ``await task.enqueue(...)`` queues a job; ``task(...)`` calls it directly."""

    def __init__(self, app: App, fn: Callable[P, R] | Callable[P, Awaitable[R]], options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", options.name)
        self.__wrapped__ = fn

    @property
    def name(self) -> str:
        return self.options.name

    def __repr__(self) -> str:
        return f"<asyncq task {self.name} queue={self.options.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.fn(*args, **kwargs)

    def s(self, *args: P.args, **kwargs: P.kwargs) -> JobSpec:
        """A job description for ``app.enqueue_many``; ``.set(queue=..., delay=...)`` adds per-call options."""
        return JobSpec(self.name, tuple(args), dict(kwargs))

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Queue a job with these arguments and the task's options; returns its Job handle."""
        jobs = await self.app.enqueue_many([JobSpec(self.name, tuple(args), dict(kwargs))])
        return jobs[0]

    async def enqueue_with(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Job:
        """Queue a job with per-call options: job_id, queue, priority, delay (s or timedelta), at (datetime),
        tenant (its share of the queue: workers take jobs round-robin across tenants)."""
        spec = JobSpec(self.name, tuple(args), dict(kwargs or {}), CallOptions.build(options))
        jobs = await self.app.enqueue_many([spec])
        return jobs[0]

    def unique_id(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The job id of a ``unique=True`` task: the same arguments give the same id, so duplicates fold."""
        body = self.app.serializer.dumps([list(args), kwargs])
        return f"{self.name}:{hashlib.sha256(body).hexdigest()[:32]}"
