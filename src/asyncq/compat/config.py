"""``app.conf``: Celery's configuration keys, their defaults, and what asyncq does with each.

Three kinds of key:
- honoured: asyncq does what Celery does (routing, time limits, retries, results, eager mode, beat, ...);
- meaningless here, accepted and logged once with the reason (prefetch, pool and ack settings that exist to
  work around problems asyncq does not have);
- impossible to honour (a non-Redis broker, a ``django-db`` result backend, ...): kept, and reported with the
  reason when the app is first *used* (``Settings.check``), never when it is merely imported, because Django
  imports the Celery app in every process (``manage.py migrate`` must not fail over a worker setting).
Keys Celery does not know are kept as plain values, as Celery does, and summarised once at debug level (a Flask
app that hands its whole config to ``conf.update`` is not a reason for warnings).

As in Celery, ``config_from_object`` is lazy: the source is read on the first read of a key, so a Django
settings module that is still importing (``proj/__init__.py`` imports the Celery app) is not touched early.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from asyncq.compat.exceptions import ImproperlyConfigured

log = logging.getLogger("asyncq.compat")

DEFAULTS: dict[str, Any] = {
    "broker_url": None,
    "result_backend": None,
    "task_default_queue": "celery",
    "task_default_priority": None,
    "task_routes": None,
    "task_acks_late": False,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ("json",),
    "result_expires": timedelta(days=1),
    "task_ignore_result": False,
    "task_track_started": False,
    "task_always_eager": False,
    "task_eager_propagates": False,
    "task_store_eager_result": False,
    "task_default_retry_delay": 180,
    "task_annotations": None,
    "beat_schedule": {},
    "timezone": "UTC",
    "enable_utc": True,
    "include": (),
    "imports": (),
    "asyncq_signing_key": "",
    #: asyncq's key prefix (App(namespace=...)); '' reads ASYNCQ_NAMESPACE, else none. Celery's own keys (kombu's
    #: lists, the result backend) are Celery's layout and are never prefixed
    "asyncq_namespace": "",
}

#: keys that have no meaning in asyncq, and why: accepted, logged once
NO_EFFECT: dict[str, str] = {
    "worker_prefetch_multiplier": "asyncq never prefetches: a worker claims a job only when a slot is free",
    "worker_disable_prefetch": "asyncq never prefetches",
    "task_acks_late": "asyncq always holds a lease until the job finishes (the acks_late behaviour, without its "
    "visibility-timeout duplicates)",
    "task_reject_on_worker_lost": "a lost worker's jobs run again after their lease, up to 3 times, then fail "
    "with WorkerLostError",
    "broker_transport_options": "visibility timeouts are replaced by renewed leases (a worker with "
    "--celery-queues reads visibility_timeout to restore Celery messages as Celery does); master_name is read "
    "for a sentinel:// broker_url",
    "worker_concurrency": "set concurrency on the asyncq worker: asyncq worker proj:app --concurrency N",
    "worker_pool": "asyncq runs async tasks on an event loop and plain def tasks in a thread pool",
    "worker_max_tasks_per_child": "asyncq workers are one process; restart them with your supervisor",
    "worker_max_memory_per_child": "asyncq workers are one process; restart them with your supervisor",
    "broker_connection_retry_on_startup": "asyncq workers always reconnect with backoff",
    "broker_connection_retry": "asyncq workers always reconnect with backoff",
    "result_extended": "asyncq results always carry name, args, kwargs, worker, tries and queue",
    "task_publish_retry": "enqueue fails loudly with BrokerUnavailable instead of retrying silently",
    "task_publish_retry_policy": "enqueue fails loudly with BrokerUnavailable instead of retrying silently",
    "task_create_missing_queues": "asyncq queues exist as soon as a job is enqueued",
    "worker_hijack_root_logger": "asyncq does not touch your logging configuration",
    "worker_send_task_events": "use asyncq's hooks, metrics and dashboard",
    "task_send_sent_event": "use asyncq's hooks, metrics and dashboard",
    "result_backend_transport_options": "results live in the broker's Redis",
    "broker_connection_timeout": "set ASYNCQ_CONNECT_TIMEOUT",
    "task_store_eager_result": "eager results live in the EagerResult, not in Redis",
}

#: Celery's defaults of keys asyncq reads little or not at all, so Celery code that reads them
#: (``app.conf.worker_prefetch_multiplier``, ``inspect().conf()``) finds Celery's value, not an AttributeError
CELERY_DEFAULTS: dict[str, Any] = {
    "worker_prefetch_multiplier": 4,
    "worker_disable_prefetch": False,
    "task_reject_on_worker_lost": None,
    "broker_transport_options": {},
    "worker_concurrency": None,
    "worker_pool": "prefork",
    "worker_max_tasks_per_child": None,
    "worker_max_memory_per_child": None,
    "broker_connection_retry_on_startup": None,
    "broker_connection_retry": True,
    "broker_connection_timeout": 4,
    "broker_heartbeat": 120,
    "result_extended": False,
    "result_backend_transport_options": {},
    "task_publish_retry": True,
    "task_publish_retry_policy": {"max_retries": 3, "interval_start": 0, "interval_max": 1, "interval_step": 0.2},
    "task_create_missing_queues": True,
    "worker_hijack_root_logger": True,
    "worker_log_color": None,
    "worker_send_task_events": False,
    "task_send_sent_event": False,
    #: a worker skips a redelivered task whose result is already SUCCESS, and hands its callbacks/chain that
    #: result (Celery's option; read by the worker through ``backend.stored_success``)
    "worker_deduplicate_successful_tasks": False,
    #: Celery's record of the deprecated (upper-case) names a configuration used; asyncq maps them (OLD_NAMES)
    "deprecated_settings": frozenset(),
}
DEFAULTS.update({k: v for k, v in CELERY_DEFAULTS.items() if k not in DEFAULTS})
NO_EFFECT.update({
    "broker_heartbeat": "asyncq's connections are checked by Redis health checks, not AMQP heartbeats",
    "worker_log_color": "asyncq worker logs go through your logging configuration",
})

#: Celery's old upper-case names for the keys people still set that way
OLD_NAMES = {
    "BROKER_URL": "broker_url",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERY_RESULT_SERIALIZER": "result_serializer",
    "CELERY_ACCEPT_CONTENT": "accept_content",
    "CELERY_DEFAULT_QUEUE": "task_default_queue",
    "CELERY_ROUTES": "task_routes",
    "CELERY_ALWAYS_EAGER": "task_always_eager",
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS": "task_eager_propagates",
    "CELERY_IGNORE_RESULT": "task_ignore_result",
    "CELERY_TASK_RESULT_EXPIRES": "result_expires",
    "CELERYD_TASK_TIME_LIMIT": "task_time_limit",
    "CELERYD_TASK_SOFT_TIME_LIMIT": "task_soft_time_limit",
    "CELERYD_PREFETCH_MULTIPLIER": "worker_prefetch_multiplier",
    "CELERYBEAT_SCHEDULE": "beat_schedule",
    "CELERY_TIMEZONE": "timezone",
    "CELERY_ACKS_LATE": "task_acks_late",
    "CELERY_IMPORTS": "imports",
    "CELERY_INCLUDE": "include",
    "CELERY_TASK_ROUTES": "task_routes",
    "CELERY_DEFAULT_RETRY_DELAY": "task_default_retry_delay",
    "CELERY_TRACK_STARTED": "task_track_started",
    "CELERY_TASK_TRACK_STARTED": "task_track_started",
    "CELERY_RESULT_EXPIRES": "result_expires",
    "CELERY_BROKER_URL": "broker_url",
}

#: Redis URLs, Sentinel's and Cluster's included (Celery's sentinel:// takes broker_transport_options' master_name)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://", "sentinel://",
                 "redis+cluster://", "rediss+cluster://")

SERIALIZERS = {"json": "json", "msgpack": "msgpack", "pickle": "pickle"}


def _check_value(key: str, value: Any) -> None:
    """Raise ``ImproperlyConfigured`` if asyncq cannot honour ``key=value``. Called on first use, by
    ``Settings.check`` (``migrate/rules.py`` reads the keys it refuses from this function's source)."""
    if key == "broker_url" and value is not None and (
        not isinstance(value, str) or not value.startswith(REDIS_SCHEMES)
    ):
        raise ImproperlyConfigured(
            f"broker_url={value!r}: asyncq runs on Redis only; use a redis:// URL (results live in the broker's "
            "Redis). To keep a RabbitMQ broker, keep that task on Celery during the migration.")
    if key == "result_backend" and value is not None and (
        not isinstance(value, str) or not value.startswith(REDIS_SCHEMES)
    ):
        raise ImproperlyConfigured(
            f"result_backend={value!r} cannot be served by asyncq: results live in the broker's Redis. Use the "
            "Redis backend: set result_backend (CELERY_RESULT_BACKEND in Django settings) to your redis:// "
            "broker URL, or remove the setting.")
    if key in ("task_serializer", "result_serializer") and value not in SERIALIZERS:
        raise ImproperlyConfigured(f"{key}={value!r} is not supported: use 'json' (default), 'msgpack' or 'pickle'")
    if key == "task_annotations" and value:
        raise ImproperlyConfigured(
            "task_annotations is not supported: set the options on the tasks themselves (@app.task(rate_limit=...))")


class Settings(MutableMapping[str, Any]):
    """Celery's ``app.conf``: a mapping with attribute access, defaults, and the checks above."""

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", copy.deepcopy(DEFAULTS))  # no app mutates another's default dict
        object.__setattr__(self, "_logged", set())
        #: keys Celery does not define and asyncq does not read (summarised once, at debug level)
        object.__setattr__(self, "_unread", set())
        #: config_from_object sources not read yet: (object or path, namespace, silent)
        object.__setattr__(self, "_pending", [])
        #: called with (key, value) after each change (``watch``)
        object.__setattr__(self, "_watchers", [])
        #: a JSON file this configuration follows (``follow_file``): path and the (inode, mtime) last read
        object.__setattr__(self, "_followed", None)
        if initial:
            self.update(initial)

    # lazy sources
    def add_source(self, obj: Any, namespace: str | None = None, silent: bool = False) -> None:
        """``config_from_object``: remember ``obj``; it is read on the first read of any key."""
        self._pending.append((obj, namespace, silent))

    def watch(self, fn: Callable[[str, Any], None]) -> Callable[[], None]:
        """Call ``fn(key, value)`` after every change of a key; returns the function that stops it. For code that
        mirrors this configuration elsewhere (the test worker of ``asyncq.compat.contrib.testing``)."""
        self._watchers.append(fn)
        return lambda: self._watchers.remove(fn) if fn in self._watchers else None

    def follow_file(self, path: str | os.PathLike[str], skip: Iterable[str] = ()) -> None:
        """Take the settings in the JSON file ``path`` now and again whenever the file is replaced (checked on
        each read of a key: one ``stat``), except the keys in ``skip``. For a process whose configuration another
        process owns: a test worker follows the app of the test that started it, as Celery's in-process test
        worker shares the app object."""
        object.__setattr__(self, "_followed", (Path(path), frozenset(skip), None))
        self._refresh()

    def _refresh(self) -> None:
        path, skip, seen = self._followed
        try:
            st = path.stat()
        except OSError:
            return
        if (st.st_ino, st.st_mtime_ns) == seen:
            return
        try:
            values = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return  # being replaced: read it next time
        object.__setattr__(self, "_followed", (path, skip, (st.st_ino, st.st_mtime_ns)))
        self._data.update({OLD_NAMES.get(k, k): v for k, v in values.items() if k not in skip})

    def _load(self) -> dict[str, Any]:
        if self._followed is not None:
            self._refresh()
        while self._pending:
            obj, namespace, silent = self._pending.pop(0)
            try:
                self.from_object(obj, namespace=namespace)
            except ImportError:
                if not silent:
                    raise
        data: dict[str, Any] = self._data
        return data

    def check(self) -> None:
        """Raise ``ImproperlyConfigured`` for the first setting asyncq cannot honour (called when the app is
        first used), and summarise the unread keys once at debug level."""
        for key, value in self._load().items():
            _check_value(key, value)
        if self._unread:
            log.debug("%d config key(s) are kept in app.conf but not read by asyncq.compat: %s",
                      len(self._unread), ", ".join(sorted(self._unread)))
            self._unread.clear()

    # mapping protocol
    def __getitem__(self, key: str) -> Any:
        return self._load()[OLD_NAMES.get(key, key)]

    def __setitem__(self, key: str, value: Any) -> None:
        key = OLD_NAMES.get(key, key)
        if key in NO_EFFECT and key not in self._logged and value != DEFAULTS.get(key):
            self._logged.add(key)
            log.info("config %s=%r accepted with no effect: %s", key, value, NO_EFFECT[key])
        elif key not in DEFAULTS and key not in NO_EFFECT:
            self._unread.add(key)
        self._data[key] = value
        for fn in list(self._watchers):
            fn(key, value)

    def __delitem__(self, key: str) -> None:
        del self._load()[OLD_NAMES.get(key, key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._load()[OLD_NAMES.get(key, key)]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        items = dict(other, **kwargs) if other else kwargs
        for k, v in items.items():
            self[k] = v

    def from_object(self, obj: Any, namespace: str | None = None) -> None:
        """Read upper-case (with ``namespace``: ``NAMESPACE_KEY``) or lower-case attributes of a module or
        object, or the keys of a mapping; a string (``"module"``, ``"module:attr"``) is imported first."""
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            loaded: Any = importlib.import_module(module)
            obj = getattr(loaded, attr) if attr else loaded
        if isinstance(obj, Mapping):
            items = [(str(k), v) for k, v in obj.items()]
        else:
            items = [(name, getattr(obj, name)) for name in dir(obj) if not name.startswith("_")]
        prefix = f"{namespace}_" if namespace else ""
        for name, value in items:
            if name.startswith("_"):
                continue
            if prefix:
                if not name.startswith(prefix):
                    continue
                key = name[len(prefix) :].lower()
            elif name.isupper() and name in OLD_NAMES:
                key = OLD_NAMES[name]
            elif name.islower():
                key = name
            else:
                continue
            if callable(value) and not isinstance(value, type) and key != "task_routes":
                continue
            self[key] = value


def seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)
