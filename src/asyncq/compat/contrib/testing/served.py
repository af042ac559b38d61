"""The app a test worker process serves (``asyncq worker asyncq.compat.contrib.testing.served:app``).

``start_worker`` describes the test's app in ``$ASYNCQ_TESTING_APP`` (name, JSON-able config, task modules,
class-based tasks, whether ``celery`` is aliased to asyncq.compat); this module rebuilds it. Not for use
outside that process: reading ``app`` without the variable is an error that says so.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

import asyncq.compat
from asyncq.compat.app import Celery
from asyncq.compat.contrib.testing import tasks as _tasks  # noqa: F401 - celery.ping, answered by this worker


def _import_task_modules(modules: Any) -> None:
    """The modules the test's app got its tasks from, best effort: one that cannot be imported here (a test
    module with side effects, say) only means its tasks are not served, which the log says."""
    for module in modules:
        if module not in sys.modules:
            try:
                importlib.import_module(module)
            except Exception as exc:
                print(f"asyncq test worker: cannot import {module} ({exc!r}); its tasks are not served",
                      file=sys.stderr, flush=True)


def _build() -> Celery:
    raw = os.environ.get("ASYNCQ_TESTING_APP")
    if not raw:
        raise RuntimeError("asyncq.compat.contrib.testing.served is the app of a test worker started by "
                           "start_worker(); it needs $ASYNCQ_TESTING_APP")
    spec: dict[str, Any] = json.loads(raw)
    for module in filter(None, os.environ.get("ASYNCQ_TESTING_PRELOAD", "").split(",")):
        importlib.import_module(module)  # e.g. signal receivers, or an alias of ``celery`` of your own
    if spec.get("alias"):
        # the test process resolves ``celery`` to asyncq.compat: so must the task modules imported here
        install = getattr(asyncq.compat, "install_as_celery", None)
        if install is None:
            raise RuntimeError("the tests alias celery to asyncq.compat but this asyncq has no "
                               "install_as_celery(); preload your alias with $ASYNCQ_TESTING_PRELOAD")
        if not str(getattr(sys.modules.get("celery"), "__name__", "")).startswith("asyncq.compat"):
            install()
    config = dict(spec["config"])
    app = Celery(spec["main"], broker=config.pop("broker_url"), backend=config.pop("result_backend", None))
    app.conf.update(config)
    followed = os.environ.get("ASYNCQ_TESTING_CONFIG")
    if followed:  # later changes of the test's app (the broker stays the one this worker started on)
        app.conf.follow_file(followed, skip=("broker_url", "result_backend"))
    for module in spec.get("includes", ()):
        importlib.import_module(module)
    _import_task_modules(spec.get("task_modules", ()))
    for path in spec.get("class_tasks", ()):
        module, _, qualname = path.partition(":")
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        register = getattr(app, "register_task", None)
        if register is None:
            print(f"asyncq test worker: this Celery app has no register_task(); {path} is not served",
                  file=sys.stderr, flush=True)
            continue
        register(obj)
    return app


def __getattr__(name: str) -> Celery:
    """``app`` is built on first access (what ``asyncq worker ...served:app`` does), so that merely importing
    this module (documentation tools, an import sweep) needs no ``$ASYNCQ_TESTING_APP``."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = _build()
    globals()["app"] = built
    return built
