"""The ``django.tasks`` API of the installed Django: Django 6's own ``django.tasks``, else the ``django-tasks``
backport package (same API, Django 4.2-5.x). Everything the asyncq backend and worker use from it, in one place.

The two differ only in names: Django 6 says ``InvalidTask`` where the backport says ``InvalidTaskError``, and
``normalize_json`` lives in ``django.utils.json`` in Django 6. Values are typed ``Any``: the two packages have
different type stubs (Django's have none), and mypy sees only one of them.
"""

from __future__ import annotations

import importlib
from typing import Any

from asyncq.exceptions import ConfigurationError


def _load() -> tuple[str, Any, Any, Any, Any, Any]:
    try:
        base = importlib.import_module("django.tasks.base")
    except ImportError:
        try:
            base = importlib.import_module("django_tasks.base")
        except ImportError:
            raise ConfigurationError(
                "asyncq's Django task backend needs django.tasks: Django >= 6.0, or on Django 4.2-5.x the "
                "backport (pip install django-tasks)"
            ) from None
        pkg = "django_tasks"
        utils = importlib.import_module("django_tasks.utils")
    else:
        pkg = "django.tasks"
        utils = importlib.import_module("django.utils.json")
    return (pkg, base, importlib.import_module(f"{pkg}.backends.base"), importlib.import_module(f"{pkg}.exceptions"),
            importlib.import_module(f"{pkg}.signals"), utils)


PACKAGE, _base, _backends, _exceptions, _signals, _utils = _load()

Task: Any = _base.Task
TaskResult: Any = _base.TaskResult
TaskError: Any = _base.TaskError
TaskContext: Any = _base.TaskContext
TaskResultStatus: Any = _base.TaskResultStatus
BaseTaskBackend: Any = _backends.BaseTaskBackend
InvalidTask: Any = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
TaskResultDoesNotExist: Any = _exceptions.TaskResultDoesNotExist
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished
normalize_json: Any = _utils.normalize_json
TASK_MIN_PRIORITY: int = _base.TASK_MIN_PRIORITY
TASK_MAX_PRIORITY: int = _base.TASK_MAX_PRIORITY


def task_backends() -> Any:
    """Django's handler of the ``TASKS`` setting (``task_backends[alias]``)."""
    return importlib.import_module(PACKAGE).task_backends
