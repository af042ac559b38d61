"""Celery's ``celery.contrib.testing.app`` on asyncq: ``TestApp`` and ``setup_default_app``.

Celery's ``TestApp`` defaults to the in-memory broker; asyncq has none (every asyncq component talks Redis), so
the default broker and backend are ``$ASYNCQ_REDIS_URL``: tests that need a broker give it in their config.
The config a test app was made with is kept beside it (:func:`config_of`) because ``start_worker`` hands it to
the worker process, which builds the same app there.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from asyncq.compat import _state
from asyncq.compat.app import Celery
from asyncq.compat.config import DEFAULTS
from asyncq.compat.contrib.testing import tasks as _tasks  # noqa: F401 - registers celery.ping on every app

DEFAULT_TEST_CONFIG: dict[str, Any] = {
    "worker_hijack_root_logger": False,
    "worker_log_color": False,
    "accept_content": {"json"},
    "enable_utc": True,
    "timezone": "UTC",
}

#: app -> the name and config it was created with (what start_worker passes to the worker process)
_made: weakref.WeakKeyDictionary[Celery, tuple[str, dict[str, Any]]] = weakref.WeakKeyDictionary()


def _redis_default() -> str | None:
    return os.environ.get("ASYNCQ_REDIS_URL")


def TestApp(name: str | None = None, config: Mapping[str, Any] | None = None, enable_logging: bool = False,
            set_as_current: bool = False, log: Any = None, backend: str | None = None, broker: str | None = None,
            **kwargs: Any) -> Celery:
    """An app for tests: Celery's test defaults, then ``config``; broker and backend default to
    ``$ASYNCQ_REDIS_URL`` (asyncq has no in-memory broker)."""
    merged = {**DEFAULT_TEST_CONFIG, **(config or {})}
    broker = broker or merged.pop("broker_url", None) or _redis_default()
    backend = backend or merged.pop("result_backend", None) or broker
    merged.pop("broker_url", None)
    merged.pop("result_backend", None)
    app = Celery(name or "celery.tests", broker=broker, backend=backend, set_as_current=set_as_current,
                 **kwargs)
    app.conf.update(merged)
    _made[app] = (name or "celery.tests", {**merged, "broker_url": broker, "result_backend": backend})
    return app


def config_of(app: Celery) -> tuple[str, dict[str, Any]]:
    """The name and configuration ``app`` was made with by :func:`TestApp`; for other apps, their broker and
    backend (the rest of their configuration cannot be sent to another process)."""
    made = _made.get(app)
    # settings changed since (a fixture that sets conf.X before starting its own worker, as Celery's tests do:
    # Celery's in-process worker shares the app object, so it sees them)
    changed = {k: v for k, v in app.conf.items() if k not in DEFAULTS or v != DEFAULTS[k]}
    if made is not None:
        return made[0], {**made[1], **changed, "broker_url": made[1]["broker_url"],
                         "result_backend": made[1]["result_backend"]}
    return (app.main or "celery.tests",
            {**changed, "broker_url": app.conf.broker_url,
             "result_backend": app.conf.result_backend or app.conf.broker_url})


@contextmanager
def setup_default_app(app: Celery, use_trap: bool = False) -> Iterator[None]:
    """Make ``app`` the current app for the block, then restore the previous one. ``use_trap`` (Celery raises
    when the default app is used) has no asyncq equivalent and is refused rather than ignored."""
    if use_trap:
        raise NotImplementedError("use_celery_app_trap: asyncq.compat has no app trap; leave it False")
    previous = _state._current
    _state.set_current_app(app)
    try:
        yield
    finally:
        if previous is not None:
            _state.set_current_app(previous)
