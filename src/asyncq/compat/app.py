"""``Celery``: the app object of the compatibility layer, backed by an asyncq ``App``.

``Celery("proj", broker=..., backend=...)`` keeps Celery's configuration (``app.conf``) and task registry and
builds the asyncq App lazily, on first use, so ``config_from_object`` after the task definitions works as in
Celery. ``asyncq worker proj.celery:app`` runs it. ``current_app`` and ``shared_task`` keep Celery's notion of a
current app because Celery code relies on it; everything else is owned by the app instance.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import socket
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, overload

from asyncq.app import App
from asyncq.compat import django_fixup, pydantic_args, sending, signals, states, store
from asyncq.compat._state import current_app, get_current_app, set_current_app, set_default_app_factory, shared_tasks
from asyncq.compat.backend import RedisBackend
from asyncq.compat.bridge import LoopThread
from asyncq.compat.canvas import Signature
from asyncq.compat.config import Settings, seconds
from asyncq.compat.connection import BrokerConnection
from asyncq.compat.control import Control
from asyncq.compat.exceptions import ImproperlyConfigured, NotRegistered
from asyncq.compat.ratelimit import RateLimiter, parse_rate
from asyncq.compat.request import current_request
from asyncq.compat.result import AsyncResult as _AsyncResult
from asyncq.compat.result import GroupResult as _GroupResult
from asyncq.compat.routes import route
from asyncq.compat.runtime import UNLIMITED_TRIES, call_body, execute
from asyncq.compat.schedules import beat_timezone, not_celery, to_trigger
from asyncq.compat.serialization import CeleryJsonSerializer
from asyncq.compat.signals import Signal
from asyncq.compat.task import Task as _Task
from asyncq.cron import Schedule
from asyncq.hooks import Hooks
from asyncq.redis_url import from_celery

log = logging.getLogger("asyncq.compat")

#: asyncq's fleet-wide flow control on a Celery task (option -> asyncq task option); rate_limit keeps Celery's
#: per-worker meaning, global_rate_limit is the limit across all workers
FLOW_OPTIONS = {"global_rate_limit": "rate_limit", "tenant_rate_limit": "tenant_rate_limit",
                "max_concurrency": "max_concurrency", "tenant_concurrency": "tenant_concurrency",
                "tenant_from": "tenant_from"}

TASK_OPTIONS = frozenset({
    "name", "bind", "base", "max_retries", "default_retry_delay", "autoretry_for", "dont_autoretry_for",
    "retry_kwargs", "retry_backoff", "retry_backoff_max", "retry_jitter", "acks_late", "ignore_result",
    "time_limit", "soft_time_limit", "rate_limit", "queue", "priority", "typing", "serializer", "track_started",
    "expires", "reject_on_worker_lost", "throws", "shared", "pydantic", "trail", "send_events",
    "store_errors_even_if_ignored", "acks_on_failure_or_timeout", *pydantic_args.OPTIONS,
    *FLOW_OPTIONS,  # asyncq's fleet-wide flow control (docs/guide.md); Celery's rate_limit stays per worker
})

class _Lifecycle(Hooks):
    """Celery's worker signals, sent from asyncq's worker hooks."""

    async def on_worker_start(self, worker: Any) -> None:
        signals.worker_ready.send(sender=worker)

    async def on_worker_stop(self, worker: Any) -> None:
        signals.worker_shutdown.send(sender=worker)


class Celery:
    """A Celery-compatible app. ``broker`` must be a redis:// URL; results live in the same Redis."""

    Task: type[_Task] = _Task

    def __init__(self, main: str | None = None, loader: Any = None, backend: str | None = None, *,
                 broker: str | None = None, include: Sequence[str] | None = None, task_cls: Any = None,
                 set_as_current: bool = True, namespace: str | None = None, **conf: Any) -> None:
        self.main = main
        self.conf = Settings()
        #: side-by-side with Celery: True or a compat.router.Router sends each call where the route rules say
        self.asyncq_router: Any = conf.pop("asyncq_router", None)
        if broker is not None:
            conf["broker_url"] = broker
        if backend is not None:
            conf["result_backend"] = backend
        if include:
            conf["include"] = tuple(include)
        self.conf.update(conf)
        if task_cls is not None:
            self.Task = _task_base(task_cls if isinstance(task_cls, type) else _import(task_cls), "task_cls")
        self.tasks: dict[str, _Task] = {}
        self.control = Control(self)
        self.bridge = LoopThread(f"asyncq-celery-{main or 'app'}")
        self.origin = f"{os.getpid()}@{socket.gethostname()}"
        self.on_configure = Signal("on_configure")
        self.on_after_configure = Signal("on_after_configure")
        self.on_after_finalize = Signal("on_after_finalize")
        self.on_after_fork = Signal("on_after_fork")
        #: Celery's bootsteps (``app.steps['worker'].add(Step)``): accepted, not run (asyncq has hooks instead)
        self.steps: defaultdict[str, set[Any]] = defaultdict(set)
        #: Celery's extra command-line options (``app.user_options['worker'].add(...)``): accepted, not read
        self.user_options: defaultdict[str, set[Any]] = defaultdict(set)
        #: functions every ``def`` task's worker thread runs before and after the body (the Django fixup's
        #: connection check); filled when the app is first used
        self.thread_fixups: list[Callable[[], None]] = []
        self._autodiscover: list[tuple[Any, str]] = []
        self._asyncq: App | None = None
        self._periodic: list[tuple[Any, Signature, str | None]] = []
        self._limiters: dict[str, RateLimiter] = {}
        self.bridge.on_stop(self._close_async)
        if set_as_current:
            set_current_app(self)
        for fun, opts in shared_tasks:
            self._create_task(fun, dict(opts))
        self._create_builtins()

    def __repr__(self) -> str:
        return f"<Celery {self.main} (asyncq compat)>"

    # --- configuration ------------------------------------------------------------------------------------
    def config_from_object(self, obj: Any, silent: bool = False, force: bool = False,
                           namespace: str | None = None) -> None:
        """Celery's, lazily: ``obj`` (a module path like ``"django.conf:settings"``, a module, an object or a
        dict) is read on the first read of ``app.conf``, or at once with ``force=True``."""
        self.conf.add_source(obj, namespace=namespace, silent=silent)
        if force or self._asyncq is not None:
            len(self.conf)  # read it now
        self._reconfigure()

    def config_from_envvar(self, variable_name: str, silent: bool = False, force: bool = False) -> None:
        module = os.environ.get(variable_name)
        if not module:
            if silent:
                return
            raise ImproperlyConfigured(f"environment variable {variable_name!r} is not set")
        self.config_from_object(module, silent=silent)

    def autodiscover_tasks(self, packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
                           related_name: str = "tasks", force: bool = False) -> None:
        """Import ``<package>.<related_name>`` for each package when the app is first used (Celery's lazy
        finalize), or now with ``force=True``. With no ``packages`` in a Django project: every installed app,
        as with Celery's Django fixup."""
        self._autodiscover.append((packages, related_name))
        if force or self._asyncq is not None:
            self._discover()

    def _discover(self) -> None:
        while self._autodiscover:
            packages, related_name = self._autodiscover.pop(0)
            if packages is None:
                pkgs: Iterable[str] = django_fixup.installed_apps() if django_fixup.in_use() else ()
            else:
                pkgs = packages() if callable(packages) else packages
            for pkg in pkgs:
                if _is_package(pkg):
                    try:
                        importlib.import_module(f"{pkg}.{related_name}")
                    except ModuleNotFoundError as exc:
                        if exc.name != f"{pkg}.{related_name}":
                            raise

    def _reconfigure(self) -> None:
        if self._asyncq is not None:
            log.warning("configuration changed after the app was first used; broker and serializer settings "
                        "only take effect for a new Celery app")

    @property
    def asyncq_app(self) -> App:
        """The asyncq App behind this Celery app (built on first use from the configuration)."""
        if self._asyncq is None:
            self.conf.check()  # settings asyncq cannot honour fail here, on first use, not at import
            if django_fixup.in_use():
                django_fixup.setup()  # before any task module is imported, as Celery's Django fixup does
                if django_fixup.recycle_connections not in self.thread_fixups:
                    self.thread_fixups.append(django_fixup.recycle_connections)
            for module in (*self.conf.include, *self.conf.imports):
                importlib.import_module(module)
            self._discover()
            url = self.broker_url
            url = from_celery(url, self.conf.get("broker_transport_options"))  # Celery's sentinel:// form
            serializer = self.conf.task_serializer
            if serializer == "pickle" and not self.conf.asyncq_signing_key:
                raise ImproperlyConfigured(
                    "task_serializer='pickle' needs asyncq_signing_key: asyncq signs pickle payloads so that "
                    "write access to Redis is not code execution (or switch to json)"
                )
            namespace = {"namespace": self.conf.asyncq_namespace} if self.conf.asyncq_namespace else {}
            codec: Any = CeleryJsonSerializer() if serializer == "json" else serializer  # bytes as in kombu
            app = App(redis_url=url, serializer=codec, signing_key=self.conf.asyncq_signing_key,
                      default_queue=self.conf.task_default_queue, keep_result=seconds(self.conf.result_expires)
                      or 0, timeout=None, hooks=[_Lifecycle()], **namespace)
            self.on_after_configure.send(sender=self, source=self.conf)  # receivers may add_periodic_task
            self._asyncq = app
            for task in self.tasks.values():
                self._register(task)
            for name, entry in (self.conf.beat_schedule or {}).items():
                self._add_schedule(name, entry["schedule"], Signature(
                    entry["task"], entry.get("args", ()), entry.get("kwargs", {}), entry.get("options", {}),
                    app=self))
            for sched, sig, name in self._periodic:
                self._add_schedule(name, sched, sig)
            self.on_after_finalize.send(sender=self)
            _warn_real_celery_leaks(self)
        return self._asyncq

    @cached_property
    def backend(self) -> RedisBackend:
        """Celery's ``app.backend`` (chord checks, task meta), answered from compat's result store."""
        return RedisBackend(self)

    @property
    def broker_url(self) -> str:
        """The broker's Redis URL: ``broker_url``, else ``$ASYNCQ_REDIS_URL``, else the local default."""
        url: str = self.conf.broker_url or os.environ.get("ASYNCQ_REDIS_URL") or "redis://127.0.0.1:6379/0"
        return url

    def finalize(self, auto: bool = False) -> None:
        """Celery's finalize: import the task modules and build the asyncq App (nothing connects yet)."""
        self.asyncq_app  # noqa: B018 - building it is the point

    def set_default(self) -> None:
        """Make this app the default (current) app, as Celery's ``app.set_default()``."""
        set_current_app(self)

    def set_current(self) -> None:
        set_current_app(self)

    def broker_connection(self, url: str | None = None, **options: Any) -> BrokerConnection:
        """A connection to the broker's Redis (``.channel().client`` is a redis-py client) for health checks."""
        return BrokerConnection(url or self.broker_url, **options)

    connection = broker_connection
    connection_for_write = broker_connection
    connection_for_read = broker_connection

    def now(self) -> datetime:
        return datetime.now(UTC)

    # --- tasks --------------------------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[..., Any], /) -> _Task: ...

    @overload
    def task(self, **opts: Any) -> Callable[[Callable[..., Any]], _Task]: ...

    def task(self, *args: Any, **opts: Any) -> Any:
        """``@app.task`` or ``@app.task(bind=True, max_retries=5, ...)``; ``def`` and ``async def`` bodies."""
        if len(args) == 1 and callable(args[0]) and not opts:
            return self._create_task(args[0], {})

        def decorate(fun: Callable[..., Any]) -> _Task:
            return self._create_task(fun, dict(opts))

        return decorate

    def _create_task(self, fun: Callable[..., Any], opts: dict[str, Any]) -> _Task:
        _warn_unknown_options(opts, opts.get("base", self.Task), fun.__qualname__)
        name = opts.pop("name", None) or f"{fun.__module__}.{fun.__name__}"
        base = _task_base(opts.pop("base", None) or self.Task, f"@task(base=...) of {fun.__module__}.{fun.__name__}")
        opts.pop("shared", None)
        bind = opts.get("bind", False)
        fun = pydantic_args.wrap(fun, name, opts, self)
        if opts.get("rate_limit"):
            parse_rate(opts["rate_limit"])  # a typo fails at import, not on every job
        body = fun if bind else staticmethod(fun)
        # __name__ on the task object, as Celery's task proxies have it (pytest names a parametrized test by it:
        # test_x[errback_old_style], not test_x[errback_task0])
        attrs = {"run": body, "name": name, "_app": self, "__doc__": fun.__doc__, "__module__": fun.__module__,
                 "__name__": fun.__name__, "__wrapped__": fun, **opts}
        cls = type(fun.__name__, (base,), attrs)
        task: _Task = cls()
        self.tasks[name] = task
        if self._asyncq is not None:
            self._register(task)
        return task

    def register_task(self, task: Any, **options: Any) -> _Task:
        """Celery's ``app.register_task``: add a class-based task (a Task subclass, or an instance of one) to
        this app, as ``@app.task`` does for a function. Celery stopped registering Task subclasses on their own
        (4.0), so a project that defines tasks as classes calls this for each. ``options`` (``autoretry_for``,
        ``retry_kwargs`` ...) become task attributes. The task's name is its ``name``, else module.ClassName."""
        if isinstance(task, type):
            task = _task_base(task, f"app.register_task({task.__qualname__})")()
        elif not isinstance(task, _Task):
            raise ImproperlyConfigured(
                f"app.register_task({task!r}): expected an asyncq.compat Task subclass or instance (for a plain "
                "function use @app.task)")
        cls = type(task)
        if not task.name:
            task.name = f"{cls.__module__}.{cls.__name__}"
        for key, value in options.items():
            setattr(task, key, value)
        task._app = self
        registered: _Task = task
        self.tasks[registered.name] = registered
        if self._asyncq is not None:
            self._register(registered)
        return registered

    def _register(self, task: _Task) -> None:
        """The asyncq task that runs this Celery task in the worker."""
        async def runner(*args: Any, **kwargs: Any) -> Any:
            return await execute(task, args, kwargs)

        queue = task.queue or route(self.conf.task_routes, task.name, (), {}, {}, task=task).get("queue")
        ignore = task.ignore_result if task.ignore_result is not None else self.conf.task_ignore_result
        # Celery decides retries itself (self.retry() checks max_retries, also a per-call max_retries=), so
        # asyncq must never cut a retry short: its own try limit is out of the way.
        tries = UNLIMITED_TRIES
        assert self._asyncq is not None
        self._asyncq.tasks.pop(task.name, None)
        flow = {FLOW_OPTIONS[k]: getattr(task, k) for k in FLOW_OPTIONS if getattr(task, k, None) is not None}
        self._asyncq.task(name=task.name, queue=queue or self.conf.task_default_queue, max_tries=tries,
                          retry=False, keep_result=0 if ignore else None, **flow)(runner)

    def _create_builtins(self) -> None:
        app = self

        async def _map(task: str, it: list[Any]) -> list[Any]:
            t, req = app.tasks[task], current_request.get()
            return [await call_body(t, (item,), {}, req) for item in it]  # type: ignore[arg-type]

        async def _starmap(task: str, it: list[Any]) -> list[Any]:
            t, req = app.tasks[task], current_request.get()
            return [await call_body(t, tuple(item), {}, req) for item in it]  # type: ignore[arg-type]

        def _accumulate(*args: Any, index: Any = None) -> Any:
            """What ``replace()`` with a group appends (``group | celery.accumulate.s(index=...)``), so the
            replaced task's result is the group's list of results (or one of them)."""
            return args[index] if index is not None else args

        self._create_task(_map, {"name": "celery.map"})
        self._create_task(_starmap, {"name": "celery.starmap"})
        self._create_task(_accumulate, {"name": "celery.accumulate"})

    def signature(self, *args: Any, **kwargs: Any) -> Signature:
        kwargs.setdefault("app", self)
        return Signature(*args, **kwargs)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> _AsyncResult:
        return _AsyncResult(task_id, app=self, **kwargs)

    def GroupResult(self, group_id: str | None = None, results: Sequence[_AsyncResult] = ()) -> _GroupResult:
        return _GroupResult(group_id, results, app=self)

    # --- sending ------------------------------------------------------------------------------------------
    def send_task(self, name: str, args: Any = None, kwargs: Any = None, countdown: float | None = None,
                  eta: Any = None, task_id: str | None = None, **options: Any) -> _AsyncResult:
        """Send by name; the task need not be importable here. Ignores eager mode, as Celery does."""
        return sending.send_task(self, name, args, kwargs, countdown, eta, task_id, **options)

    async def asend_task(self, name: str, args: Any = None, kwargs: Any = None, countdown: float | None = None,
                         eta: Any = None, task_id: str | None = None, **options: Any) -> _AsyncResult:
        return await sending.asend_task(self, name, args, kwargs, countdown, eta, task_id, **options)

    async def asend_many(self, sigs: Sequence[Signature]) -> list[_AsyncResult]:
        """Send several signatures in one round trip (groups and chords)."""
        return await sending.asend_many(self, sigs)

    # --- periodic -----------------------------------------------------------------------------------------
    def add_periodic_task(self, schedule: Any, sig: Signature, args: Any = (), kwargs: Any = (),
                          name: str | None = None, **opts: Any) -> None:
        if not isinstance(sig, Signature):
            sig = Signature(sig, args, dict(kwargs or {}), opts, app=self)
        self._periodic.append((schedule, sig, name))
        if self._asyncq is not None:
            self._add_schedule(name, schedule, sig)

    def _add_schedule(self, name: str | None, schedule: Any, sig: Signature) -> None:
        assert self._asyncq is not None
        entry = name or f"{sig['task']}{tuple(sig['args'])}"
        queue = sig["options"].get("queue")
        task = self.tasks.get(sig["task"])
        if queue is None and task is not None:
            queue = task.queue
        self._asyncq.schedules.append(Schedule(
            task_name=sig["task"], trigger=to_trigger(schedule, beat_timezone(self.conf)), args=tuple(sig["args"]),
            kwargs=dict(sig["kwargs"]), entry_name=entry, queue=queue,
        ))

    def rate_limiter(self, task: _Task) -> RateLimiter:
        """This process's limiter for a task with ``rate_limit`` (Celery's limits are per worker)."""
        limiter = self._limiters.get(task.name)
        if limiter is None:
            limiter = self._limiters[task.name] = RateLimiter(task.rate_limit or 0)
        return limiter

    # --- state kept for the Celery API --------------------------------------------------------------------
    def state_key(self, task_id: str) -> str:
        return store.state_key(task_id)

    def store_state(self, task_id: str, state: str, meta: Any) -> None:
        self.bridge.run(store.save_state(self, task_id, state, meta))

    async def save_group(self, group_id: str, ids: list[str]) -> None:
        await store.save_group(self, group_id, ids)

    async def load_group(self, group_id: str) -> list[str] | None:
        return await store.load_group(self, group_id)

    # --- shutdown -----------------------------------------------------------------------------------------
    async def _close_async(self) -> None:
        if self._asyncq is not None:
            await self._asyncq.close()

    def close(self) -> None:
        self.bridge.stop()

    def __reduce__(self) -> Any:  # pragma: no cover - apps are not sent anywhere
        raise TypeError("a Celery app cannot be pickled")


def _warn_unknown_options(opts: dict[str, Any], base: Any, where: str) -> None:
    """Celery sets any ``@app.task`` option it does not know as a task attribute (projects read their own
    options in a base class or a signal receiver), so asyncq does too; one that looks like a misspelt Celery
    option is most likely a typo that Celery would silently ignore, so it gets a warning naming the option."""
    for key in sorted(k for k in opts if k not in TASK_OPTIONS and not hasattr(base, k)):
        close = difflib.get_close_matches(key, TASK_OPTIONS, n=1, cutoff=0.75)
        if close:
            log.warning("@app.task option %r of %s is not a Celery option (did you mean %r?); it is kept as a "
                        "task attribute, as Celery does", key, where, close[0])


def shared_task(*args: Any, **opts: Any) -> Any:
    """``@shared_task``: registered on every app, the current one and those created later."""

    def create(fun: Callable[..., Any]) -> Any:
        shared_tasks.append((fun, dict(opts)))
        app = get_current_app()
        assert isinstance(app, Celery)  # the only CeleryApp there is
        name = opts.get("name") or f"{fun.__module__}.{fun.__name__}"
        if name not in app.tasks:
            return app._create_task(fun, dict(opts))
        return app.tasks[name]

    if len(args) == 1 and callable(args[0]) and not opts:
        return create(args[0])
    return create


set_default_app_factory(lambda: Celery("default"))


def app_or_default(app: Any = None) -> Any:
    """``celery.app.app_or_default``: ``app``, else the current app."""
    return app if app is not None else get_current_app()


def _task_base(base: Any, where: str) -> type[_Task]:
    """A task base class must derive from asyncq.compat's Task; one built on real Celery's ``celery.Task``
    (its import left unchanged) is refused with the line to change."""
    if isinstance(base, type) and issubclass(base, _Task):
        return base
    line = not_celery(base, "Task")
    raise ImproperlyConfigured(
        f"{where}: {getattr(base, '__module__', '?')}.{getattr(base, '__qualname__', base)!r} is not an "
        f"asyncq.compat Task. {line}"
    )


def _warn_real_celery_leaks(app: Celery) -> None:
    """Receivers connected to real Celery's signals never run under asyncq: say which import to change."""
    celery = sys.modules.get("celery")
    if celery is not None and not celery.__name__.startswith("asyncq."):
        log.warning(
            "real Celery (%s) is imported in this process: whatever is still imported from celery (shared_task, "
            "Task, signals, schedules) is Celery's, not asyncq's. Call asyncq.compat.install_as_celery() at the top "
            "of your project package (asyncq worker -A does), or change those imports to asyncq.compat",
            getattr(celery, "__file__", "celery"))
    real = sys.modules.get("celery.signals")
    if real is None or real is signals:
        return
    for name in dir(signals):
        theirs = getattr(real, name, None)
        if isinstance(getattr(signals, name), Signal) and getattr(theirs, "receivers", None):
            log.warning(
                "%s has receivers connected through real Celery's celery.signals: they never run under asyncq. "
                "Change `from celery.signals import %s` to `from asyncq.compat.signals import %s`, or call "
                "asyncq.compat.install_as_celery() at the top of your project package", name, name, name)


def _is_package(name: str) -> bool:
    """Whether ``name`` is an importable package (one that can hold a ``tasks`` module). A plain module, or a
    dotted name whose last part is an attribute and not a module (``datetime.datetime``), holds none and is
    skipped, as Celery's autodiscovery does; a package that does not exist at all raises ModuleNotFoundError."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        parent, _, attr = name.rpartition(".")
        if exc.name == name and parent and hasattr(importlib.import_module(parent), attr):
            return False
        raise
    return hasattr(module, "__path__")


def _import(path: str) -> Any:
    module, _, attr = path.rpartition(".") if ":" not in path else path.partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["Celery", "NotRegistered", "app_or_default", "current_app", "get_current_app", "shared_task", "states"]
