"""The Celery app surface Celery's own integration suite uses (issue #14): ``app.register_task`` for class-based
tasks, autodiscovery that skips what is not a package, ``@task(pydantic=True)``, Celery's node names, revoked and
expired tasks read as REVOKED, and ``app.control.inspect()`` keyed by worker name. Tasks run on a real asyncq
worker (in a thread, as in test_compat_unit)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest

from asyncq.compat import Celery, Task, states
from asyncq.compat.exceptions import ImproperlyConfigured, TaskRevokedError
from asyncq.compat.utils import nodenames

from .compat_worker import COMPAT_DB, ThreadWorker
from .conftest import flushed_url


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    app = Celery("surface", broker=flushed_url(COMPAT_DB), backend=flushed_url(COMPAT_DB))
    yield app
    app.close()


# --- register_task ------------------------------------------------------------------------------------------
class Doubler(Task):
    name = "surface.doubler"

    def run(self, x: int) -> int:
        return 2 * x


class Unnamed(Task):
    def run(self) -> str:
        return "ok"


def test_register_task_serves_a_class_based_task(celery_app: Celery) -> None:
    task = celery_app.register_task(Doubler())
    assert celery_app.tasks["surface.doubler"] is task and task.app is celery_app
    by_class = celery_app.register_task(Unnamed, ignore_result=False)
    assert by_class.name == f"{__name__}.Unnamed"  # Celery's generated name: module.ClassName
    with ThreadWorker(celery_app):
        assert task.delay(21).get(timeout=10) == 42
        assert by_class.delay().get(timeout=10) == "ok"


def test_register_task_refuses_what_is_not_a_task(celery_app: Celery) -> None:
    with pytest.raises(ImproperlyConfigured, match="use @app.task"):
        celery_app.register_task(lambda: 1)


# --- autodiscovery ------------------------------------------------------------------------------------------
def test_autodiscovery_skips_names_that_are_not_packages_and_raises_for_missing_ones(celery_app: Celery) -> None:
    # a module attribute ('datetime.datetime') and a plain module hold no tasks module: skipped, as in Celery
    celery_app.autodiscover_tasks(["datetime.datetime", "json.decoder", "asyncq.compat"], "no_such_module",
                                  force=True)
    with pytest.raises(ModuleNotFoundError) as info:
        celery_app.autodiscover_tasks(["nonexistent.package"], "tasks", force=True)
    assert info.value.name == "nonexistent"


# --- pydantic=True ------------------------------------------------------------------------------------------
class Point(pydantic.BaseModel):
    x: int
    y: int


class Total(pydantic.BaseModel):
    total: int
    at: datetime


def test_pydantic_task_validates_model_arguments_and_dumps_model_results(celery_app: Celery) -> None:
    @celery_app.task(name="surface.add_points", pydantic=True)
    def add_points(p: Point, q: Point | None = None, scale: int = 1) -> Total:
        return Total(total=scale * (p.x + p.y + (q.x + q.y if q else 0)), at=datetime(2026, 1, 1, tzinfo=UTC))

    @celery_app.task(name="surface.add_points_async", pydantic=True, bind=True)
    async def add_points_async(self: Task, p: Point) -> Total:  # strings (__future__.annotations): resolved later
        return Total(total=p.x + p.y, at=datetime(2026, 1, 1, tzinfo=UTC))

    # called directly too, as in Celery: plain data in, the body gets models, plain data out
    assert add_points({"x": 1, "y": 2})["total"] == 3
    with ThreadWorker(celery_app):
        assert add_points.delay({"x": 1, "y": 2}, {"x": 3, "y": 4}, scale=2).get(timeout=10) == {
            "total": 20, "at": "2026-01-01T00:00:00Z"}  # model_dump(mode="json"), as Celery's default
        assert add_points_async.delay({"x": 5, "y": 6}).get(timeout=10)["total"] == 11
        bad = add_points.delay({"x": "not a number", "y": 2})
        with pytest.raises(Exception, match="validation error"):
            bad.get(timeout=10)


def test_pydantic_strict_refuses_coercion(celery_app: Celery) -> None:
    @celery_app.task(name="surface.strict", pydantic=True, pydantic_strict=True)
    def strict(p: Point) -> int:
        return p.x

    assert strict(Point(x=1, y=2)) == 1 and strict({"x": 1, "y": 2}) == 1
    with pytest.raises(pydantic.ValidationError):
        strict({"x": "1", "y": 2})


def test_pydantic_without_pydantic_installed_says_what_to_install(celery_app: Celery,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)  # what an environment without pydantic looks like

    def f(p: Any) -> None: ...

    with pytest.raises(ImproperlyConfigured, match="pip install pydantic"):
        celery_app.task(name="surface.nopyd", pydantic=True)(f)


# --- node names ---------------------------------------------------------------------------------------------
def test_node_names_are_celerys() -> None:
    assert nodenames.nodesplit("w1@host") == ("w1", "host")
    assert nodenames.nodesplit("host") == (None, "host")
    assert nodenames.default_nodename("w1") == "celery@w1"
    assert nodenames.default_nodename(None) == f"celery@{nodenames.gethostname()}"
    assert nodenames.default_nodename("w1@h") == "w1@h"
    assert nodenames.anon_nodename("h") == f"gen{__import__('os').getpid()}@h"


# --- revoked and expired before they run --------------------------------------------------------------------
def test_revoked_or_expired_before_running_reads_revoked(celery_app: Celery) -> None:
    @celery_app.task(name="surface.add")
    def add(x: int, y: int) -> int:
        return x + y

    revoked = add.apply_async((1, 1), countdown=30)
    revoked.revoke()
    expired = add.apply_async((1, 1), expires=datetime.now(UTC) - timedelta(seconds=1))
    with ThreadWorker(celery_app):
        for result in (revoked, expired):
            with pytest.raises(TaskRevokedError):
                result.get(timeout=10)
            assert result.status == states.REVOKED
            assert result.ready() and not result.failed() and not result.successful()


# --- inspect ------------------------------------------------------------------------------------------------
def _wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_inspect_answers_keyed_by_worker_name(celery_app: Celery) -> None:
    @celery_app.task(name="surface.sleep")
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @celery_app.task(name="surface.add", rate_limit="10/s")
    def add(x: int, y: int, z: int = 0) -> int:
        return x + y + z

    name = "w1@" + nodenames.gethostname()  # Celery's node name form (ASYNCQ_WORKER_NAME)
    with ThreadWorker(celery_app, concurrency=1, name=name) as tw:
        assert tw.worker is not None and tw.worker.worker_id == name
        inspect = celery_app.control.inspect()
        assert inspect.ping() == {name: {"ok": "pong"}}
        assert celery_app.control.inspect(destination=["someone-else"]).ping() is None
        registered = inspect.registered()
        assert registered is not None and "surface.add" in registered[name]
        assert "surface.add [rate_limit=10/s]" in (inspect.registered("rate_limit") or {})[name]

        running = sleep.delay(3)
        active = _wait_for(lambda: (inspect.active() or {}).get(name))
        assert active[0]["id"] == running.id and active[0]["name"] == "surface.sleep"
        assert active[0]["args"] == [3] and active[0]["acknowledged"] is True and active[0]["hostname"] == name
        assert inspect.query_task(running.id) == {name: {running.id: ["active", active[0]]}}

        eta = datetime.now(UTC) + timedelta(seconds=30)
        later = add.apply_async((1, 2), {"z": 3}, eta=eta)
        scheduled = (inspect.scheduled() or {})[name]
        assert [(e["eta"], e["request"]["id"], e["request"]["kwargs"]) for e in scheduled] == [
            (eta.isoformat(), later.id, {"z": 3})]
        assert scheduled[0]["priority"] == 6 and scheduled[0]["request"]["acknowledged"] is False
        later.revoke()
        assert later.id in (inspect.revoked() or {})[name]

        stats = (inspect.stats() or {})[name]
        assert stats["pool"]["max-concurrency"] == 1 and stats["uptime"] >= 0
        conf = (inspect.conf() or {})[name]
        assert conf["task_default_queue"] == "celery" and "broker_url" in conf
        running.revoke(terminate=True)


# --- ResultSet, GroupResult.children, RETRY's exception -----------------------------------------------------
def test_result_set_waits_for_all_and_can_return_failures(celery_app: Celery) -> None:
    from asyncq.compat.result import GroupResult, ResultSet

    @celery_app.task(name="surface.add")
    def add(x: int, y: int) -> int:
        return x + y

    @celery_app.task(name="surface.boom")
    def boom() -> None:
        raise ValueError("boom")

    with ThreadWorker(celery_app):
        rs = ResultSet([add.delay(1, 1), add.delay(2, 2)])
        assert rs.get(timeout=10) == [2, 4] and rs.ready() and rs.successful() and rs.completed_count() == 2
        mixed = ResultSet([boom.delay(), add.delay(1, 1)])
        values = mixed.get(timeout=10, propagate=False)
        assert isinstance(values[0], ValueError) and values[1] == 2
        assert mixed.results[0].failed() and mixed.results[1].successful() and mixed.failed()
        with pytest.raises(ValueError, match="boom"):
            mixed.join(timeout=10)
    extra = add.s(0, 0).freeze()
    rs.add(extra)
    rs.add(extra)  # a set: once
    assert len(rs) == 3
    rs.discard(extra.id)
    rs.discard(extra.id)
    with pytest.raises(KeyError):
        rs.remove(extra.id)
    group_result = GroupResult("g1", rs.results, app=celery_app)
    assert group_result.children == rs.results and group_result == GroupResult("g1", list(rs), app=celery_app)


def test_retry_state_carries_the_retry_exception(celery_app: Celery) -> None:
    from asyncq.compat import result as result_module

    class Odd(Exception):
        def __init__(self, foo: str, bar: str) -> None:  # cannot be rebuilt from its args alone
            super().__init__(foo)
            self.bar = bar

    rebuilt = result_module.AsyncResult("r1", app=celery_app)._custom_result(
        {"state": states.RETRY, "meta": result_module.retry_meta(Odd("foo", "bar"))})
    assert "Odd" in str(rebuilt) and "foo" in str(rebuilt)


# --- configuration defaults, store_result and deduplication --------------------------------------------------
def test_celery_defaults_are_readable_and_per_app() -> None:
    a, b = Celery("a", broker=flushed_url(COMPAT_DB)), Celery("b", broker=flushed_url(COMPAT_DB))
    try:
        assert a.conf.worker_prefetch_multiplier == 4 and a.conf.worker_deduplicate_successful_tasks is False
        assert a.conf.worker_hijack_root_logger is True and a.conf.broker_heartbeat == 120
        a.conf.broker_transport_options["visibility_timeout"] = 10
        assert b.conf.broker_transport_options == {}  # defaults are copied per app
    finally:
        a.close()
        b.close()


def test_store_result_and_deduplication_of_successful_tasks(celery_app: Celery) -> None:
    from asyncq.compat.backend import stored_success

    celery_app.backend.store_result("t1", "first-pass", states.SUCCESS)
    celery_app.backend.store_result("t2", ValueError("no"), states.RETRY)
    assert celery_app.AsyncResult("t2")._custom_result(
        {"state": states.RETRY, "meta": {"exc_type": "ValueError", "exc_module": "builtins",
                                         "exc_message": ["no"]}}).args == ("no",)
    assert celery_app.bridge.run(stored_success(celery_app, "t1")) == (False, None)  # the option is off
    assert celery_app.bridge.run(stored_success(celery_app, "t1", marked=True)) == (True, "first-pass")  # sender's
    celery_app.conf.worker_deduplicate_successful_tasks = True
    assert celery_app.bridge.run(stored_success(celery_app, "t1")) == (True, "first-pass")
    assert celery_app.bridge.run(stored_success(celery_app, "t2")) == (False, None)  # not a SUCCESS
    assert celery_app.bridge.run(stored_success(celery_app, "t3")) == (False, None)


def test_test_workers_running_at_once_get_distinct_node_names() -> None:
    from asyncq.compat.contrib.testing import worker

    first = worker._free_name()
    assert first == nodenames.anon_nodename()
    worker._LIVE.add(first)
    try:
        second = worker._free_name()
        assert second != first and second.endswith("@" + nodenames.gethostname())
    finally:
        worker._LIVE.discard(first)


def test_get_raises_the_first_failed_parent_through_group_parents(celery_app: Celery) -> None:
    from asyncq.compat.result import GroupResult

    @celery_app.task(name="surface.add")
    def add(x: int, y: int) -> int:
        return x + y

    @celery_app.task(name="surface.boom")
    def boom(message: str = "boom") -> None:
        raise ValueError(message)

    with ThreadWorker(celery_app):
        header = GroupResult("g", [add.delay(1, 1), boom.delay("header member")], app=celery_app)
        body = boom.delay("later step")
        body.parent = header  # a chord's result: the header's GroupResult is its parent, as in Celery
        header.join(timeout=10, propagate=False)  # both failures exist (as in a chord): which one get() raises
        with pytest.raises(ValueError, match="header member"):  # the root-most failure, not the body's own
            body.get(timeout=10)
        fine = add.delay(2, 2)
        fine.parent = GroupResult("g2", [add.delay(1, 1)], app=celery_app)
        assert fine.get(timeout=10) == 4
        assert fine.as_tuple()[0][1] is not None  # the parent chain serializes through the group


# --- bytes through JSON, as kombu sends them ----------------------------------------------------------------
def test_bytes_arguments_and_results_round_trip_through_json(celery_app: Celery) -> None:
    from asyncq.compat.serialization import CeleryJsonSerializer

    codec = CeleryJsonSerializer()
    value = {"a": [b"text", b"\xff\x00binary"], "n": 1, "s": "plain", "d": {"__type__": "other", "__value__": 1}}
    assert codec.loads(codec.dumps(value)) == value
    assert codec.loads(b'{"__type__": "bytes", "__value__": "hi"}') == b"hi"  # what a Celery producer sends

    @celery_app.task(name="surface.echo")
    def echo(data: bytes) -> bytes:
        assert isinstance(data, bytes)
        return data + b"!"

    with ThreadWorker(celery_app):
        assert echo.delay(b"hello").get(timeout=10) == b"hello!"


def test_revoke_by_stamped_headers_replies_as_celery_and_is_not_a_revoked_id(celery_app: Celery) -> None:
    @celery_app.task(name="surface.add")
    def add(x: int, y: int) -> int:
        return x + y

    name = "w2@" + nodenames.gethostname()
    with ThreadWorker(celery_app, name=name):
        reply = celery_app.control.revoke_by_stamped_headers({"mid": ["a"]}, reply=True)
        assert reply == [{name: {"ok": "headers {'mid': ['a']} flagged as revoked, but not terminated"}}]
        celery_app.AsyncResult("x").revoke_by_stamped_headers({"mid": "b"})
        assert (celery_app.control.inspect().revoked() or {})[name] == []  # stamps are not task ids


def test_test_worker_serves_the_modules_of_the_apps_tasks(celery_app: Celery) -> None:
    from asyncq.compat.contrib.testing import worker

    celery_app.register_task(Doubler())  # defined in this module

    @celery_app.task(name="surface.local")
    def local() -> None: ...

    modules = worker.worker_spec(celery_app)["task_modules"]
    assert __name__ in modules  # what the worker process imports to know the same tasks
    assert not [m for m in modules if m.startswith(("asyncq.", "celery."))]  # built-ins are the worker's own


def test_test_worker_gets_the_apps_configuration_as_it_is_now() -> None:
    from asyncq.compat.contrib.testing import app as testing_app
    from asyncq.compat.contrib.testing import worker

    app = testing_app.TestApp(config={"broker_url": flushed_url(COMPAT_DB)})
    try:
        app.conf.worker_deduplicate_successful_tasks = True  # set after the app was made, before a worker starts
        config = worker.worker_spec(app)["config"]
        assert config["worker_deduplicate_successful_tasks"] is True
        assert config["broker_url"] == flushed_url(COMPAT_DB)
    finally:
        app.close()


def test_a_redelivered_task_with_a_recorded_success_is_not_run_again() -> None:
    """A real ``asyncq worker`` process (contrib.testing.start_worker), as Celery's dedup tests run it: the option
    set in the worker's app (which the test worker follows while it runs), or in the sender's app."""
    from asyncq.compat import chain
    from asyncq.compat.contrib.testing import app as testing_app
    from asyncq.compat.contrib.testing.worker import start_worker

    from . import compat_dedup_app  # noqa: F401 - its shared tasks are on every app

    url = flushed_url(COMPAT_DB)
    served = testing_app.TestApp(config={"broker_url": url}, set_as_current=True)
    sender = testing_app.TestApp(config={"broker_url": url}, set_as_current=True)
    store_then_reject, identity = sender.tasks["dedup_app.store_then_reject"], sender.tasks["dedup_app.identity"]
    try:
        with start_worker(served, perform_ping_check=False, shutdown_timeout=10):
            assert store_then_reject.apply_async().get(timeout=30) == "ran-again"  # off everywhere: runs again
            served.conf.worker_deduplicate_successful_tasks = True  # the running worker follows its app
            assert store_then_reject.apply_async().get(timeout=30) == "first-pass"
            served.conf.worker_deduplicate_successful_tasks = False
            sender.conf.worker_deduplicate_successful_tasks = True  # on in the sender only: it marks its messages
            flow = chain(store_then_reject.s(), identity.s())
            assert flow.apply_async().get(timeout=30) == "first-pass"  # the chain goes on with the recorded value
    finally:
        sender.close()
        served.close()


def test_settings_watch_and_follow_a_file(tmp_path: Any) -> None:
    import json

    from asyncq.compat.config import Settings

    seen: list[tuple[str, Any]] = []
    conf = Settings()
    stop = conf.watch(lambda key, value: seen.append((key, value)))
    conf.task_default_queue = "q1"
    stop()
    conf.task_default_queue = "q2"
    assert seen == [("task_default_queue", "q1")]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"task_default_queue": "from-file", "broker_url": "redis://elsewhere"}))
    follower = Settings({"broker_url": "redis://here"})
    follower.follow_file(path, skip=("broker_url",))
    assert follower.task_default_queue == "from-file" and follower.broker_url == "redis://here"
    tmp = tmp_path / "config.tmp"
    tmp.write_text(json.dumps({"task_default_queue": "changed"}))
    tmp.replace(path)  # replaced, as the test worker's file is
    assert follower.task_default_queue == "changed"


def test_a_group_get_raises_the_first_failure_without_waiting_for_the_rest(celery_app: Celery) -> None:
    from asyncq.compat import group

    @celery_app.task(name="surface.nap")
    async def nap(seconds: float) -> float:
        import asyncio

        await asyncio.sleep(seconds)
        return seconds

    @celery_app.task(name="surface.boom")
    def boom() -> None:
        raise ValueError("boom")

    with ThreadWorker(celery_app, concurrency=4):
        result = group(nap.s(5), boom.s(), nap.s(5)).apply_async()
        started = time.monotonic()
        with pytest.raises(ValueError, match="boom"):
            result.get(timeout=10)
        assert time.monotonic() - started < 4  # did not wait for the 5 s members (Celery's native join)
        values = group(nap.s(0.1), boom.s()).apply_async().get(timeout=10, propagate=False)
        assert values[0] == 0.1 and isinstance(values[1], ValueError)
        result.revoke(terminate=True)


def test_control_purge_discards_waiting_tasks_only(celery_app: Celery) -> None:
    @celery_app.task(name="surface.add", queue="surface-q")
    def add(x: int, y: int) -> int:
        return x + y

    waiting = [add.delay(i, i) for i in range(3)]
    later = add.apply_async((1, 1), countdown=60)
    assert celery_app.control.purge() == 3  # the queue of the app's task, not only the default one
    assert celery_app.control.purge() == 0
    assert [r.state for r in waiting] == [states.PENDING] * 3  # gone: unknown ids read PENDING, as in Celery
    with ThreadWorker(celery_app, queues=("surface-q",)):
        scheduled = celery_app.control.inspect().scheduled() or {}
        assert [e["request"]["id"] for jobs in scheduled.values() for e in jobs] == [later.id]  # it stays
    later.revoke()


def test_a_task_object_has_its_functions_name() -> None:
    """Celery's task objects answer ``__name__`` (pytest ids of parametrized tests, decorators, logs use it)."""
    app = Celery("named", broker="redis://127.0.0.1:1/0")

    @app.task
    def send_welcome(user_id: int) -> None: ...

    assert send_welcome.__name__ == "send_welcome"
    assert type(send_welcome).__name__ == "send_welcome"
