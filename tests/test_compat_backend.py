"""``app.backend`` and the Celery call options Celery's own integration suite uses (issue #14): chord checks,
task meta read through the backend, message-property options, and ``ignore_result=True`` at call time. A real
asyncq worker runs the tasks (in a thread, as in test_compat_unit)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asyncq.compat import Celery, states

from .compat_worker import COMPAT_DB, ThreadWorker
from .conftest import flushed_url


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    app = Celery("backend", broker=flushed_url(COMPAT_DB), backend=flushed_url(COMPAT_DB))
    yield app
    app.close()


def test_backend_answers_what_celery_code_asks(celery_app: Celery) -> None:
    @celery_app.task(name="backend.add")
    def add(x: int, y: int) -> int:
        return x + y

    backend = celery_app.backend
    assert backend is celery_app.backend  # one object per app, as Celery
    backend.ensure_chords_allowed()
    backend.result_consumer.on_after_fork()
    assert backend.persistent and backend.supports_native_join
    assert backend.get_task_meta("no-such-task")["status"] == states.PENDING
    with ThreadWorker(celery_app):
        r = add.delay(1, 2)
        assert r.get(timeout=10) == 3
    meta = backend.get_task_meta(r.id)
    assert (meta["status"], meta["result"]) == (states.SUCCESS, 3)
    assert backend.get_state(r.id) == states.SUCCESS and backend.get_result(r.id) == 3
    backend.forget(r.id)
    assert backend.get_task_meta(r.id)["status"] == states.PENDING


def test_message_properties_accepted_and_ignore_result_reads_none(celery_app: Celery) -> None:
    @celery_app.task(name="backend.add")
    def add(x: int, y: int) -> int:
        return x + y

    with ThreadWorker(celery_app):
        r = add.apply_async((2, 3), app_id="1234", argsrepr="(2, 3)", kwargsrepr="{}")
        assert r.get(timeout=10) == 5
        ignored = add.apply_async((1, 2), ignore_result=True)
        assert ignored.get(timeout=10) is None
        assert ignored.result is None and ignored.state == states.PENDING
    with pytest.raises(TypeError, match="app_idd"):
        add.apply_async((1, 2), app_idd="x")
