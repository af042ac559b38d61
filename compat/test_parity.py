"""Scenarios written once against the Celery API and run twice: under Celery 5.6 (a real ``celery worker``) and
under asyncq.compat (a real ``asyncq worker``). Each asserts what a user observes. ``compat/run.py`` runs both
and writes compat/REPORT.md.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from compat.proj import tasks
from compat.proj.runtime import (
    RUNTIME,
    AsyncResult,
    MaxRetriesExceededError,
    TaskRevokedError,
    TimeLimitExceeded,
    TimeoutError,
    chain,
    chord,
    group,
    signals,
    states,
)
from compat.proj.tasks import PaymentDeclined

T = 20  # seconds any single result may take


def recorded(r: redis.Redis, key: str) -> list[object]:
    return [json.loads(v) for v in r.lrange(f"parity:{key}", 0, -1)]


def wait_for(predicate, timeout: float = T):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# --- calling and results ---------------------------------------------------------------------------------
def test_delay_and_get() -> None:
    result = tasks.add.delay(2, 3)
    assert isinstance(result, AsyncResult)
    assert result.get(timeout=T) == 5
    assert result.state == states.SUCCESS and result.successful() and result.ready()
    assert result.result == 5


def test_apply_async_with_args_kwargs_and_task_id() -> None:
    task_id = f"parity-{uuid.uuid4()}"
    result = tasks.echo.apply_async((1, "a"), {"k": [1, 2]}, task_id=task_id)
    assert result.id == task_id
    assert result.get(timeout=T) == {"args": [1, "a"], "kwargs": {"k": [1, 2]}}


def test_unknown_id_is_pending() -> None:
    assert AsyncResult(f"never-sent-{uuid.uuid4()}").state == states.PENDING


def test_get_timeout_raises_celery_timeout_error() -> None:
    result = tasks.sleeper.delay(2)
    with pytest.raises(TimeoutError):
        result.get(timeout=0.2)
    assert result.get(timeout=T) == 2


def test_request_context_inside_the_task() -> None:
    info = tasks.whoami.delay().get(timeout=T)
    assert info["retries"] == 0 and info["called_directly"] is False and info["routing_key"] == "celery"
    assert info["id"]


def test_direct_call_runs_in_process() -> None:
    assert tasks.add(1, 1) == 2
    assert tasks.whoami()["called_directly"] is True


def test_shared_task() -> None:
    assert tasks.shared_double.delay(21).get(timeout=T) == 42


def test_argument_check_at_call_time() -> None:
    with pytest.raises(TypeError):
        tasks.add.delay(1, 2, 3)


def test_ignore_result_returns_none(r: redis.Redis) -> None:
    marker = str(uuid.uuid4())
    result = tasks.fire_and_forget.delay(marker)
    wait_for(lambda: marker in recorded(r, "fire_and_forget"))
    assert result.get(timeout=1) is None


# --- errors ----------------------------------------------------------------------------------------------
def test_exception_propagates_with_its_type() -> None:
    result = tasks.charge.delay(10)
    with pytest.raises(PaymentDeclined, match="card declined for 10"):
        result.get(timeout=T)
    assert result.state == states.FAILURE and result.failed()
    assert isinstance(result.result, PaymentDeclined)
    assert "PaymentDeclined" in (result.traceback or "")


def test_propagate_false_returns_the_exception() -> None:
    result = tasks.charge.delay(5)
    exc = result.get(timeout=T, propagate=False)
    assert isinstance(exc, PaymentDeclined)


# --- retries ---------------------------------------------------------------------------------------------
def test_self_retry_until_success() -> None:
    assert tasks.flaky.delay(2).get(timeout=T) == 2


def test_autoretry_for_with_backoff() -> None:
    assert tasks.auto_flaky.delay(2).get(timeout=T) == "ok after 2"


def test_max_retries_exceeded_raises_the_last_error() -> None:
    with pytest.raises(ValueError, match="still broken"):
        tasks.always_retry.delay().get(timeout=T)


def test_max_retries_exceeded_error_type_exists() -> None:
    assert issubclass(MaxRetriesExceededError, Exception)


# --- custom base class and signals -----------------------------------------------------------------------
def test_custom_base_task_hooks(r: redis.Redis) -> None:
    ok = tasks.audited.delay(4)
    assert ok.get(timeout=T) == 8
    wait_for(lambda: len(recorded(r, f"audit:{ok.id}")) >= 3)
    assert recorded(r, f"audit:{ok.id}") == ["before_start", "on_success:8", "after_return:SUCCESS"]
    bad = tasks.audited.delay(-1)
    with pytest.raises(ValueError):
        bad.get(timeout=T)
    wait_for(lambda: len(recorded(r, f"audit:{bad.id}")) >= 3)
    assert recorded(r, f"audit:{bad.id}") == ["before_start", "on_failure:ValueError", "after_return:FAILURE"]


def test_task_signals_in_the_worker(r: redis.Redis) -> None:
    ok = tasks.add.delay(20, 22)
    assert ok.get(timeout=T) == 42
    wait_for(lambda: len(recorded(r, f"signals:{ok.id}")) >= 3)
    assert recorded(r, f"signals:{ok.id}") == ["task_prerun", "task_success:42", "task_postrun:SUCCESS"]
    bad = tasks.charge.delay(1)
    with pytest.raises(PaymentDeclined):
        bad.get(timeout=T)
    wait_for(lambda: recorded(r, f"signals:{bad.id}"))
    assert recorded(r, f"signals:{bad.id}") == ["task_failure:PaymentDeclined"]


def test_publish_signals_in_the_producer() -> None:
    seen: list[tuple[str, str]] = []

    def before(sender=None, headers=None, **kw):  # type: ignore[no-untyped-def]
        seen.append(("before", sender))

    def after(sender=None, **kw):  # type: ignore[no-untyped-def]
        seen.append(("after", sender))

    signals.before_task_publish.connect(before)
    signals.after_task_publish.connect(after)
    try:
        tasks.add.delay(1, 1).get(timeout=T)
    finally:
        signals.before_task_publish.disconnect(before)
        signals.after_task_publish.disconnect(after)
    assert seen == [("before", "compat.proj.tasks.add"), ("after", "compat.proj.tasks.add")]


# --- time ------------------------------------------------------------------------------------------------
def test_countdown_delays_the_start() -> None:
    started = time.monotonic()
    result = tasks.add.apply_async((1, 2), countdown=1)
    assert result.state == states.PENDING
    assert result.get(timeout=T) == 3
    assert time.monotonic() - started >= 0.9


def test_eta_in_the_past_runs_now() -> None:
    result = tasks.add.apply_async((2, 2), eta=datetime.now(UTC) - timedelta(seconds=5))
    assert result.get(timeout=T) == 4


def test_expired_task_is_revoked() -> None:
    result = tasks.add.apply_async((1, 1), countdown=1, expires=0.5)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=T)
    assert result.state == states.REVOKED


def test_hard_time_limit_fails_the_task() -> None:
    result = tasks.hard_limited.delay()
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=T)
    assert result.state == states.FAILURE


def test_soft_time_limit_is_raised_inside_the_task() -> None:
    assert tasks.soft_limited.delay().get(timeout=T) == "cleaned up"


def test_update_state_shows_progress() -> None:
    result = tasks.progress.delay(5)
    state = wait_for(lambda: result.state if result.state == "PROGRESS" else None)
    assert state == "PROGRESS" and result.info["total"] == 5
    assert result.get(timeout=T) == "complete"


# --- routing ---------------------------------------------------------------------------------------------
def test_task_routes_glob_sends_to_its_queue() -> None:
    assert tasks.routed_urgent.delay(7).get(timeout=T) == 7
    assert tasks.whoami.apply_async(queue="priority").get(timeout=T)["routing_key"] == "priority"


# --- canvas ----------------------------------------------------------------------------------------------
def test_chain_with_pipe_and_immutable_signature() -> None:
    assert (tasks.add.s(1, 2) | tasks.mul.s(10) | tasks.add.s(5)).apply_async().get(timeout=T) == 35
    assert chain(tasks.add.s(1, 1), tasks.add.si(100, 1)).apply_async().get(timeout=T) == 101


def test_chain_failure_propagates_to_the_last_result() -> None:
    with pytest.raises(PaymentDeclined):
        chain(tasks.add.s(1, 1), tasks.charge.s(), tasks.add.s(1)).apply_async().get(timeout=T)


def test_chain_with_a_group_in_the_middle_is_a_chord() -> None:
    flow = tasks.add.s(1, 1) | group(tasks.mul.s(2), tasks.mul.s(3)) | tasks.tsum.s()
    assert flow.apply_async().get(timeout=T) == 10  # add -> 2; mul(2, 2), mul(2, 3) -> [4, 6]; tsum -> 10


def test_group_of_a_chain_and_a_task() -> None:
    result = group(chain(tasks.add.s(1, 1), tasks.mul.s(10)), tasks.add.s(2, 2)).apply_async()
    assert result.get(timeout=T) == [20, 4]


def test_group() -> None:
    result = group(tasks.add.s(i, i) for i in range(10)).apply_async()
    assert result.get(timeout=T) == [i * 2 for i in range(10)]


def test_chord() -> None:
    assert chord(tasks.add.s(i, i) for i in range(10))(tasks.tsum.s()).get(timeout=T) == 90
    assert (group(tasks.mul.s(i, 2) for i in range(4)) | tasks.tsum.s()).apply_async().get(timeout=T) == 12


def test_link_and_link_error(r: redis.Redis) -> None:
    marker = 1000 + int(time.time()) % 1000
    tasks.add.apply_async((marker, 0), link=tasks.remember.s()).get(timeout=T)
    wait_for(lambda: marker in recorded(r, "callback"))
    bad = tasks.charge.apply_async((1,), link_error=tasks.on_error.s())
    with pytest.raises(PaymentDeclined):
        bad.get(timeout=T)
    wait_for(lambda: bad.id in recorded(r, "errback"))


def test_map_and_starmap() -> None:
    assert tasks.add.starmap([(1, 1), (2, 2)]).apply_async().get(timeout=T) == [2, 4]
    assert tasks.tsum.map([[1, 2], [3]]).apply_async().get(timeout=T) == [3, 3]


# --- control ---------------------------------------------------------------------------------------------
def test_revoke_before_it_runs() -> None:
    result = tasks.add.apply_async((1, 1), countdown=2)
    result.revoke()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=T)
    assert result.state == states.REVOKED


def test_inspect_active_lists_a_running_task() -> None:
    from compat.proj.celery import app

    result = tasks.sleeper.delay(3)
    active = wait_for(lambda: [t for jobs in (app.control.inspect(timeout=1).active() or {}).values()
                                for t in jobs if t["id"] == result.id], timeout=T)
    assert active[0]["id"] == result.id
    result.get(timeout=T)


def test_periodic_task_from_beat_schedule(r: redis.Redis) -> None:
    before = len(recorded(r, "tick"))
    wait_for(lambda: len(recorded(r, "tick")) >= before + 2, timeout=10)


# --- eager mode and apply --------------------------------------------------------------------------------
def test_apply_runs_eagerly() -> None:
    result = tasks.add.apply((3, 4))
    assert result.get() == 7 and result.state == states.SUCCESS
    failed = tasks.charge.apply((1,))
    assert failed.state == states.FAILURE
    with pytest.raises(PaymentDeclined):
        failed.get()


def test_task_always_eager() -> None:
    from compat.proj.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    try:
        assert tasks.add.delay(5, 5).get() == 10
        with pytest.raises(PaymentDeclined):
            tasks.charge.delay(1)
    finally:
        app.conf.task_always_eager = False
        app.conf.task_eager_propagates = False


# --- what asyncq does and Celery cannot ------------------------------------------------------------------
@pytest.mark.asyncq_only("Celery 5.6 cannot run `async def` task bodies (celery#3883); asyncq runs them natively")
def test_async_def_task() -> None:
    assert tasks.async_double.delay(21).get(timeout=T) == 42


@pytest.mark.differs("revokes are persistent in asyncq (kept in Redis); Celery keeps them in worker memory")
def test_revoke_is_visible_to_any_client() -> None:
    result = tasks.add.apply_async((2, 2), countdown=3)
    result.revoke()
    if RUNTIME == "asyncq":
        assert AsyncResult(result.id).state == states.REVOKED  # at once, from Redis, for every client
    else:
        assert AsyncResult(result.id).state == states.PENDING  # until the worker holding the message acts
    with pytest.raises(TaskRevokedError):
        result.get(timeout=T)


@pytest.mark.differs("asyncq never prefetches: inspect().reserved() is always empty; Celery reserves "
                     "worker_prefetch_multiplier x concurrency messages")
def test_nothing_is_reserved_while_busy() -> None:
    from compat.proj.celery import app

    results = [tasks.sleeper.delay(1) for _ in range(8)]
    reserved = app.control.inspect(timeout=1).reserved() or {}
    if RUNTIME == "asyncq":
        assert all(not jobs for jobs in reserved.values())
    for res in results:
        res.get(timeout=T)
