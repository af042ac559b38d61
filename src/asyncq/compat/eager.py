"""Eager execution: ``Task.apply()`` runs the body in this process, retrying in place as Celery's eager mode
does, with Celery's signals, links and an ``EagerResult``. Apart from the worker-side ``runtime.py`` (which runs
a job inside the asyncq worker) so that ``task.py`` can call it without importing the worker side.

``task`` is a ``compat.task.Task`` (typed ``Any``: task.py imports this module).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from typing import Any

from asyncq.compat import signals, states
from asyncq.compat.canvas import Signature
from asyncq.compat.exceptions import Retry
from asyncq.compat.request import Context, current_request
from asyncq.compat.result import EagerResult
from asyncq.compat.retry import ExceptionInfo, autoretries


def run_eagerly(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], task_id: str, *, link: Any = None,
                link_error: Any = None, throw: bool = False) -> EagerResult:
    """``apply()``: run the body in this process, retrying in place as Celery's eager mode does."""
    retries = 0
    outer = current_request.get()  # applied from inside another task's body: that task is its parent
    nested = outer is not None and not outer.called_directly and bool(outer.id)
    parent_id = outer.id if nested and outer is not None else None
    root_id = (outer.root_id or outer.id) if nested and outer is not None else task_id
    while True:
        request = Context(id=task_id, task=task.name, args=args, kwargs=kwargs, retries=retries, is_eager=True,
                          called_directly=False, root_id=root_id, parent_id=parent_id,
                          delivery_info={"is_eager": True})
        token = current_request.set(request)
        try:
            signals.task_prerun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs)
            value = _run_sync(functools.partial(_eager_body, task, args, kwargs, request))
        except Retry:
            retries += 1
            continue
        except Exception as exc:
            signals.task_failure.send(sender=task, task_id=task_id, exception=exc, args=args, kwargs=kwargs,
                                      traceback=exc.__traceback__, einfo=ExceptionInfo(exc))
            signals.task_postrun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs,
                                      retval=exc, state=states.FAILURE)
            if throw:
                raise
            for errback in _as_list(link_error):
                Signature(dict(errback), app=task.app).apply((task_id,))
            return EagerResult(task_id, exc, states.FAILURE, ExceptionInfo(exc).traceback, app=task.app, name=task.name)
        finally:
            current_request.reset(token)
        signals.task_success.send(sender=task, result=value)
        signals.task_postrun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs,
                                  retval=value, state=states.SUCCESS)
        for callback in _as_list(link):
            Signature(dict(callback), app=task.app).apply((value,))
        return EagerResult(task_id, value, states.SUCCESS, app=task.app, name=task.name)


def _as_list(value: Any) -> list[Any]:
    if not value:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _eager_body(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], request: Context) -> Any:
    try:
        result = task.run(*args, **kwargs)
    except Exception as exc:
        if autoretries(task, exc):
            raise task.retry(exc=exc, countdown=0) from exc
        raise
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _run_sync(fn: Any) -> Any:
    """Run ``fn`` here, or in a helper thread when this thread already runs an event loop (async bodies need
    their own loop, and ``asyncio.run`` refuses to nest)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    out: list[Any] = []
    err: list[BaseException] = []
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            out.append(ctx.run(fn))
        except BaseException as exc:
            err.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]
