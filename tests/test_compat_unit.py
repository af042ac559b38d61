"""asyncq.compat beyond the parity suite: configuration rules, transactions, async calling, results, control,
rate limits, Reject/Ignore and periodic tasks. A real asyncq worker runs in a background thread (its own event
loop), so the tests can use Celery's blocking API as Celery users do."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import types
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from asyncq.compat import Celery, GroupResult, states
from asyncq.compat import signals as celery_signals
from asyncq.compat.exceptions import ImproperlyConfigured, Reject, TaskRevokedError
from asyncq.compat.ratelimit import parse_rate
from asyncq.compat.task import backoff

from .compat_worker import COMPAT_DB, ThreadWorker
from .conftest import flushed_url, redis_url


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    app = Celery("unit", broker=flushed_url(COMPAT_DB), backend=flushed_url(COMPAT_DB))
    yield app
    app.close()


# --- configuration ---------------------------------------------------------------------------------------
def test_non_redis_broker_is_rejected_with_the_reason_on_first_use() -> None:
    app = Celery("x", broker="amqp://guest@localhost//")  # importing the app never fails (manage.py migrate)
    with pytest.raises(ImproperlyConfigured, match="asyncq runs on Redis only"):
        app.asyncq_app  # noqa: B018


def test_unsupported_serializer_is_rejected_on_first_use() -> None:
    app = Celery("x", broker=redis_url(COMPAT_DB))
    app.conf.task_serializer = "yaml"
    with pytest.raises(ImproperlyConfigured, match="not supported"):
        app.asyncq_app  # noqa: B018


def test_no_effect_key_is_accepted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    app = Celery("x", broker=redis_url(COMPAT_DB))
    with caplog.at_level(logging.INFO, logger="asyncq.compat"):
        app.conf.worker_prefetch_multiplier = 1
        app.conf.worker_prefetch_multiplier = 2
    hits = [r for r in caplog.records if "worker_prefetch_multiplier" in r.getMessage()]
    assert len(hits) == 1 and "never prefetches" in hits[0].getMessage()
    assert app.conf.worker_prefetch_multiplier == 2


def test_config_from_object_namespace_and_old_names() -> None:
    settings = types.SimpleNamespace(CELERY_TASK_DEFAULT_QUEUE="jobs", CELERY_RESULT_EXPIRES=60, OTHER=1)
    app = Celery("x", broker=redis_url(COMPAT_DB))
    app.config_from_object(settings, namespace="CELERY")
    assert app.conf.task_default_queue == "jobs" and app.conf.result_expires == 60
    old = types.SimpleNamespace(CELERY_ALWAYS_EAGER=True, BROKER_URL=redis_url(COMPAT_DB))
    app.config_from_object(old)
    assert app.conf.task_always_eager is True
    app.conf.update(task_default_queue="other")
    assert app.conf["task_default_queue"] == "other"


def test_unknown_task_option_is_an_attribute_and_apply_async_option_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Celery("x", broker=redis_url(COMPAT_DB))
    # As in Celery: an option the app does not know becomes a task attribute (projects read their own options
    # in a base class); one that looks like a misspelt Celery option is warned about.
    with caplog.at_level(logging.WARNING, logger="asyncq.compat"):
        own = app.task(name="own", audit_channel="billing")(lambda: None)
        typo = app.task(name="typo", max_retry=3)(lambda: None)
    assert own.audit_channel == "billing" and typo.max_retry == 3
    warned = [r.getMessage() for r in caplog.records if "not a Celery option" in r.getMessage()]
    assert len(warned) == 1 and "'max_retry'" in warned[0] and "'max_retries'" in warned[0]

    @app.task(name="t")
    def t() -> None: ...

    with pytest.raises(TypeError, match="unknown option"):
        t.apply_async(countdwn=3)
    with pytest.raises(ValueError, match="soft_time_limit"):
        t.apply_async(time_limit=1, soft_time_limit=2)


def test_celery_backoff_formula_and_rates() -> None:
    assert [backoff(True, n, 600, False) for n in range(4)] == [1, 2, 4, 8]
    assert backoff(True, 20, 600, False) == 600
    assert all(0 <= backoff(3, 2, 600, True) <= 12 for _ in range(50))
    assert parse_rate("10/s") == 10 and parse_rate("60/m") == 1 and parse_rate("3600/h") == 1
    with pytest.raises(ImproperlyConfigured):
        parse_rate("fast")


# --- running against a real worker -----------------------------------------------------------------------
def test_sync_calls_from_inside_a_running_loop_and_adelay(celery_app: Celery) -> None:
    @celery_app.task(name="unit.add")
    def add(x: int, y: int) -> int:
        return x + y

    async def from_async_code() -> tuple[int, int]:
        blocking = add.delay(1, 2).get(timeout=10)  # a sync call inside a running loop still works
        non_blocking = await (await add.adelay(3, 4))  # adelay + await result never block the loop
        return blocking, non_blocking

    with ThreadWorker(celery_app):
        assert asyncio.run(from_async_code()) == (3, 7)


def test_get_inside_a_task_is_refused(celery_app: Celery) -> None:
    @celery_app.task(name="unit.inner")
    def inner() -> int:
        return 1

    @celery_app.task(name="unit.outer")
    def outer() -> str:
        try:
            inner.delay().get(timeout=5)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    with ThreadWorker(celery_app):
        assert "Never call result.get() within a task" in outer.delay().get(timeout=10)


def test_result_forget_date_done_and_group_save_restore(celery_app: Celery) -> None:
    @celery_app.task(name="unit.square")
    def square(x: int) -> int:
        return x * x

    with ThreadWorker(celery_app):
        r = square.delay(3)
        assert r.get(timeout=10) == 9 and r.date_done is not None
        r.forget()
        assert r.state == states.PENDING
        from asyncq.compat import group

        g = group(square.s(i) for i in range(3)).apply_async()
        g.save()
        restored = GroupResult.restore(g.id, app=celery_app)
        assert restored is not None and restored.get(timeout=10) == [0, 1, 4]
        assert restored.completed_count() == 3 and restored.successful()
        assert square.chunks([(i,) for i in range(5)], 2).apply_async().get(timeout=10) == [[0, 1], [4, 9], [16]]


def test_revoke_terminate_cancels_a_running_task(celery_app: Celery) -> None:
    started = threading.Event()

    @celery_app.task(name="unit.forever")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    with ThreadWorker(celery_app):
        r = forever.delay()
        assert started.wait(10)
        r.revoke(terminate=True)
        with pytest.raises(TaskRevokedError):
            r.get(timeout=10)
        assert r.state == states.REVOKED


def test_reject_and_ignore(celery_app: Celery) -> None:
    from asyncq.compat.exceptions import Ignore

    @celery_app.task(name="unit.reject")
    def reject() -> None:
        raise Reject("bad input", requeue=False)

    @celery_app.task(name="unit.ignore")
    def ignore() -> None:
        raise Ignore()

    with ThreadWorker(celery_app):
        with pytest.raises(Reject):
            reject.delay().get(timeout=10)
        r = ignore.delay()
        assert r.get(timeout=10) is None
        assert r.state == states.IGNORED


def test_rate_limit_spaces_starts_per_worker(celery_app: Celery) -> None:
    starts: list[float] = []

    @celery_app.task(name="unit.limited", rate_limit="10/s")
    async def limited() -> None:
        starts.append(time.monotonic())

    with ThreadWorker(celery_app):
        results = [limited.delay() for _ in range(6)]
        for res in results:
            res.get(timeout=10)
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert min(gaps) >= 0.09  # 10/s: starts at least 100 ms apart (minus timer slack)


def test_inspect_scheduled_and_registered(celery_app: Celery) -> None:
    @celery_app.task(name="unit.later")
    def later() -> None: ...

    with ThreadWorker(celery_app):
        r = later.apply_async(countdown=60)
        insp = celery_app.control.inspect()
        scheduled = insp.scheduled()
        # listed once, under the worker serving its queue (tests/test_compat_app_surface.py checks the fields)
        assert [e["request"]["id"] for entries in scheduled.values() for e in entries] == [r.id]
        time.sleep(0.5)
        assert any("unit.later" in tasks for tasks in insp.registered().values())
        assert insp.reserved() and all(not v for v in insp.reserved().values())


def test_add_periodic_task_and_worker_signals(celery_app: Celery) -> None:
    seen: list[str] = []
    r = redis.Redis.from_url(flushed_url(COMPAT_DB))

    @celery_app.task(name="unit.beat")
    def beat(label: str) -> None:
        r.rpush("unit:beat", label)

    celery_app.add_periodic_task(timedelta(seconds=0.5), beat.s("tick"), name="every half second")
    celery_signals.worker_ready.connect(lambda **kw: seen.append("ready"), dispatch_uid="unit-ready")
    celery_signals.worker_shutdown.connect(lambda **kw: seen.append("shutdown"), dispatch_uid="unit-shutdown")
    try:
        with ThreadWorker(celery_app):
            deadline = time.monotonic() + 10
            while r.llen("unit:beat") < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert r.llen("unit:beat") >= 2
        assert seen == ["ready", "shutdown"]
    finally:
        celery_signals.worker_ready.disconnect(dispatch_uid="unit-ready")
        celery_signals.worker_shutdown.disconnect(dispatch_uid="unit-shutdown")
        r.close()


# --- transactions ----------------------------------------------------------------------------------------
def test_sqlalchemy_send_after_commit_dropped_on_rollback(celery_app: Celery) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.orm import Session

    @celery_app.task(name="unit.welcome")
    def welcome(user_id: int) -> int:
        return user_id

    engine = sqlalchemy.create_engine("sqlite://")
    sent: list[object] = []
    celery_signals.after_task_publish.connect(lambda **kw: sent.append(kw["headers"]["id"]), dispatch_uid="sa")
    try:
        with Session(engine) as session:
            welcome.apply_async_on_commit((1,), session=session)
            assert sent == []  # not before the commit
            session.commit()
            assert len(sent) == 1
        with Session(engine) as session:
            welcome.apply_async_on_commit((2,), session=session)
            session.rollback()
            session.commit()
            assert len(sent) == 1  # dropped with the rollback
    finally:
        celery_signals.after_task_publish.disconnect(dispatch_uid="sa")


def test_django_delay_on_commit(celery_app: Celery) -> None:
    pytest.importorskip("django")
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
                           INSTALLED_APPS=[], USE_TZ=True)
        django.setup()
    from django.db import transaction

    @celery_app.task(name="unit.notify")
    def notify(user_id: int) -> int:
        return user_id

    sent: list[object] = []
    celery_signals.after_task_publish.connect(lambda **kw: sent.append(kw["headers"]["id"]), dispatch_uid="dj")
    try:
        with transaction.atomic():
            assert notify.delay_on_commit(1) is None  # returns None, as in Celery
            assert sent == []
        assert len(sent) == 1
        with pytest.raises(RuntimeError), transaction.atomic():
            notify.delay_on_commit(2)
            raise RuntimeError("rollback")
        assert len(sent) == 1
    finally:
        celery_signals.after_task_publish.disconnect(dispatch_uid="dj")


def test_canvas_in_eager_mode(celery_app: Celery) -> None:
    from asyncq.compat import chain, chord, group

    @celery_app.task(name="unit.e_add")
    def add(x: int, y: int) -> int:
        return x + y

    @celery_app.task(name="unit.e_sum")
    def tsum(xs: list[int]) -> int:
        return sum(xs)

    celery_app.conf.task_always_eager = True
    assert add.s(1, 2).delay().get() == 3
    assert (add.s(1, 2) | add.s(10)).apply_async().get() == 13
    assert chain(add.s(1, 1), add.s(1)).apply().get() == 3
    assert group(add.s(i, i) for i in range(3)).apply_async().get() == [0, 2, 4]
    assert chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async().get() == 6


def test_publish_headers_added_by_a_receiver_reach_the_task(celery_app: Celery) -> None:
    @celery_app.task(name="unit.headers", bind=True)
    def headers(self) -> dict[str, object]:  # type: ignore[no-untyped-def]
        return dict(self.request.headers)

    def inject(headers: dict[str, object], **kw: object) -> None:
        headers["traceparent"] = "00-abc-def-01"

    celery_signals.before_task_publish.connect(inject, dispatch_uid="trace")
    try:
        with ThreadWorker(celery_app):
            assert headers.delay().get(timeout=10)["traceparent"] == "00-abc-def-01"
    finally:
        celery_signals.before_task_publish.disconnect(dispatch_uid="trace")


def test_on_after_configure_and_per_call_max_retries(celery_app: Celery) -> None:
    r = redis.Redis.from_url(flushed_url(COMPAT_DB))

    @celery_app.task(name="unit.cfg_beat")
    def cfg_beat() -> None:
        r.rpush("unit:cfg", 1)

    @celery_app.on_after_configure.connect
    def setup(sender: Celery, **kw: object) -> None:
        sender.add_periodic_task(0.5, cfg_beat.s(), name="configured")

    @celery_app.task(name="unit.stubborn", bind=True, max_retries=1)
    def stubborn(self) -> int:  # type: ignore[no-untyped-def]
        if self.request.retries < 3:
            raise self.retry(countdown=0.01, max_retries=5)  # the call's limit wins over the task's
        return int(self.request.retries)

    try:
        with ThreadWorker(celery_app):
            assert stubborn.delay().get(timeout=10) == 3
            deadline = time.monotonic() + 10
            while r.llen("unit:cfg") < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert r.llen("unit:cfg") >= 2
    finally:
        r.close()


def test_task_annotations_and_bad_rate_limit_are_refused() -> None:
    app = Celery("x", broker=redis_url(COMPAT_DB))
    app.conf.task_annotations = {"*": {"rate_limit": "1/s"}}
    with pytest.raises(ImproperlyConfigured, match="task_annotations is not supported"):
        app.asyncq_app  # noqa: B018
    app = Celery("x", broker=redis_url(COMPAT_DB))
    with pytest.raises(ImproperlyConfigured, match="rate_limit"):
        app.task(rate_limit="fast")(lambda: None)


def test_base_call_override_wraps_every_run_and_current_app_proxy(celery_app: Celery) -> None:
    from asyncq.compat import Task, current_app

    class Session(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            return {"session": "open", "result": super().__call__(*args, **kwargs)}

    @current_app.task(name="unit.with_session", base=Session)  # the proxy reaches the current app
    def with_session(x: int) -> int:
        return x + 1

    assert current_app.conf is celery_app.conf and current_app() is celery_app
    with ThreadWorker(celery_app):
        assert with_session.delay(1).get(timeout=10) == {"session": "open", "result": 2}


def test_unread_keys_are_summarised_once_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    app = Celery("x", broker=redis_url(COMPAT_DB))
    with caplog.at_level(logging.DEBUG, logger="asyncq.compat"):
        app.conf.task_queues = ("a", "b")
        app.conf.update({"SECRET_KEY": "s", "SQLALCHEMY_DATABASE_URI": "sqlite://", "DEBUG": True})  # Flask's config
        assert not [r for r in caplog.records if r.levelno >= logging.INFO]  # quiet by default
        app.asyncq_app  # noqa: B018
        app.asyncq_app  # noqa: B018
    summary = [r for r in caplog.records if "not read by asyncq.compat" in r.getMessage()]
    assert len(summary) == 1 and summary[0].levelno == logging.DEBUG
    assert "task_queues" in summary[0].getMessage() and "SECRET_KEY" in summary[0].getMessage()
    app.close()  # (pydantic=True, once refused here, is implemented: tests/test_compat_app_surface.py)


def test_retry_delay_from_base_class_and_config(celery_app: Celery) -> None:
    from asyncq.compat import Task

    class Patient(Task):
        default_retry_delay = 7

    @celery_app.task(name="unit.based", base=Patient)
    def based() -> None: ...

    @celery_app.task(name="unit.plain_delay")
    def plain_delay() -> None: ...

    celery_app.conf.task_default_retry_delay = 42
    assert based.default_retry_delay == 7
    from asyncq.compat.request import Context, current_request

    token = current_request.set(Context(id="x", called_directly=False, retries=0))
    try:
        assert based.retry(throw=False).when == 7
        assert plain_delay.retry(throw=False).when == 42  # the app's setting, read when retrying
    finally:
        current_request.reset(token)


def test_a_job_whose_workers_keep_dying_fails_with_worker_lost(celery_app: Celery) -> None:
    from asyncq.compat.exceptions import WorkerLostError

    @celery_app.task(name="unit.poison")
    def poison() -> None: ...

    r = poison.apply_async(countdown=0.5)
    client = redis.Redis.from_url(redis_url(COMPAT_DB))
    client.set(f"arq:retry:{r.id}", 4)  # four claims already, each ended by a lost worker:
    client.hset("asyncq:recoveries", r.id, 4)  # the core counts those as recoveries, not tries
    client.close()
    with ThreadWorker(celery_app), pytest.raises(WorkerLostError, match="lost 4 times"):
        r.get(timeout=10)


def test_def_tasks_share_the_workers_thread_limit(celery_app: Celery) -> None:
    """Celery-style ``def`` tasks run under the worker's one thread limiter (``threads``), not a fixed pool."""
    lock = threading.Lock()
    active = [0, 0]  # now, most at once

    @celery_app.task(name="unit.hold")
    def hold(i: int) -> int:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        time.sleep(0.3)
        with lock:
            active[0] -= 1
        return i

    with ThreadWorker(celery_app, threads=2):
        results = [hold.delay(i) for i in range(6)]
        assert [r.get(timeout=20) for r in results] == list(range(6))
    assert active[1] <= 2
