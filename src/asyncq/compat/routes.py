"""``task_routes``: which queue a task's message goes to, with Celery's forms and precedence.

Forms: a dict of task name or glob -> ``"queue"`` or ``{"queue": "q", ...}``; a list of such dicts and router
functions ``(name, args, kwargs, options, task=None, **kw) -> dict | str | None``; tried in order, first
match wins. Precedence is Celery's: ``apply_async(queue=)`` > ``@task(queue=)`` > ``task_routes`` >
``task_default_queue``.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from asyncq.compat.exceptions import ImproperlyConfigured


def _load(router: Any) -> Any:
    if isinstance(router, str):
        module, _, attr = router.rpartition(".")
        return getattr(importlib.import_module(module), attr)
    return router


def _match_mapping(routes: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    hit = routes.get(name)
    if hit is None:
        for pattern, value in routes.items():
            if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(name, pattern):
                hit = value
                break
    if hit is None:
        return None
    if isinstance(hit, str):
        return {"queue": hit}
    if isinstance(hit, Mapping):
        return dict(hit)
    raise ImproperlyConfigured(f"task_routes[{name!r}] must be a queue name or a dict, got {hit!r}")


def route(
    routes: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any], task: Any = None
) -> dict[str, Any]:
    """The routing options (``queue``, maybe ``priority``) that ``task_routes`` gives this call."""
    if not routes:
        return {}
    entries = routes if isinstance(routes, list | tuple) else [routes]
    for entry in entries:
        entry = _load(entry)
        if isinstance(entry, Mapping):
            hit = _match_mapping(entry, name)
        elif callable(entry):
            fn: Callable[..., Any] = entry
            try:
                result = fn(name, args, kwargs, options, task=task)
            except TypeError:
                result = fn(name, args, kwargs, options)
            hit = {"queue": result} if isinstance(result, str) else (dict(result) if result else None)
        else:
            raise ImproperlyConfigured(f"task_routes entry {entry!r} is neither a dict nor a router function")
        if hit:
            return hit
    return {}
