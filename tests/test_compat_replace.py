"""``Task.replace``: a task hands its place (result, callbacks, errbacks, chain, chord, group) to a signature, as in
Celery (issue #14). A real asyncq worker runs the tasks (in a thread, as in test_compat_unit); callbacks are
awaited through ids frozen in advance, never with sleeps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from asyncq.compat import Celery, chain, chord, group, states
from asyncq.compat.exceptions import ImproperlyConfigured

from .compat_worker import COMPAT_DB, ThreadWorker
from .conftest import flushed_url


class Boom(Exception):
    pass


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("replace", broker=flushed_url(COMPAT_DB), backend=flushed_url(COMPAT_DB))
    yield app
    app.close()


def _plain_tasks(app: Celery) -> dict[str, Any]:
    events: list[str] = []
    lock = threading.Lock()

    @app.task(name="r.add")
    def add(x: Any, y: Any) -> Any:
        return x + y

    @app.task(name="r.identity")
    def identity(x: Any) -> Any:
        return x

    @app.task(name="r.fail")
    def fail(*args: Any) -> None:
        raise Boom("expected")

    @app.task(name="r.record")
    def record(*args: Any) -> str:
        with lock:
            events.append(str(args[-1]) if args else "")
        return "recorded"

    return {"add": add, "identity": identity, "fail": fail, "record": record, "events": events}


def _nesting_tasks(app: Celery, plain: dict[str, Any]) -> dict[str, Any]:
    record = plain["record"]

    @app.task(name="r.nesting", bind=True)
    def nesting(self: Any, *_: Any) -> int:
        return int(self.request.replaced_task_nesting)

    @app.task(name="r.nested_once", bind=True)
    def nested_once(self: Any) -> Any:
        return self.replace(nesting.s())

    @app.task(name="r.nested_twice", bind=True)
    def nested_twice(self: Any) -> Any:
        return self.replace(nested_once.s())

    @app.task(name="r.replace_twice", bind=True)
    def replace_twice(self: Any, state: bool = False) -> Any:
        if state:
            record("out")
            return "done"
        record("in")
        return self.replace(chain(replace_nested.s(), replace_twice.si(state=True)))

    @app.task(name="r.replace_nested", bind=True)
    def replace_nested(self: Any, state: bool = False) -> Any:
        if state:
            record("inner out")
            return "inner"
        record("inner in")
        return self.replace(chain(nesting.s(), replace_nested.si(state=True)))

    return {"nesting": nesting, "nested_once": nested_once, "nested_twice": nested_twice,
            "replace_twice": replace_twice, "replace_nested": replace_nested}


@pytest.fixture
def tasks(app: Celery) -> dict[str, Any]:
    plain = _plain_tasks(app)
    add, identity, fail, record = plain["add"], plain["identity"], plain["fail"], plain["record"]

    @app.task(name="r.add_replaced", bind=True)
    def add_replaced(self: Any, x: int, y: int) -> Any:
        raise self.replace(add.s(x, y))

    @app.task(name="r.fail_replaced", bind=True)
    def fail_replaced(self: Any) -> Any:
        raise self.replace(fail.si())

    @app.task(name="r.replace_with_chain", bind=True)
    def replace_with_chain(self: Any, x: Any) -> Any:
        return self.replace(chain(identity.s(x), identity.s()))

    @app.task(name="r.replace_with_group", bind=True)
    def replace_with_group(self: Any, nums: list[int]) -> Any:
        return self.replace(group(add.s(n, 1) for n in nums))

    @app.task(name="r.lineage", bind=True)
    def lineage(self: Any, *_: Any) -> list[Any]:
        return [self.request.root_id, self.request.parent_id]

    @app.task(name="r.replace_with_lineage", bind=True)
    def replace_with_lineage(self: Any) -> Any:
        return self.replace(lineage.s())

    @app.task(name="r.grow", bind=True)
    def grow(self: Any, nums: list[int], val: int) -> int:
        for n in nums:
            self.add_to_chord(add.s(n, val))
        self.add_to_chord(group(add.s(n, val) for n in nums) | xsum.s())
        return 0

    @app.task(name="r.xsum")
    def xsum(nums: list[Any]) -> int:
        return sum(nums)

    @app.task(name="r.replace_with_empty_chain", bind=True)
    def replace_with_empty_chain(self: Any, *_: Any) -> Any:
        return self.replace(chain())

    nested = _nesting_tasks(app, plain)

    return {**plain, **nested,
            **{name: fn for name, fn in locals().items() if name not in ("app", "plain", "nested")}}


def test_result_of_a_replaced_task_is_its_replacements(app: Celery, tasks: dict[str, Any]) -> None:
    with ThreadWorker(app):
        r = tasks["add_replaced"].delay(42, 1337)
        assert r.get(timeout=10) == 42 + 1337
        assert r.state == states.SUCCESS and r.result == 42 + 1337
        failed = tasks["fail_replaced"].delay()
        with pytest.raises(Boom):
            failed.get(timeout=10)
        assert failed.state == states.FAILURE


def test_replace_with_a_chain_keeps_the_enclosing_chain_going(app: Celery, tasks: dict[str, Any]) -> None:
    t = tasks
    with ThreadWorker(app):
        assert t["replace_with_chain"].si(42).delay().get(timeout=10) == 42
        assert chain(t["replace_with_chain"].si(42), t["identity"].s()).delay().get(timeout=10) == 42
        middle = chain(t["identity"].s(42), t["replace_with_chain"].s(), t["add"].s(1))
        assert middle.delay().get(timeout=10) == 43
        assert chain(t["identity"].s(7), t["replace_with_chain"].s()).delay().get(timeout=10) == 7


def test_callbacks_and_errbacks_of_the_replaced_task_run_after_the_replacement(
        app: Celery, tasks: dict[str, Any]) -> None:
    t = tasks
    with ThreadWorker(app):
        callback = t["identity"].s()
        cb_result = callback.freeze()
        sig = t["add_replaced"].si(1, 2)
        sig.link(callback)
        assert sig.delay().get(timeout=10) == 3
        assert cb_result.get(timeout=10) == 3  # called with the replacement's result

        errback = t["identity"].si("errback ran")  # one argument: an "old style" errback, sent as a task
        eb_result = errback.freeze()
        failing = t["fail_replaced"].si()
        failing.link_error(errback)
        with pytest.raises(Boom):
            failing.delay().get(timeout=10)
        assert eb_result.get(timeout=10) == "errback ran"


def test_replace_with_a_group_returns_the_groups_list_in_order(app: Celery, tasks: dict[str, Any]) -> None:
    t = tasks
    with ThreadWorker(app):
        assert t["replace_with_group"].delay([2, 1, 5]).get(timeout=10) == [3, 2, 6]
        assert t["replace_with_group"].delay([7]).get(timeout=10) == [8]  # a group of one is still a list
        assert chord([t["add"].s(2, 5)], t["replace_with_group"].s()).delay().get(timeout=10) == [8]
        g = group([t["replace_with_group"].s([2, 1]), t["replace_with_group"].s([4, 3])] * 3)
        assert g.delay().get(timeout=10) == [[3, 2], [5, 4]] * 3


def test_a_replaced_chord_member_reports_to_the_chord(app: Celery, tasks: dict[str, Any]) -> None:
    t = tasks
    with ThreadWorker(app):
        c = chord([t["add"].s(1, 2), t["add_replaced"].s(3, 4), t["replace_with_chain"].s(5)], t["identity"].s())
        assert c.delay().get(timeout=10) == [3, 7, 5]


def test_nested_replacements_run_in_order_and_count_their_nesting(app: Celery, tasks: dict[str, Any]) -> None:
    t = tasks
    with ThreadWorker(app):
        assert t["replace_twice"].delay().get(timeout=10) == "done"
        assert t["events"] == ["in", "inner in", "inner out", "out"]
        assert t["nesting"].delay().get(timeout=10) == 0
        assert t["nested_once"].delay().get(timeout=10) == 1
        assert t["nested_twice"].delay().get(timeout=10) == 2
        assert chain(t["replace_nested"].s(), t["identity"].s()).delay().get(timeout=10) == "inner"


def test_the_replacement_is_a_child_of_the_replaced_task(app: Celery, tasks: dict[str, Any]) -> None:
    with ThreadWorker(app):
        r = tasks["replace_with_lineage"].delay()
        assert r.get(timeout=10) == [r.id, r.id]  # same root; the replaced task is the parent


def test_add_to_chord_makes_the_body_wait_for_the_added_members(app: Celery, tasks: dict[str, Any]) -> None:
    t = tasks
    with ThreadWorker(app):
        c = group([t["grow"].s([1, 2, 3], 4), t["add"].s(10, 10)]) | t["identity"].s()
        assert c.delay().get(timeout=10) == [0, 20, 5, 6, 7, 18]  # the added ones after the original members
        with pytest.raises(ValueError, match="not member of any chord"):
            t["grow"].delay([1], 1).get(timeout=10)


def test_replace_refuses_an_empty_chain_and_a_chord_member(app: Celery, tasks: dict[str, Any]) -> None:
    t = tasks
    with ThreadWorker(app):
        r = chain(t["identity"].s(1), t["replace_with_empty_chain"].s()).delay()
        with pytest.raises(ImproperlyConfigured, match="Cannot replace with an empty chain"):
            r.get(timeout=10)

    with pytest.raises(ImproperlyConfigured, match="must not be part of a chord"):
        t["add_replaced"].replace(t["add"].s(1, 2).set(chord={"group_id": "g"}))


def test_replace_runs_the_replacement_here_when_eager(app: Celery, tasks: dict[str, Any]) -> None:
    """Eagerly, replace() returns the replacement's result (so ``return self.replace(...)``, as in Celery)."""
    app.conf.task_always_eager = True
    assert tasks["replace_with_chain"].delay(9).get() == 9
    assert tasks["replace_with_group"].delay([1, 2]).get() == [2, 3]


def test_task_backend_is_the_apps_result_backend(app: Celery, tasks: dict[str, Any]) -> None:
    """Celery code in tasks calls ``self.backend.store_result(...)``: the task's backend is the app's."""
    assert tasks["add"].backend is app.backend
    with ThreadWorker(app):
        r = tasks["add"].delay(1, 2)
        assert r.get(timeout=10) == 3
    assert tasks["add"].backend.get_task_meta(r.id)["result"] == 3
