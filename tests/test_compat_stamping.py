"""Celery's canvas stamping on asyncq.compat (issue #14): ``Signature.stamp``, ``StampingVisitor``, stamped links,
the stamps on the message (``before_task_publish``) and on ``self.request`` in the worker, kept on retry and
carried onto a replacement. A real asyncq worker runs the tasks (in a thread, as in test_compat_unit)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from asyncq.compat import Celery, Task, chain, chord, group, signals, stamping, states
from asyncq.compat.canvas import StampingVisitor
from asyncq.compat.exceptions import TaskRevokedError
from asyncq.compat.stamping import merge

from .compat_worker import COMPAT_DB, ThreadWorker
from .conftest import flushed_url


class Stamp42(StampingVisitor):
    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        return {"stamp": 42}


class Fixed(StampingVisitor):
    def __init__(self, value: Any) -> None:
        self.value = value

    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        return {"mtask_id": self.value}


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("stamping", broker=flushed_url(COMPAT_DB), backend=flushed_url(COMPAT_DB))
    yield app
    app.close()


@pytest.fixture
def tasks(app: Celery) -> dict[str, Any]:
    @app.task(name="s.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="s.xsum")
    def xsum(nums: list[Any]) -> int:
        return sum(sum(n) if isinstance(n, list) else n for n in nums)

    @app.task(name="s.stamps", bind=True)
    def stamps(self: Any, *_: Any) -> Any:
        return [self.request.stamped_headers, self.request.stamps]

    @app.task(name="s.retry_once_stamps", bind=True, max_retries=1, default_retry_delay=0)
    def retry_once_stamps(self: Any) -> Any:
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return [self.request.retries, self.request.stamps]

    class OnReplace(Task):
        def on_replace(self, sig: Any) -> Any:
            sig.stamp(replaced="yes")
            return super().on_replace(sig)

    @app.task(name="s.replaced", bind=True, base=OnReplace)
    def replaced(self: Any) -> Any:
        return self.replace(stamps.s())

    return {"add": add, "xsum": xsum, "stamps": stamps, "retry_once_stamps": retry_once_stamps,
            "replaced": replaced}


def _tasks_of(sig: Any) -> list[Any]:
    """Every task signature of a canvas (chain steps, group members, chord header and body)."""
    kind = sig.get("subtask_type")
    if kind in ("chain", "group"):
        return [t for s in sig.tasks for t in _tasks_of(s)]
    if kind == "chord":
        return [t for s in sig.header.tasks for t in _tasks_of(s)] + _tasks_of(sig.body)
    return [sig]


def test_every_task_of_a_canvas_is_stamped(tasks: dict[str, Any]) -> None:
    add, xsum = tasks["add"], tasks["xsum"]
    canvases = [
        add.s(1, 1),
        group(add.s(1, 1), add.s(2, 2)),
        chain(add.s(1, 1), add.s(2)),
        chord([add.s(1, 1) | add.s(10), add.s(2, 2)], xsum.s()),
        chord(group(chain(add.s(1, 1), add.s(2)), chord([add.s(3, 3)], xsum.s())), xsum.s()),
    ]
    for canvas in canvases:
        canvas.stamp(visitor=Stamp42())
        for sig in _tasks_of(canvas):
            assert sig.options["stamped_headers"] == ["stamp"] and sig.options["stamp"] == 42, sig


def test_links_are_stamped_and_a_later_stamp_wins(tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    sig = add.si(1, 1)
    sig.options["link"] = dict(add.si(2, 2))  # a single link as a dict, as Celery code sometimes sets it
    sig.options["link_error"] = [dict(add.si(3, 3))]
    sig.stamp(visitor=Stamp42())
    for link in (*sig.options["link"], *sig.options["link_error"]):
        assert link["options"]["stamp"] == 42 and link["options"]["stamped_headers"] == ["stamp"]

    first = add.si(1, 1)
    first.stamp(visitor=Fixed("old"))
    first.link(add.si(0, 0))
    first.stamp(visitor=Fixed("new"))
    assert first.options["mtask_id"] == "new"
    link = first.options["link"][0]
    assert link.options["mtask_id"] == "new" and "mtask_id" in link.options["stamped_headers"]

    appended = add.si(1, 1)
    appended.stamp(mtask_id="a")
    appended.stamp(append_stamps=True, mtask_id="b")
    assert appended.options["mtask_id"] == ["b", "a"]


def test_merge_follows_celerys_rules() -> None:
    into: dict[str, Any] = {"a": 1, "l": [1], "d": {"x": 1}}
    merge(into, {"a": 2, "l": [2], "d": {"y": 2}, "new": 3}, aggregate=False)
    assert into == {"a": 1, "l": [1, 2], "d": {"x": 1, "y": 2}, "new": 3}
    both: dict[str, Any] = {"a": 1}
    merge(both, {"a": 2})
    assert both == {"a": [1, 2]}


def test_stamps_travel_as_message_headers_not_options(app: Celery, tasks: dict[str, Any]) -> None:
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def on_publish(headers: Any = None, properties: Any = None, **_: Any) -> None:
        seen.append((dict(headers), dict(properties)))

    signals.before_task_publish.connect(on_publish)
    try:
        with ThreadWorker(app):
            single = tasks["stamps"].si()
            single.stamp(visitor=Stamp42())
            assert single.delay().get(timeout=10) == [["stamp"], {"stamp": 42}]
            listed = tasks["stamps"].si()
            listed.stamp(stamp=[4, 2])
            assert listed.delay().get(timeout=10) == [["stamp"], {"stamp": [4, 2]}]
    finally:
        signals.before_task_publish.disconnect(on_publish)
    (h1, p1), (h2, _) = seen[:2]
    assert h1["stamped_headers"] == ["stamp"] and h1["stamps"] == {"stamp": 42}
    assert h2["stamps"] == {"stamp": [4, 2]}
    assert "stamped_headers" not in p1 and "stamp" not in p1 and "stamp" not in h1


def test_unstamped_task_has_no_stamps(app: Celery, tasks: dict[str, Any]) -> None:
    with ThreadWorker(app):
        assert tasks["stamps"].delay().get(timeout=10) == [None, None]


def test_stamps_reach_every_task_of_a_running_canvas(app: Celery, tasks: dict[str, Any]) -> None:
    stamps, add = tasks["stamps"], tasks["add"]
    canvas = chain(add.si(1, 1), stamps.s())
    canvas.stamp(visitor=Stamp42())
    members = group(stamps.s(), stamps.s())
    members.stamp(monitoring="m1")
    with ThreadWorker(app):
        assert canvas.delay().get(timeout=10) == [["stamp"], {"stamp": 42}]
        assert members.delay().get(timeout=10) == [[["monitoring"], {"monitoring": "m1"}]] * 2


def test_stamps_remain_on_retry(app: Celery, tasks: dict[str, Any]) -> None:
    sig = tasks["retry_once_stamps"].si()
    sig.stamp(visitor=Stamp42())
    with ThreadWorker(app):
        assert sig.delay().get(timeout=10) == [1, {"stamp": 42}]


def test_replacement_keeps_the_replaced_tasks_stamps_and_on_replace_can_add_more(
        app: Celery, tasks: dict[str, Any]) -> None:
    sig = tasks["replaced"].s()
    sig.stamp(visitor=Stamp42())
    with ThreadWorker(app):
        names, values = sig.delay().get(timeout=10)
    assert sorted(names) == ["replaced", "stamp"]
    assert values == {"stamp": 42, "replaced": "yes"}


def test_a_task_carrying_a_revoked_stamp_value_is_revoked(app: Celery, tasks: dict[str, Any]) -> None:
    stamps = tasks["stamps"]
    revoked = stamps.si()
    revoked.stamp(monitoring_id="m1")
    one_of_many = stamps.si()
    one_of_many.stamp(monitoring_id=["x", "m2"])
    free = stamps.si()
    free.stamp(monitoring_id="ok")
    with ThreadWorker(app):
        assert free.delay().get(timeout=10) == [["monitoring_id"], {"monitoring_id": "ok"}]
        # revoked while the worker is busy (its "any revoke?" cache is warm): the next stamped task sees it
        app.control.revoke_by_stamped_headers({"monitoring_id": ["m1"]})  # Celery's API
        app.bridge.run(stamping.arevoke_by_stamped_headers(app, {"monitoring_id": "m2"}))  # from async code
        for sig in (revoked, one_of_many):
            r = sig.delay()
            with pytest.raises(TaskRevokedError):
                r.get(timeout=10)
            assert r.state == states.REVOKED
        assert free.delay().get(timeout=10) == [["monitoring_id"], {"monitoring_id": "ok"}]
    with pytest.raises(TypeError, match="dict of stamp name"):
        stamping.revoke_entries(["monitoring_id"])  # type: ignore[arg-type]


def test_task_received_is_sent_in_the_worker_with_stamps_and_nesting(app: Celery, tasks: dict[str, Any]) -> None:
    """Celery sends task_received when the worker gets a message; asyncq sends it in the worker just before the
    task runs (claims happen only into a free slot). Receivers see the request's stamps and nesting level."""
    seen: list[tuple[str, Any, int]] = []

    def received(request: Any = None, **_: Any) -> None:
        seen.append((request.task, request.stamps, request.replaced_task_nesting))

    signals.task_received.connect(received)
    try:
        sig = tasks["stamps"].s()
        sig.stamp(monitoring="m2")
        with ThreadWorker(app):
            sig.delay().get(timeout=10)
            tasks["replaced"].delay().get(timeout=10)
    finally:
        signals.task_received.disconnect(received)
    assert ("s.stamps", {"monitoring": "m2"}, 0) in seen
    assert ("s.replaced", None, 0) in seen
    assert [n for name, _, n in seen if name == "s.stamps" and n > 0] == [1]  # the replacement, one level down
