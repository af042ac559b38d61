"""Nested canvases as Celery runs them (issue #14): a chain ending in a group, groups of chains, chords whose
header holds chains, groups and chords, chord bodies that are canvases, nested groups unrolled into one result,
and failures that travel on (a failed header member fails the body with its errbacks run; a failed chain step
fails what follows, so nothing waits forever). A real asyncq worker runs the tasks (in a thread, as in
test_compat_unit)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from asyncq.compat import Celery, chain, chord, group
from asyncq.compat.canvas import from_dict
from asyncq.compat.exceptions import ChordError

from .compat_worker import COMPAT_DB, ThreadWorker
from .conftest import flushed_url


class Boom(Exception):
    pass


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("nested", broker=flushed_url(COMPAT_DB), backend=flushed_url(COMPAT_DB))

    @app.task(name="nested.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="nested.identity")
    def identity(x: object) -> object:
        return x

    @app.task(name="nested.tsum")
    def tsum(xs: list[int]) -> int:
        return sum(xs)

    @app.task(name="nested.fail")
    def fail(*args: object) -> None:
        raise Boom("expected")

    @app.task(name="nested.record")
    def record(key: str) -> None:  # one argument: an "old style" errback, sent (immutable: si)
        app.conf.setdefault("recorded", []).append(key)

    yield app
    app.close()


def test_dict_form_round_trips_every_canvas(app: Celery) -> None:
    add, tsum = app.tasks["nested.add"], app.tasks["nested.tsum"]
    c = chain(add.s(1, 2), group(add.s(1), chain(add.s(2), add.s(3))), chord([add.s(1)], tsum.s()))
    back = from_dict(dict(c), app)
    assert isinstance(back, chain) and [type(t) for t in back.tasks] == [type(t) for t in c.tasks]
    assert isinstance(back.tasks[1].tasks[1], chain) and isinstance(back.tasks[2].body, type(tsum.s()))
    s = add.s(1)
    s.args = (5, )
    s.kwargs = {"y": 1}
    assert s["args"] == [5] and s["kwargs"] == {"y": 1}


def test_chains_ending_in_groups_and_groups_of_chains(app: Celery) -> None:
    add, identity = app.tasks["nested.add"], app.tasks["nested.identity"]
    with ThreadWorker(app):
        # a chain ending in a group: the group's members each get the last result
        assert (add.s(5, 6) | group(add.s(1) | add.s(2), add.s(3)))().get(timeout=10) == [14, 14]
        assert chain(group(identity.s(42), identity.s(42))).delay().get(timeout=10) == [42, 42]
        # nested groups are unrolled into one result; a chain ending in a group keeps its own
        nested = group(add.si(1, 10), group(add.si(1, 100), group(add.si(1, 1000), add.si(1, 2000))))
        assert nested().get(timeout=10) == [11, 101, 1001, 2001]
        mixed = group(identity.si(1), chain(identity.si(5), group(identity.si(3), identity.si(4))))
        assert mixed.delay().get(timeout=10) == [1, [3, 4]]
        # group(a | group(b, c)) returns the inner group's result, as Celery does
        assert group(add.s(1, 2) | group(add.s(1), add.s(2)))().get(timeout=10) == [4, 5]


def test_chords_with_canvases_in_header_and_body(app: Celery) -> None:
    add, identity, tsum = (app.tasks[f"nested.{n}"] for n in ("add", "identity", "tsum"))
    with ThreadWorker(app):
        header = (identity.si(1), chain(identity.si(2), add.s(1)), group(identity.si(4), identity.si(5)),
                  chord((identity.si(6),) * 3, tsum.s()))
        # the group is unrolled into the header; the chain and the chord count once each
        assert chord(header, identity.s())().get(timeout=10) == [1, 3, 4, 5, 18]
        # group | group | task: chord(g1, chord(g2, task)), as Celery upgrades it
        c = add.si(1, 0) | group(add.s(1), add.s(1)) | group(tsum.s(), tsum.s()) | tsum.s()
        assert c().get(timeout=10) == 8
        # a chord body that is a chain, then more steps
        body = chain(tsum.s(), add.s(10))
        assert (chord([add.si(1, 1), add.si(2, 2)], body) | add.s(100))().get(timeout=10) == 116
        # an empty header sends the body with []
        assert chord([], tsum.s())().get(timeout=10) == 0


def test_a_failed_header_member_fails_the_body_and_runs_its_errbacks(app: Celery) -> None:
    identity, fail, record = (app.tasks[f"nested.{n}"] for n in ("identity", "fail", "record"))
    with ThreadWorker(app):
        body = identity.s()
        body.link_error(record.si("body-errback"))
        res = chord([identity.si(1), fail.si()], body)()
        with pytest.raises((ChordError, Boom)):
            res.get(timeout=10)
        # a chain in the header fails at its first step: its later steps fail too, and so does the body;
        # get() raises the member's own exception (found through the parents, as in Celery)
        res = chord([chain(fail.si(), identity.s(), identity.s()), identity.si(2)], identity.s())()
        with pytest.raises(Boom):
            res.get(timeout=10)
        with pytest.raises(ChordError):
            res.get(timeout=10, follow_parents=False)
        # a failed chain step: the rest of the chain fails with the same exception (the errback runs once)
        c = chain(identity.si(1), fail.s(), identity.s(), identity.s()).on_error(record.si("chain-errback"))
        last = c.delay()
        with pytest.raises(Boom):
            last.get(timeout=10, follow_parents=False)
    assert app.conf["recorded"].count("body-errback") == 1
    assert app.conf["recorded"].count("chain-errback") == 1


def test_group_links_as_celery_does(app: Celery) -> None:
    identity, fail, record = (app.tasks[f"nested.{n}"] for n in ("identity", "fail", "record"))
    g = group(identity.si(1), identity.si(2))
    g.link(record.si("cb"))
    assert g.tasks[0].options["link"][0].immutable and "link" not in g.tasks[1].options
    g2 = group(fail.si(), identity.si(2))
    g2.link_error(identity.s())
    assert all(not t.options["link_error"][0].immutable for t in g2.tasks)  # each gets its member's id
    with ThreadWorker(app):
        assert g.delay().get(timeout=10) == [1, 2]


def test_a_generated_chord_header_is_sent_as_it_is_generated(app: Celery) -> None:
    add, tsum = app.tasks["nested.add"], app.tasks["nested.tsum"]
    done: list[int] = []

    @app.task(name="nested.note")
    def note(i: int) -> int:
        done.append(i)
        return i

    def header() -> Iterator[object]:
        for i in range(4):
            if i:  # the members before this one were sent already: the previous one runs while we generate
                deadline = time.monotonic() + 10
                while i - 1 not in done and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert i - 1 in done, "the chord header was generated in full before any member was sent"
            yield note.si(i)

    with ThreadWorker(app):
        res = chord(header(), tsum.s())()
        assert res.get(timeout=10) == 6
        assert len(res.parent.results) == 4  # the header's GroupResult, filled as the members were sent
        assert chord(iter([]), tsum.s())().get(timeout=10) == 0
        assert chord((add.si(i, 0) for i in range(3)), tsum.s()).apply().get() == 3


def test_errbacks_old_style_get_the_id_new_style_run_in_the_worker(app: Celery) -> None:
    fail = app.tasks["nested.fail"]
    seen: list[tuple[str, object]] = []

    @app.task(name="nested.old_style")
    def old_style(task_id: str) -> None:
        seen.append(("old", task_id))

    @app.task(name="nested.new_style")
    def new_style(request: object, exc: BaseException, tb: object) -> None:
        seen.append(("new", (getattr(request, "id", None), type(exc).__name__, tb is not None)))

    with ThreadWorker(app):
        res = fail.s().on_error(old_style.s()).on_error(new_style.s()).delay()
        with pytest.raises(Boom):
            res.get(timeout=10)
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert sorted(seen, key=lambda s: s[0]) == [("new", (res.id, "Boom", True)), ("old", res.id)]


def test_results_link_through_the_chord_header_as_in_celery(app: Celery) -> None:
    from asyncq.compat.result import AsyncResult, GroupResult

    identity, fail, tsum = (app.tasks[f"nested.{n}"] for n in ("identity", "fail", "tsum"))
    c = chain(identity.si(1), chord([identity.si(2), identity.si(3)], chain(tsum.s(), identity.s())))
    res = c.freeze()
    assert isinstance(res.parent, AsyncResult) and isinstance(res.parent.parent, GroupResult)
    assert isinstance(res.parent.parent.parent, AsyncResult) and res.parent.parent.parent.parent is None
    with ThreadWorker(app):
        assert c.delay().get(timeout=10) == 5
        # the body's result has the header as parent: get() raises the failed member's own exception
        with pytest.raises(Boom):
            chord([identity.si(1), fail.si()], identity.s()).delay().get(timeout=10)


def test_a_member_can_grow_its_chord(app: Celery) -> None:
    from asyncq.compat.canvas import join_add_member

    identity, tsum = app.tasks["nested.identity"], app.tasks["nested.tsum"]

    @app.task(name="nested.grow", bind=True)
    async def grow(self: object, extra: int) -> int:
        join = self.request.chord  # type: ignore[attr-defined]
        index = await join_add_member(app, join)
        await identity.si(extra).set(chord=join, group_id=join["group_id"], group_index=index).aapply_async()
        return 1

    with ThreadWorker(app):
        res = chord([grow.si(100), identity.si(2)], identity.s())()
        assert res.get(timeout=10) == [1, 2, 100]  # the added member's result comes after the original ones
        assert chord([grow.si(5), grow.si(7)], tsum.s())().get(timeout=10) == 14


def test_a_task_can_send_a_canvas_and_return_its_result(app: Celery) -> None:
    add = app.tasks["nested.add"]

    @app.task(name="nested.build")
    def build() -> object:
        return (add.s(1, 1) | add.s(2) | group(add.s(3), add.s(4)) | add.s(5))()

    with ThreadWorker(app):
        # the task returns at once (the worker does not wait for the result it returns, which would deadlock
        # a worker running one task at a time); the result is stored in Celery's tuple form
        inner = build.delay().get(timeout=10)
        assert len(inner) == 2 and isinstance(inner[0][1], list)


def test_a_canvas_sent_again_with_frozen_ids_runs_again(app: Celery) -> None:
    identity, tsum = app.tasks["nested.identity"], app.tasks["nested.tsum"]
    runs: list[int] = []

    @app.task(name="nested.count")
    def count(x: int) -> int:
        runs.append(x)
        return x

    member = count.si(5)
    member_id = member.freeze().id
    with ThreadWorker(app):
        assert chord([member, identity.si(1)], tsum.s())().get(timeout=10) == 6
        # the same frozen signature in another canvas: Celery runs it again (its result is replaced)
        assert chord([identity.si(2)], chain(identity.s(), member))().get(timeout=10) == 5
    assert runs == [5, 5] and member.id == member_id


def test_linking_an_equal_signature_twice_links_it_once(app: Celery) -> None:
    identity, record = app.tasks["nested.identity"], app.tasks["nested.record"]
    body = identity.s()
    for header in ([identity.si(1)], [identity.si(2)]):  # one body shared by two chords, as Celery's tests do
        chord(header, body).link_error(record.si("eb"))
    assert body.options["link_error"] == [record.si("eb")]


def test_celery_canvas_odds_and_ends(app: Celery) -> None:
    from asyncq.compat import Signature

    add, tsum = app.tasks["nested.add"], app.tasks["nested.tsum"]
    # Signature.from_dict rebuilds the canvas type; a chain's id is the one it was frozen with
    assert isinstance(Signature.from_dict(dict(chain(add.s(1), add.s(2)))), chain)
    assert add.si(1, 2).name == "nested.add"
    last = add.s(2).set(task_id="42")
    c = add.s(4) | last
    assert c.id is None
    c.freeze(last.id)
    assert c.id == "42"
    # a task object where a signature goes (chord([tsum, tsum], ...)) stands for task.s()
    t1 = chain(tsum.s(), group(add.s(8), add.s(16)), tsum.s() | add.s(32))
    with ThreadWorker(app):
        assert chord([add.s(0, 1)], chord([tsum, tsum], t1)).apply_async().get(timeout=10) == 60


def test_a_generated_group_outside_a_chord_header_is_generated_when_sent(app: Celery) -> None:
    add, tsum, identity = app.tasks["nested.add"], app.tasks["nested.tsum"], app.tasks["nested.identity"]
    with ThreadWorker(app):
        res = group(add.s(i, i) for i in range(4)).delay()
        assert len(res.results) == 4 and res.get(timeout=10) == [0, 2, 4, 6]
        # a chord with a generated header as a later chain step travels with its members
        c = chain(group(identity.s(i) for i in range(1, 4)) | tsum.s(),
                  chord(group(add.s(10) for _ in range(3)), tsum.s()))
        assert c().get(timeout=10) == 48


def test_a_canvas_sends_through_its_tasks_app(app: Celery) -> None:
    add = app.tasks["nested.add"]
    other = Celery("other", broker=flushed_url(COMPAT_DB))
    other.set_current()
    try:
        assert chain(add.s(1, 2), add.s(3)).app is app and group(add.s(1, 2)).app is app
        assert chord([add.s(1, 2)], add.s(3)).app is app
    finally:
        app.set_current()
        other.close()
