"""The worker side of ``AsyncqBackend``: ``asyncq worker --django`` serves a Django project's ``django.tasks``.

``django_app()`` calls ``django.setup()``, imports every installed app's ``tasks`` module (as Django's admin
autodiscovers ``admin`` modules) plus ``OPTIONS["task_modules"]``, finds the Django ``Task`` objects of the
asyncq backend, and registers each on an asyncq App under its import path (``task.module_path``, the job's
function name). The worker then runs them as it runs any asyncq task:

- a ``def`` task in the worker's thread pool; like Django's request cycle, the thread's database connections
  are checked (``close_old_connections``: closed if unusable or older than ``CONN_MAX_AGE``) before and after
  the task, and its query log is reset; each thread has its own connections, as in a threaded WSGI server;
- an ``async def`` task on the worker's event loop; its ORM calls go through ``sync_to_async`` (Django's async
  ORM does this itself), whose connections are checked the same way before and after the task;
- ``takes_context=True`` tasks get a ``TaskContext`` whose ``task_result`` is the running job's;
- Django's ``task_started`` and ``task_finished`` signals are sent around each run.

The return value must be JSON (Django's rule); a task that returns something else fails with a ``TypeError``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from redis.connection import parse_url

from asyncq.app import App
from asyncq.broker import redact
from asyncq.context import current_job
from asyncq.exceptions import ConfigurationError
from asyncq.integrations import _tasks_api as api


def _fresh_connections() -> None:
    """What Django does at request_started / request_finished for the calling thread's connections."""
    from django.db import close_old_connections, reset_queries

    reset_queries()
    close_old_connections()


def _context_result(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], backend: str) -> Any:
    ctx = current_job()
    from asyncq.codec import ms_to_datetime

    return api.TaskResult(
        task=task, id=ctx.job_id, status=api.TaskResultStatus.RUNNING, enqueued_at=ms_to_datetime(ctx.enqueue_ms),
        started_at=ms_to_datetime(ctx.start_ms), finished_at=None, last_attempted_at=ms_to_datetime(ctx.start_ms),
        args=list(args), kwargs=dict(kwargs), backend=backend, errors=[], worker_ids=[ctx.worker_id] * ctx.job_try,
    )


def _finished(sender: type, result: Any, exc: BaseException | None, value: Any) -> None:
    import traceback

    from django.utils import timezone

    object.__setattr__(result, "finished_at", timezone.now())
    if exc is None:
        object.__setattr__(result, "status", api.TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
    else:
        object.__setattr__(result, "status", api.TaskResultStatus.FAILED)
        result.errors.append(api.TaskError(exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
                                           traceback="".join(traceback.format_exception(exc))))
    api.task_finished.send(sender, task_result=result)


def runner(task: Any, backend: Any) -> Callable[..., Any]:
    """The asyncq task body for Django ``task``: ``def`` for a sync task (the worker runs it in a thread),
    ``async def`` for a coroutine function (run on the worker's loop)."""
    sender = type(backend)

    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
        result = _context_result(task, args, kwargs, backend.alias)
        api.task_started.send(sender, task_result=result)
        lead = (api.TaskContext(task_result=result),) if task.takes_context else ()
        return result, lead

    if inspect.iscoroutinefunction(task.func):
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            await sync_to_async(_fresh_connections)()
            result, lead = begin(args, kwargs)
            try:
                value = api.normalize_json(await task.func(*lead, *args, **kwargs))
            except BaseException as exc:
                _finished(sender, result, exc, None)
                raise
            finally:
                await sync_to_async(_fresh_connections)()
            _finished(sender, result, None, value)
            return value

        return _like(run_async, task)

    def run_sync(*args: Any, **kwargs: Any) -> Any:
        _fresh_connections()
        result, lead = begin(args, kwargs)
        try:
            value = api.normalize_json(task.func(*lead, *args, **kwargs))
        except BaseException as exc:
            _finished(sender, result, exc, None)
            raise
        finally:
            _fresh_connections()
        _finished(sender, result, None, value)
        return value

    return _like(run_sync, task)


def _like(wrapper: Callable[..., Any], task: Any) -> Callable[..., Any]:
    """``wrapper`` with the task's name, docs and signature (minus ``context``: the worker checks a job's
    arguments against it before running it)."""
    functools.update_wrapper(wrapper, task.func)
    sig = inspect.signature(task.func)
    params = list(sig.parameters.values())[1:] if task.takes_context else list(sig.parameters.values())
    del wrapper.__wrapped__  # type: ignore[attr-defined]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


def discover(extra_modules: tuple[str, ...] = ()) -> list[Any]:
    """Import every installed app's ``tasks`` module and ``extra_modules``; return every Django ``Task``
    found in a loaded module (module-level names only, as Django requires of task functions)."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("tasks")
    for name in extra_modules:
        importlib.import_module(name)
    found: dict[str, Any] = {}
    for module in list(sys.modules.values()):
        for value in list(getattr(module, "__dict__", {}).values()):
            if issubclass(type(value), api.Task):  # type(), not isinstance: a LazyObject would set itself up
                found.setdefault(value.module_path, value)
    return list(found.values())


def add_django_tasks(app: App, alias: str | None = None) -> tuple[str, ...]:
    """Register the project's ``django.tasks`` of the ``AsyncqBackend`` named ``alias`` on ``app`` (any asyncq
    App, e.g. an ``asyncq.compat.Celery`` app's ``asyncq_app``), so one worker serves both; return the
    backend's queues ("default" first), which the worker must serve besides the App's own.

    Calls ``django.setup()`` first unless Django is set up already. ``alias``: default ``ASYNCQ_DJANGO_BACKEND``,
    else the only asyncq backend in ``TASKS``. Raises ``ConfigurationError`` if ``app`` reads another Redis than
    the backend writes to, or cannot read the backend's JSON payloads (its serializer is not json).
    """
    import django
    from django.apps import apps

    from asyncq.integrations.django_backend import asyncq_backend

    if not apps.ready:
        django.setup()
    backend = asyncq_backend(alias)
    if app.serializer.name != "json":
        raise ConfigurationError(
            f"this App's serializer is {app.serializer.name!r}, but django.tasks jobs are JSON: one worker can serve "
            "both only if the App uses serializer='json' (Celery: task_serializer='json'); else run a second "
            "worker with `asyncq worker --django`"
        )
    if _redis_target(app.settings.redis_url) != _redis_target(backend.app.settings.redis_url):
        raise ConfigurationError(
            f"TASKS[{backend.alias!r}] enqueues on {redact(backend.app.settings.redis_url)} but this App reads "
            f"{redact(app.settings.redis_url)}: give both the same Redis (OPTIONS['redis_url'] / --redis-url), "
            "or run a second worker with `asyncq worker --django`"
        )
    for task in discover(tuple(backend.options.get("task_modules", ()))):
        if task.backend != backend.alias:
            continue
        app.task(name=task.module_path, queue=task.queue_name, max_tries=backend.settings["max_tries"],
                 timeout=backend.settings["timeout"],
                 keep_result=float(backend.settings["keep_result"]))(runner(task, backend))
    return tuple(sorted(backend.queues, key=lambda q: (q != "default", q)))


def _redis_target(url: str) -> tuple[Any, ...]:
    """What decides which Redis database a URL reaches (so "redis://h:6379" and "redis://h:6379/0" match)."""
    parts = parse_url(url)  # type: ignore[no-untyped-call]
    return (parts.get("host", "localhost"), int(parts.get("port", 6379)), parts.get("path"),
            int(parts.get("db", 0) or 0), parts.get("username"), parts.get("connection_class"))


def django_app(alias: str | None = None, redis_url: str | None = None) -> tuple[App, tuple[str, ...]]:
    """``django.setup()``, then an asyncq App with the Django tasks of the ``AsyncqBackend`` named ``alias``
    (default: ``ASYNCQ_DJANGO_BACKEND``, else the only one in ``TASKS``), and the queues to serve (``QUEUES``,
    "default" first)."""
    import django

    from asyncq.integrations.django_backend import asyncq_backend

    django.setup()
    backend = asyncq_backend(alias)
    app = App(settings=backend.app.settings, serializer="json", redis_url=redis_url)
    return app, add_django_tasks(app, backend.alias)


__all__ = ["add_django_tasks", "discover", "django_app", "runner"]
