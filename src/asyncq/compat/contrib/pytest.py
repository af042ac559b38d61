"""Celery's pytest fixtures (``celery.contrib.pytest``) on asyncq.

Enable them in a test suite with ``pytest_plugins = ["asyncq.compat.contrib.pytest"]`` (in the root
conftest.py), or, with ``celery`` aliased by ``install_as_celery()``, keep Celery's own
``from celery.contrib.pytest import celery_app, celery_session_worker``. The fixtures and their overrides are
Celery's: ``celery_config``, ``celery_parameters``, ``celery_includes``, ``celery_class_tasks``,
``celery_worker_parameters``, ``celery_worker_pool``, ``celery_enable_logging``, ``use_celery_app_trap``, and
the ``@pytest.mark.celery(**config)`` marker. The one difference: ``celery_worker`` and
``celery_session_worker`` start a real ``asyncq worker`` process (see
:func:`asyncq.compat.contrib.testing.worker.start_worker`), on the broker your ``celery_config`` names
(default ``$ASYNCQ_REDIS_URL``): asyncq has no in-memory broker. ``NO_WORKER=1`` skips starting it, as in
Celery.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from asyncq.compat.app import Celery
from asyncq.compat.contrib.testing.app import TestApp, setup_default_app
from asyncq.compat.contrib.testing.worker import TestWorker, start_worker

NO_WORKER = os.environ.get("NO_WORKER")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``celery(**overrides)`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line("markers", "celery(**overrides): override celery configuration for a test case")


@contextmanager
def _create_app(enable_logging: bool = False, use_trap: bool = False, parameters: Mapping[str, Any] | None = None,
                **config: Any) -> Iterator[Celery]:
    test_app = TestApp(set_as_current=False, enable_logging=enable_logging, config=config, **(parameters or {}))
    try:
        with setup_default_app(test_app, use_trap=use_trap):
            yield test_app
    finally:
        test_app.close()


def _config(request: pytest.FixtureRequest, celery_config: Mapping[str, Any]) -> dict[str, Any]:
    mark = request.node.get_closest_marker("celery")
    return dict(celery_config, **(mark.kwargs if mark else {}))


@pytest.fixture(scope="session")
def use_celery_app_trap() -> bool:
    """Celery's app trap; asyncq has none (True is refused with a message)."""
    return False


@pytest.fixture(scope="session")
def celery_session_app(request: pytest.FixtureRequest, celery_config: Mapping[str, Any],
                       celery_parameters: Mapping[str, Any], celery_enable_logging: bool,
                       use_celery_app_trap: bool) -> Iterator[Celery]:
    """Session fixture: the app session fixtures use, current for the session."""
    with _create_app(enable_logging=celery_enable_logging, use_trap=use_celery_app_trap,
                     parameters=celery_parameters, **_config(request, celery_config)) as app:
        _make_current(app)
        yield app


def _make_current(app: Celery) -> None:
    for name in ("set_default", "set_current"):
        method = getattr(app, name, None)
        if method is not None:
            method()


@pytest.fixture(scope="session")
def celery_session_worker(request: pytest.FixtureRequest, celery_session_app: Celery,
                          celery_includes: Sequence[str], celery_class_tasks: Sequence[type],
                          celery_worker_pool: Any, celery_worker_parameters: Mapping[str, Any]
                          ) -> Iterator[TestWorker | None]:
    """Session fixture: an ``asyncq worker`` process serving the session app's tasks for the whole session."""
    if NO_WORKER:
        yield None
        return
    with start_worker(celery_session_app, pool=celery_worker_pool, includes=celery_includes,
                      class_tasks=celery_class_tasks, **celery_worker_parameters) as worker:
        yield worker


@pytest.fixture(scope="session")
def celery_enable_logging() -> bool:
    """Override to enable logging."""
    return False


@pytest.fixture(scope="session")
def celery_includes() -> Sequence[str]:
    """Override: modules the worker imports (task modules, signal receivers ...)."""
    return ()


@pytest.fixture(scope="session")
def celery_worker_pool() -> Any:
    """Override to name Celery's worker pool; asyncq has one kind of worker (accepted and not used)."""
    return "solo"


@pytest.fixture(scope="session")
def celery_config() -> Mapping[str, Any]:
    """Override to configure the test app (``broker_url`` and ``result_backend`` default to
    ``$ASYNCQ_REDIS_URL``)."""
    return {}


@pytest.fixture(scope="session")
def celery_parameters() -> Mapping[str, Any]:
    """Override to change the keyword arguments of the test app's ``Celery(...)``."""
    return {}


@pytest.fixture(scope="session")
def celery_worker_parameters() -> Mapping[str, Any]:
    """Override to change ``start_worker``'s arguments (``queues=``, ``concurrency=`` ...)."""
    return {}


@pytest.fixture()
def celery_app(request: pytest.FixtureRequest, celery_config: Mapping[str, Any],
               celery_parameters: Mapping[str, Any], celery_enable_logging: bool,
               use_celery_app_trap: bool) -> Iterator[Celery]:
    """A fresh app for each test, current while the test runs."""
    with _create_app(enable_logging=celery_enable_logging, use_trap=use_celery_app_trap,
                     parameters=celery_parameters, **_config(request, celery_config)) as app:
        yield app


@pytest.fixture(scope="session")
def celery_class_tasks() -> Sequence[type]:
    """Override: class-based tasks to register with the test app (and the worker's)."""
    return []


@pytest.fixture()
def celery_worker(request: pytest.FixtureRequest, celery_app: Celery, celery_includes: Sequence[str],
                  celery_worker_pool: Any, celery_worker_parameters: Mapping[str, Any]
                  ) -> Iterator[TestWorker | None]:
    """An ``asyncq worker`` process for one test, stopped when the test returns."""
    if NO_WORKER:
        yield None
        return
    with start_worker(celery_app, pool=celery_worker_pool, includes=celery_includes,
                      **celery_worker_parameters) as worker:
        yield worker


@pytest.fixture()
def depends_on_current_app(celery_app: Celery) -> None:
    """Make the test's app current."""
    _make_current(celery_app)
