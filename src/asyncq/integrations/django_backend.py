"""``AsyncqBackend``: asyncq as a Django task backend (``django.tasks`` on Django 6, the ``django-tasks`` backport
on Django 4.2-5.x).

    TASKS = {
        "default": {
            "BACKEND": "asyncq.integrations.django.AsyncqBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"redis_url": "redis://localhost:6379/0"},
        }
    }

and run ``asyncq worker --django`` beside the web server (``asyncq.integrations.django_worker``).

A Django task is enqueued as an asyncq job whose function is the task's import path (``task.module_path``) and
whose id is the ``TaskResult.id``. Options (``OPTIONS``; unknown keys are a system check error):

- ``redis_url``: the Redis (default ``ASYNCQ_REDIS_URL``, else redis://localhost:6379/0);
- ``namespace``: put ``<namespace>:`` in front of every key (default ``ASYNCQ_NAMESPACE``, else none: arq's
  layout), so this backend and another app share one Redis database without sharing queues;
- ``enqueue_on_commit`` (default True): ``enqueue()`` inside ``transaction.atomic()`` sends the job when the
  transaction commits and never if it rolls back (at once in autocommit), as Django's documentation
  recommends for tasks that read what the transaction wrote. The ``TaskResult`` and its id are returned at once;
  ``get_result`` raises ``TaskResultDoesNotExist`` until the commit. ``aenqueue()`` sends at once (async code
  has no open transaction: Django runs atomic blocks in sync code);
- ``database`` (default ``"default"``): the connection whose transaction ``enqueue_on_commit`` follows;
- ``task_modules``: modules to import, beyond each installed app's ``tasks`` module, for the worker to find
  tasks in;
- ``max_tries`` (default 1: a Django task that raises is FAILED, as with Django's own backends), ``timeout``
  (seconds, default 300), ``keep_result`` (seconds, default 86400).

Priorities: Django's -100..100 (default 0) map onto asyncq's lanes 0..9 (default 5), keeping their order and
the default in the middle: 0 -> 5; 1..25 -> 6, 26..50 -> 7, 51..75 -> 8, 76..100 -> 9; -1..-20 -> 4,
-21..-40 -> 3, -41..-60 -> 2, -61..-80 -> 1, -81..-100 -> 0. A worker claims lane 9 first. Priorities that
share a lane run in due order.

Arguments and return values must be JSON (Django's rule): ``enqueue`` raises ``TypeError`` naming the argument
that is not (pass a model's id, not the instance).
"""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from django.conf import settings as django_settings
from django.core import checks
from django.db import transaction
from django.utils.module_loading import import_string
from redis.connection import parse_url

from asyncq.app import App
from asyncq.exceptions import AsyncqError, ConfigurationError
from asyncq.integrations import _tasks_api as api
from asyncq.job import JobInfo, JobStatus
from asyncq.keys import check_queue_name
from asyncq.task import JobSpec

OPTION_NAMES = ("database", "enqueue_on_commit", "keep_result", "max_tries", "namespace", "redis_url",
                "task_modules", "timeout")
DEFAULTS: dict[str, Any] = {"database": "default", "enqueue_on_commit": True, "keep_result": 86400.0,
                            "max_tries": 1, "namespace": None, "redis_url": None, "task_modules": (),
                            "timeout": 300.0}

_STATUS = {
    JobStatus.deferred: "READY",
    JobStatus.queued: "READY",
    JobStatus.in_progress: "RUNNING",
    JobStatus.complete: "SUCCESSFUL",
    JobStatus.failed: "FAILED",
    JobStatus.aborted: "FAILED",
    JobStatus.dead: "FAILED",
}


def lane_for(priority: int) -> int:
    """asyncq's lane (0-9) for a Django priority (-100..100); see the module docstring."""
    if priority > 0:
        return 5 + min(4, math.ceil(priority * 4 / 100))
    if priority < 0:
        return 5 - min(5, math.ceil(-priority * 5 / 100))
    return 5


def check_json(value: Any, where: str) -> None:
    """Raise ``TypeError`` naming the first part of ``value`` that JSON cannot carry."""
    if value is None or isinstance(value, str | bool | int | float):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has the key {k!r} ({type(k).__name__}); JSON object keys are strings")
            check_json(v, f"{where}[{k!r}]")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_json(v, f"{where}[{i}]")
        return
    hint = " (pass its pk and load it in the task)" if hasattr(value, "_meta") else ""
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which is not JSON; Django's tasks "
        f"take JSON-serialisable arguments only (str, int, float, bool, None, lists, dicts with str keys){hint}"
    )


class AsyncqBackend(api.BaseTaskBackend):  # type: ignore[misc]
    """The ``django.tasks`` backend contract on asyncq: defer, async tasks, priorities, results."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.settings: dict[str, Any] = {**DEFAULTS, **self.options}
        self._app: App | None = None

    # --- configuration -----------------------------------------------------------------------------------
    @property
    def app(self) -> App:
        """The asyncq App this backend enqueues with (JSON serializer; created on first use, never connects
        by itself)."""
        if self._app is None:
            namespace = self.settings["namespace"]  # None: ASYNCQ_NAMESPACE, else none
            given: dict[str, Any] = {} if namespace is None else {"namespace": namespace}
            self._app = App(redis_url=self.settings["redis_url"], serializer="json",
                            keep_result=float(self.settings["keep_result"]), **given)
        return self._app

    def check(self, **kwargs: Any) -> Iterable[Any]:
        yield from super().check(**kwargs)
        unknown = sorted(set(self.options) - set(OPTION_NAMES))
        if unknown:
            yield checks.Error(f"TASKS[{self.alias!r}]['OPTIONS'] has unknown key(s) {', '.join(unknown)}",
                               hint=f"known: {', '.join(OPTION_NAMES)}", id="asyncq.E001")
        for q in sorted(self.queues):
            try:
                check_queue_name(q)
            except ConfigurationError as exc:
                yield checks.Error(f"TASKS[{self.alias!r}]['QUEUES']: {exc}", id="asyncq.E002")
        if not self.queues:
            yield checks.Error(f"TASKS[{self.alias!r}]['QUEUES'] is empty", hint="name the queues, e.g. "
                               "['default']: the worker serves exactly these", id="asyncq.E003")
        try:
            url = self.app.settings.redis_url  # builds the App's settings: a bad option fails here
        except (AsyncqError, TypeError, ValueError) as exc:
            yield checks.Error(f"TASKS[{self.alias!r}]['OPTIONS']: {exc}", id="asyncq.E004")
        else:
            try:
                parse_url(url)  # type: ignore[no-untyped-call]
            except ValueError as exc:
                yield checks.Error(f"TASKS[{self.alias!r}]['OPTIONS']['redis_url']: {exc}", id="asyncq.E004",
                                   hint="e.g. redis://host:6379/0, rediss://... or unix:///path/redis.sock")
        yield from self._check_values()

    def _check_values(self) -> Iterable[Any]:
        where = f"TASKS[{self.alias!r}]['OPTIONS']"
        mt = self.settings["max_tries"]
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            yield checks.Error(f"{where}['max_tries'] must be an int >= 1, got {mt!r}", id="asyncq.E005")
        for name, low in (("timeout", 0.0), ("keep_result", -1.0)):
            value = self.settings[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > low:
                yield checks.Error(f"{where}[{name!r}] must be a number of seconds "
                                   f"{'> 0' if low == 0 else '>= 0'}, got {value!r}", id="asyncq.E006")
        if not isinstance(self.settings["enqueue_on_commit"], bool):
            yield checks.Error(f"{where}['enqueue_on_commit'] must be True or False", id="asyncq.E007")
        elif self.settings["enqueue_on_commit"] and self.settings["database"] not in django_settings.DATABASES:
            yield checks.Error(f"{where}['database'] is {self.settings['database']!r}, which is not in DATABASES",
                               hint="name the connection whose transactions enqueue() follows", id="asyncq.E007")

    # --- enqueue -----------------------------------------------------------------------------------------
    def _prepare(self, task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[JobSpec, Any]:
        self.validate_task(task)
        check_json(list(args), f"the positional arguments of {task.module_path}: args")
        check_json(kwargs, f"the keyword arguments of {task.module_path}: kwargs")
        job_id = uuid.uuid4().hex
        options: dict[str, Any] = {"job_id": job_id, "queue": task.queue_name, "priority": lane_for(task.priority)}
        if task.run_after is not None:
            at = task.run_after
            options["at"] = at if at.tzinfo else at.replace(tzinfo=UTC)
        spec = JobSpec(task.module_path, tuple(args), dict(kwargs)).set(**options)
        result = api.TaskResult(
            task=task, id=job_id, status=api.TaskResultStatus.READY, enqueued_at=None, started_at=None,
            finished_at=None, last_attempted_at=None, args=list(args), kwargs=dict(kwargs), backend=self.alias,
            errors=[], worker_ids=[],
        )
        return spec, result

    def _sent(self, result: Any) -> None:
        from django.utils import timezone

        object.__setattr__(result, "enqueued_at", timezone.now())
        api.task_enqueued.send(type(self), task_result=result)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        spec, result = self._prepare(task, args, kwargs)
        app = self.app
        app.new_job(spec, 0)  # serialize now: a bad argument fails here, not in the commit hook

        def send() -> None:
            app.enqueue_many_sync([spec])
            self._sent(result)

        if self.settings["enqueue_on_commit"]:
            transaction.on_commit(send, using=self.settings["database"])
        else:
            send()
        return result

    async def aenqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        spec, result = self._prepare(task, args, kwargs)
        await self.app.enqueue_many([spec])
        self._sent(result)
        return result

    # --- results -----------------------------------------------------------------------------------------
    async def aget_result(self, result_id: str) -> Any:
        return self.to_result(await self.app.job(result_id).info())

    def get_result(self, result_id: str) -> Any:
        outer = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
        if outer is not None and outer.is_running():  # inside sync_to_async: ask on the caller's event loop
            return async_to_sync(self.aget_result)(result_id)
        return asyncio.run(self._get_with_own_connection(result_id))  # plain sync code: a short loop of its own

    async def _get_with_own_connection(self, result_id: str) -> Any:
        twin = App(settings=self.app.settings, serializer=self.app.serializer)
        async with twin:
            return self.to_result(await twin.job(result_id).info())

    def to_result(self, info: JobInfo) -> Any:
        """Django's ``TaskResult`` for asyncq's view of a job."""
        if info.status is JobStatus.not_found or not info.function:
            raise api.TaskResultDoesNotExist(
                f"no task result {info.job_id!r}: never enqueued (or its transaction has not committed, or rolled "
                "back), or its result expired (OPTIONS['keep_result'])"
            )
        task = import_string(info.function)
        if not isinstance(task, api.Task):
            raise api.TaskResultDoesNotExist(f"job {info.job_id} runs {info.function}, which is not a Django task")
        if info.queue and info.queue != task.queue_name:
            task = task.using(queue_name=info.queue)
        errors = []
        if info.error:
            kind = info.error.partition(": ")[0]
            errors.append(api.TaskError(exception_class_path=kind if "." in kind else f"builtins.{kind}",
                                        traceback=info.traceback or info.error))
        result = api.TaskResult(
            task=task, id=info.job_id, status=api.TaskResultStatus[_STATUS[info.status]],
            enqueued_at=info.enqueued_at, started_at=info.started_at, finished_at=info.finished_at,
            last_attempted_at=info.started_at, args=list(info.args), kwargs=dict(info.kwargs or {}),
            backend=self.alias, errors=errors, worker_ids=[info.worker] if info.worker else [],
        )
        if info.status is JobStatus.complete:
            object.__setattr__(result, "_return_value", info.result)
        return result


def asyncq_backend(alias: str | None = None) -> AsyncqBackend:
    """The ``AsyncqBackend`` of ``settings.TASKS`` named ``alias``; without one, ``ASYNCQ_DJANGO_BACKEND``, else
    the only asyncq backend there (the worker and the dashboard view serve exactly one)."""
    alias = alias or os.environ.get("ASYNCQ_DJANGO_BACKEND") or None
    backends = api.task_backends()
    configured = getattr(django_settings, "TASKS", {})
    ours = [a for a in configured if isinstance(backends[a], AsyncqBackend)]
    if alias is None:
        if len(ours) != 1:
            raise ConfigurationError(
                f"settings.TASKS has {len(ours)} asyncq backends ({', '.join(ours)}); name the one to use "
                "(ASYNCQ_DJANGO_BACKEND=ALIAS for the worker, backend=ALIAS for the dashboard view)"
                if ours else "settings.TASKS has no backend 'asyncq.integrations.django.AsyncqBackend'"
            )
        alias = ours[0]
    elif alias not in ours:
        raise ConfigurationError(f"TASKS[{alias!r}] is not an asyncq backend (asyncq backends: {ours})")
    backend: AsyncqBackend = backends[alias]
    return backend


__all__ = ["AsyncqBackend", "asyncq_backend", "check_json", "lane_for"]
