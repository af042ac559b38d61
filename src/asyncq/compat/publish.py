"""Turning an ``apply_async`` call into an asyncq job, with Celery's option rules and precedence.

The Celery request fields a worker needs (retries, eta, expires, links, chain, chord, time limits, parent and
root ids, user headers) travel in the job's headers under ``"celery"``; args and kwargs stay arq's ``a`` and
``k``, so a Celery task's job is an ordinary asyncq job to every other tool.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncq.compat import signals
from asyncq.compat._state import CeleryApp
from asyncq.compat.config import seconds
from asyncq.compat.exceptions import ImproperlyConfigured
from asyncq.compat.request import current_request
from asyncq.compat.routes import route
from asyncq.keys import MAX_PRIORITY, check_tenant
from asyncq.task import CallOptions, JobSpec

#: every apply_async option asyncq understands; anything else raises
OPTIONS = frozenset({
    "countdown", "eta", "expires", "task_id", "queue", "routing_key", "exchange", "priority", "link", "link_error",
    "headers", "ignore_result", "time_limit", "soft_time_limit", "shadow", "retry", "retry_policy", "serializer",
    "producer", "connection", "publisher", "add_to_parent", "group_id", "group_index", "root_id", "parent_id",
    "chain", "chord", "reply_to", "declare", "compression", "immutable", "subtask_type", "chord_error",
    "chain_error",  # asyncq.compat: an earlier step of the chain failed; fail without running, no errbacks
    "app_id", "argsrepr", "kwargsrepr",  # Celery's message properties (how a monitor shows the call)
    "tenant",  # asyncq: the job's tenant for fair share (docs/guide.md)
})
#: accepted and not needed: publishing never retries silently (enqueue raises BrokerUnavailable instead),
#: and connections, producers and exchanges are asyncq's business
IGNORED = frozenset({"retry", "retry_policy", "producer", "connection", "publisher", "add_to_parent", "reply_to",
                     "declare", "immutable", "subtask_type", "compression", "argsrepr", "kwargsrepr"})


@dataclass(frozen=True, slots=True)
class Prepared:
    spec: JobSpec
    task_id: str
    queue: str
    ignore_result: bool
    publish_headers: dict[str, Any]
    body: tuple[Any, ...]


def _when(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float | timedelta) and not isinstance(value, bool):
        return datetime.now(UTC) + timedelta(seconds=seconds(value) or 0)
    raise TypeError(f"{what} must be a datetime or a number of seconds, got {value!r}")


def check_arguments(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Celery's ``typing=True``: a call that does not fit the signature fails here, not in the worker."""
    fn = getattr(task, "run", None)
    if fn is None or not getattr(task, "typing", True):
        return
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{task.name}{sig}: {exc}") from None


def prepare(app: CeleryApp, name: str, args: Any, kwargs: Any, options: dict[str, Any]) -> Prepared:
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise TypeError(f"apply_async() got unknown option(s) {', '.join(unknown)} for {name}; "
                        f"known: {', '.join(sorted(OPTIONS))}")
    args = tuple(args or ())
    if not isinstance(kwargs or {}, Mapping):
        raise TypeError(f"kwargs must be a mapping, got {type(kwargs).__name__}")
    kwargs = dict(kwargs or {})
    task = app.tasks.get(name)
    if task is not None and not (options.get("chord_error") or options.get("chain_error")):
        check_arguments(task, args, kwargs)  # (a call sent to fail, as a chord's body after its header failed,
        # never runs: it may lack the argument the failed step would have given it)
    exchange = options.get("exchange")
    if getattr(exchange, "name", exchange) not in (None, "", "celery"):
        raise ImproperlyConfigured(f"exchange={exchange!r}: asyncq routes by queue only; use queue=...")
    serializer = options.get("serializer") or getattr(task, "serializer", None)
    if serializer is not None and serializer != app.conf.task_serializer:
        raise ImproperlyConfigured(
            f"serializer={serializer!r} differs from task_serializer={app.conf.task_serializer!r}: asyncq workers "
            "decode one format; set task_serializer for the whole app"
        )

    routed = route(app.conf.task_routes, name, args, kwargs, options, task=task)
    queue = _queue(app, options, task, routed)
    priority = options.get("priority")
    if priority is None:
        priority = getattr(task, "priority", None)
    if priority is None:
        priority = routed.get("priority", app.conf.task_default_priority)

    countdown = options.get("countdown")
    eta = _when(countdown, "countdown") if countdown else _when(options.get("eta"), "eta")  # countdown wins
    expires = _when(options["expires"] if "expires" in options else getattr(task, "expires", None), "expires")
    hard = options["time_limit"] if "time_limit" in options else getattr(task, "time_limit", None)
    soft = options["soft_time_limit"] if "soft_time_limit" in options else getattr(task, "soft_time_limit", None)
    if hard is None and task is None:
        hard = app.conf.task_time_limit
    if soft is not None and hard is not None and soft > hard:
        raise ValueError(f"soft_time_limit must be less than or equal to time_limit "
                         f"(soft_time_limit={soft}, time_limit={hard})")
    ignore_result = options.get("ignore_result", getattr(task, "ignore_result", None))
    if ignore_result is None:
        ignore_result = app.conf.task_ignore_result
    ignore_result = bool(ignore_result)

    task_id = task_id_for(app, queue, options.get("task_id"))
    parent = current_request.get()
    parent_id = options.get("parent_id") or (parent.id if parent is not None and not parent.called_directly else None)
    root_id = options.get("root_id") or ((parent.root_id or parent.id) if parent_id and parent else task_id)
    celery: dict[str, Any] = {
        "eta": eta.isoformat() if eta else None,
        "expires": expires.isoformat() if expires else None,
        "root_id": root_id,
        "parent_id": parent_id,
        "group": options.get("group_id"),
        "group_index": options.get("group_index"),
        "callbacks": _sig_list(options.get("link")),
        "errbacks": _sig_list(options.get("link_error")),
        "chain": options.get("chain") or None,
        "chord": options.get("chord"),
        "chord_error": options.get("chord_error"),
        "chain_error": options.get("chain_error"),
        "timelimit": [hard, soft] if hard is not None or soft is not None else None,
        "ignore_result": ignore_result or None,
        "shadow": options.get("shadow"),
        "headers": dict(options["headers"]) if options.get("headers") else None,
        "priority": priority,
        "origin": app.origin,
        "reply": getattr(parent, "reply", None),  # a Celery producer may wait on this child too
        # worker_deduplicate_successful_tasks set in the sender's app: the worker honours it for this task
        "dedup": True if app.conf.get("worker_deduplicate_successful_tasks") else None,
        # Celery's message properties, as self.request.properties shows them
        "properties": {k: v for k, v in (("app_id", options.get("app_id")), ("correlation_id", task_id),
                                          ("priority", priority)) if v is not None},
    }
    celery = {k: v for k, v in celery.items() if v is not None}
    asyncq_priority = None if priority is None else MAX_PRIORITY - max(0, min(MAX_PRIORITY, int(priority)))
    spec = JobSpec(name, args, kwargs, CallOptions(
        job_id=task_id, queue=queue, priority=asyncq_priority, at=eta, headers={"celery": celery},
        tenant=None if options.get("tenant") is None else check_tenant(str(options["tenant"])),  # fair share
    ))
    publish_headers = {"lang": "py", "task": name, "id": task_id, **celery, **(options.get("headers") or {})}
    return Prepared(spec, task_id, queue, ignore_result, publish_headers, (list(args), kwargs, {
        "callbacks": celery.get("callbacks"), "errbacks": celery.get("errbacks"),
        "chain": celery.get("chain"), "chord": celery.get("chord"),
    }))


def _queue(app: CeleryApp, options: dict[str, Any], task: Any, routed: dict[str, Any]) -> str:
    queue = (options.get("queue") or options.get("routing_key") or getattr(task, "queue", None)
             or routed.get("queue") or app.conf.task_default_queue)
    if not isinstance(queue, str):
        queue = getattr(queue, "name", None) or str(queue)
    return str(queue)


def task_id_for(app: CeleryApp, queue: str, task_id: str | None = None) -> str:
    """The Celery task id that is also the asyncq job's id: ``task_id`` (a new uuid if None) as it is on one
    Redis; on Redis Cluster tagged with its shard (``App.job_id_for``), so the AsyncResult finds the job."""
    return app.asyncq_app.job_id_for(queue, task_id or str(uuid.uuid4()))


def new_task_id(app: CeleryApp, name: str, args: Any, kwargs: Any, options: dict[str, Any],
                task_id: str | None = None) -> str:
    """The id a canvas freezes a call with before sending it (the same id ``prepare`` will keep)."""
    task = app.tasks.get(name)
    routed = route(app.conf.task_routes, name, tuple(args or ()), dict(kwargs or {}), options, task=task)
    return task_id_for(app, _queue(app, options, task, routed), task_id)


def _sig_list(value: Any) -> list[dict[str, Any]] | None:
    if not value:
        return None
    items = value if isinstance(value, list | tuple) else [value]
    return [dict(s) for s in items]


def before_publish(p: Prepared) -> None:
    """Send ``before_task_publish``; headers a receiver adds (a trace context, say) travel with the job."""
    before = dict(p.publish_headers)
    signals.before_task_publish.send(
        sender=p.spec.task_name, body=p.body, exchange="", routing_key=p.queue, headers=p.publish_headers,
        properties={"correlation_id": p.task_id, "priority": p.publish_headers.get("priority")},
        declare=[], retry_policy=None,
    )
    added = {k: v for k, v in p.publish_headers.items() if k not in before or before[k] != v}
    if added and p.spec.options.headers is not None:
        celery = p.spec.options.headers["celery"]
        celery["headers"] = {**celery.get("headers", {}), **added}


def after_publish(p: Prepared) -> None:
    signals.after_task_publish.send(
        sender=p.spec.task_name, body=p.body, exchange="", routing_key=p.queue, headers=p.publish_headers,
    )
