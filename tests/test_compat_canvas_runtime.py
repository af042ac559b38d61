"""Small runtime rules Celery's integration suite reads (issue #14): the time-limit check's wording, and the
parent of a task applied eagerly from inside another task's body."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asyncq.compat import Celery

from .compat_worker import COMPAT_DB
from .conftest import flushed_url


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("runtime", broker=flushed_url(COMPAT_DB), backend=flushed_url(COMPAT_DB))
    yield app
    app.close()


def test_soft_time_limit_may_equal_the_hard_one_but_not_exceed_it(app: Celery) -> None:
    @app.task(name="runtime.noop")
    def noop() -> None:
        return None

    from asyncq.compat.publish import prepare

    prepare(app, "runtime.noop", (), {}, {"time_limit": 5, "soft_time_limit": 5})
    with pytest.raises(ValueError, match="soft_time_limit must be less than or equal to time_limit"):
        prepare(app, "runtime.noop", (), {}, {"time_limit": 5, "soft_time_limit": 6})


def test_a_task_applied_inside_another_has_it_as_parent_and_shares_its_root(app: Celery) -> None:
    @app.task(name="runtime.child", bind=True)
    def child(self: object) -> tuple[str | None, str | None]:
        request = self.request  # type: ignore[attr-defined]
        return request.parent_id, request.root_id

    @app.task(name="runtime.outer", bind=True)
    def outer(self: object) -> tuple[str | None, tuple[str | None, str | None]]:
        return self.request.id, child.apply().get()  # type: ignore[attr-defined]

    outer_id, (parent_id, root_id) = outer.apply().get()
    assert parent_id == outer_id and root_id == outer_id
    alone = child.apply()
    assert tuple(alone.get()) == (None, alone.id)  # on its own: no parent, its own root


def test_message_properties_reach_the_request_and_an_immutable_errback_keeps_its_arguments(app: Celery) -> None:
    import time

    from .compat_worker import ThreadWorker

    seen: list[object] = []

    @app.task(name="runtime.props", bind=True)
    def props(self: object) -> dict[str, object]:
        return dict(self.request.properties)  # type: ignore[attr-defined]

    @app.task(name="runtime.boom")
    def boom() -> None:
        raise ValueError("boom")

    @app.task(name="runtime.echo")
    def echo(message: str, key: str = "k") -> None:  # two positional parameters: "new style" by arity
        seen.append((message, key))

    with ThreadWorker(app):
        got = props.apply_async(app_id="1234").get(timeout=10)
        assert got["app_id"] == "1234" and got["correlation_id"]
        res = boom.apply_async(link_error=echo.si("called"))
        with pytest.raises(ValueError):
            res.get(timeout=10)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen == [("called", "k")]


def test_stamps_of_a_celery_message_reach_the_adopted_job(app: Celery) -> None:
    from asyncq.celery_protocol.decode import decode_message
    from asyncq.celery_protocol.encode import encode_message, message_bytes
    from asyncq.compat.celery_receive import adoption

    @app.task(name="runtime.stamped")
    def stamped() -> None:
        return None

    env = encode_message("runtime.stamped", "t-1", queue="celery",
                         headers={"stamped_headers": ["on"], "stamps": {"on": "yes"}})
    p = adoption(app, decode_message("tag", message_bytes(env), "celery"))
    assert p.spec.options.headers is not None
    celery = p.spec.options.headers["celery"]
    assert celery["stamped_headers"] == ["on"] and celery["stamps"] == {"on": "yes"}
