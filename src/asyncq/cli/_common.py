"""Shared pieces of the ``asyncq`` command: consoles, the Typer apps, option types and the plumbing that
turns user errors into one red line and an exit code (1 for a runtime problem, 2 for bad input)."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.util
import os
import sys
import traceback
import types
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from redis.exceptions import RedisError
from rich.console import Console

from asyncq.app import App
from asyncq.broker import REDIS_DOWN
from asyncq.exceptions import (
    AsyncqError,
    ConfigurationError,
)
from asyncq.job import JobStatus
from asyncq.redis_url import check as check_redis_url
from asyncq.settings import DEFAULT_REDIS_URL

T = TypeVar("T")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

cli = typer.Typer(
    name="asyncq",
    help="asyncq: an asyncio task queue on Redis. Run a worker, enqueue jobs, inspect queues and dead letters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
dlq_cli = typer.Typer(help="Inspect, retry and purge dead letters (jobs that failed for good).", no_args_is_help=True)
cli.add_typer(dlq_cli, name="dlq")

RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        help=f"Redis URL. Default: $ASYNCQ_REDIS_URL, else the given App's own, else {DEFAULT_REDIS_URL}.",
        show_default=False,
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        help="The App's namespace (its keys' prefix). Default: $ASYNCQ_NAMESPACE, else the given App's own, "
        "else none (arq's layout).",
        show_default=False,
    ),
]
AppPath = Annotated[
    str | None,
    typer.Option("--app", help="module.path:app of your App, for its serializer and settings.", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

STATUS_STYLE = {
    JobStatus.complete: "green",
    JobStatus.failed: "red",
    JobStatus.dead: "red",
    JobStatus.aborted: "yellow",
    JobStatus.in_progress: "cyan",
    JobStatus.queued: "blue",
    JobStatus.deferred: "blue",
    JobStatus.not_found: "red",
}


# --- plumbing ----------------------------------------------------------------------------------------------
def fail(message: str, code: int = 1) -> NoReturn:
    """Print one red line and exit with ``code`` (1: runtime problem, 2: bad input)."""
    err.print(f"error: {message}", style="red", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; turn the errors a user can fix into one red line."""
    return guarded(lambda: asyncio.run(coro))


def guarded(call: Callable[[], T]) -> T:
    """Call ``call``; turn the errors a user can fix into one red line."""
    try:
        return call()
    except ConfigurationError as exc:
        fail(str(exc), 2)
    except AsyncqError as exc:  # BrokerUnavailable, JobNotFound, DeserializationError, ...
        fail(str(exc))
    except REDIS_DOWN as exc:
        fail(f"Redis is unreachable ({exc}); check that it runs and that --redis-url / ASYNCQ_REDIS_URL points at it")
    except RedisError as exc:
        fail(f"Redis refused the command ({exc}); check --redis-url / ASYNCQ_REDIS_URL")
    except KeyboardInterrupt:
        fail("interrupted", 130)


def parse_json(raw: str | None, kind: type[T], what: str, example: str) -> T | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON ({exc}); example: {example}", 2)
    if not isinstance(value, kind):
        fail(f"{what} must be a JSON {'list' if kind is list else 'object'}, got {raw!r}; example: {example}", 2)
    return value


def dumps(value: Any) -> str:
    """JSON for humans and scripts; values JSON cannot carry are shown by their repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif isinstance(value, list):
        value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v for v in value]
    opts = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    return orjson.dumps(value, default=repr, option=opts).decode()


def load_app(path: str) -> App:
    """Import ``module.path:attr`` (attr defaults to ``app``), with the current directory on sys.path."""
    return load_target(path)[0]


def load_target(path: str) -> tuple[App, Any]:
    """The App at ``module.path:attr``, and the object found there (the App, or the asyncq.compat.Celery app
    it runs on: ``asyncq worker --celery-queues`` needs that one)."""
    module_name, _, attr = path.partition(":")
    attr = attr or "app"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".") + attr.split(".")):
        fail(f"{path!r} is not an import path; use module.path:app (e.g. myproject.tasks:app)", 2)
    module = _import_module(module_name, path)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            fail(f"module {module_name!r} has no attribute {attr!r}; point at your App: {module_name}:<name>", 2)
        obj = getattr(obj, part)
    return _as_app(obj, f"{module_name}:{attr}")


def _import_module(module_name: str, path: str) -> Any:
    """Import the user's module from the current directory; its errors become one line (and a traceback)."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # as uvicorn does: `asyncq worker tasks:app` works from the project folder
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            fail(
                f"cannot import {path!r}: there is no module {exc.name!r} (looked in {cwd} and sys.path); "
                "run from your project's folder or install it",
                2,
            )
        traceback.print_exc()
        fail(f"importing {module_name!r} failed: {exc} (traceback above)")
    except Exception as exc:
        traceback.print_exc()
        fail(f"importing {module_name!r} raised {type(exc).__name__}: {exc} (traceback above)")


def _as_app(obj: Any, where: str) -> tuple[App, Any]:
    """The asyncq App behind ``obj`` (an App, or an asyncq.compat.Celery app, which runs on one). Building a
    Celery app's App imports its task modules: their errors are shown as they are, never as a wrong type."""
    if isinstance(obj, App):
        return obj, obj
    compat = sys.modules.get("asyncq.compat.app")
    if compat is not None and isinstance(obj, compat.Celery):
        try:
            return obj.asyncq_app, obj
        except (AsyncqError, ImportError) as exc:
            if not isinstance(exc, ConfigurationError | ValueError):
                traceback.print_exc()
            fail(f"{where}: {exc}", 2 if isinstance(exc, ConfigurationError | ValueError) else 1)
        except Exception as exc:
            traceback.print_exc()
            fail(f"{where}: setting up the Celery app raised {type(exc).__name__}: {exc} (traceback above)")
    kind = type(obj)
    if kind.__name__ == "Celery" and kind.__module__.split(".")[0] == "celery":
        fail(f"{where} is real Celery's app ({kind.__module__}.Celery): change `from celery import Celery` to "
             "`from asyncq.compat import Celery` where it is created, or call asyncq.compat.install_as_celery() at "
             "the top of your project package (asyncq worker -A does that for you)", 2)
    fail(f"{where} is a {kind.__name__}, not an asyncq App (or asyncq.compat.Celery)", 2)


def find_celery_app(spec: str) -> tuple[App, Any]:
    """``asyncq worker -A proj``: Celery's ``-A`` lookup, after ``install_as_celery()`` so the project's
    ``import celery...`` lines get asyncq.compat. ``proj`` may name the app (``proj.celery:app``), a module, or a
    package; in a module: its ``app``, else its ``celery`` attribute, else (a package) ``proj.celery``, else
    the one Celery app among its globals."""
    from asyncq.compat.alias import install_as_celery

    try:
        install_as_celery()
    except ValueError as exc:
        fail(str(exc), 2)
    if ":" in spec:
        return load_target(spec)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `asyncq worker -A proj` from the project folder, as with celery -A
    if not all(part.isidentifier() for part in spec.split(".")):
        fail(f"-A {spec!r} is not a module path; use -A proj, -A proj.celery or -A proj.celery:app", 2)
    return _as_app(_celery_lookup(spec), spec)


def _celery_lookup(spec: str) -> Any:
    from asyncq.compat.app import Celery

    try:
        is_module = importlib.util.find_spec(spec) is not None
    except ModuleNotFoundError:
        is_module = False
    except Exception:  # importing a parent package failed: _import_module shows why
        is_module = True
    if not is_module:  # proj.celery.app: an attribute of a module
        module_name, _, attr = spec.rpartition(".")
        if not module_name:
            _import_module(spec, spec)  # fails with the reason
        sym = getattr(_import_module(module_name, spec), attr, None)
        if sym is None:
            fail(f"-A {spec}: module {module_name!r} has no attribute {attr!r}", 2)
        return sym
    sym = _import_module(spec, spec)
    for name in ("app", "celery"):
        found = getattr(sym, name, None)
        if found is not None and not isinstance(found, types.ModuleType):
            return found
    if hasattr(sym, "__path__") and importlib.util.find_spec(f"{spec}.celery") is not None:
        return _celery_lookup(f"{spec}.celery")
    apps = [v for v in vars(sym).values() if isinstance(v, Celery | App)]
    if apps:
        return apps[0]
    fail(f"-A {spec}: found no Celery app in module {spec!r} (looked for app, celery, {spec}.celery and any "
         "Celery instance); name it: -A module:app", 2)


def django_tasks_configured() -> bool:
    """Whether this is a Django project whose ``TASKS`` setting names asyncq's django.tasks backend (then
    ``asyncq worker -A proj`` serves those tasks too). Django is looked at only if it is in use."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE") or "django.conf" not in sys.modules:
        return False
    settings = sys.modules["django.conf"].settings
    try:
        backends = getattr(settings, "TASKS", None) or {}
    except Exception:  # settings that cannot load: the worker reports that elsewhere
        return False
    return any(str(b.get("BACKEND", "")).endswith("AsyncqBackend") for b in backends.values() if isinstance(b, dict))


def make_app(redis_url: str | None, app_path: str | None = None, namespace: str | None = None) -> App:
    """The user's App (``--app``) or a bare one; ``--redis-url`` and ``--namespace`` win over the App's own."""
    return make_target(redis_url, app_path, namespace=namespace)[0]


def make_target(
    redis_url: str | None, app_path: str | None = None, *, celery: bool = False, namespace: str | None = None
) -> tuple[App, Any]:
    """``make_app``, and the object the App was found as (see ``load_target``); ``celery=True``: ``app_path`` is
    a Celery ``-A`` argument (see ``find_celery_app``)."""
    found: Any = None
    if app_path is None:
        try:
            given: dict[str, Any] = {} if namespace is None else {"namespace": namespace}
            application = App(redis_url=redis_url, **given)
        except ConfigurationError as exc:
            fail(str(exc), 2)
    else:
        application, found = find_celery_app(app_path) if celery else load_target(app_path)
        if redis_url is not None:
            application.settings = dataclasses.replace(application.settings, redis_url=redis_url)
        if namespace is not None:
            try:
                application.settings = dataclasses.replace(application.settings, namespace=namespace)
            except ConfigurationError as exc:
                fail(str(exc), 2)
    try:
        check_redis_url(application.settings.redis_url)  # redis://, rediss://, unix:// or redis+sentinel://
    except ConfigurationError as exc:
        fail(str(exc), 2)
    return application, found


def fmt_compact(value: Any) -> str:
    return orjson.dumps(value, default=repr).decode()


def fmt_when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
