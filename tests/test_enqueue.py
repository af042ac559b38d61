"""The producer side: task options, enqueue, dedupe, batching, and the errors a user meets."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
import redis

from asyncq import (
    App,
    BrokerUnavailable,
    ConfigurationError,
    JobStatus,
    RetryPolicy,
    SerializationError,
    UnknownTaskError,
    keys,
)

from .conftest import CORE_DB, redis_url


def test_unknown_task_option_is_rejected_with_the_known_ones(app: App) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option\(s\) retries .*known options: .*max_tries"):

        @app.task(retries=3)
        async def t() -> None: ...


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": "bad:name"}, "invalid queue name"),
        ({"priority": 11}, "invalid priority"),
        ({"max_tries": 0}, "max_tries must be"),
        ({"timeout": -1}, "timeout must be"),
        ({"retry": 5}, "retry must be a RetryPolicy"),
        ({"unique": "yes"}, "unique must be True or False"),
    ],
)
def test_bad_option_values_say_what_is_allowed(app: App, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        app.task(name="t", **options)(lambda: None)


def test_retry_policy_backoff_cap_and_jitter() -> None:
    p = RetryPolicy(base=1, factor=2, max_delay=5, jitter=False)
    assert [p.delay_for(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]
    j = RetryPolicy(base=4, jitter=True)
    assert all(2 <= j.delay_for(1) <= 4 for _ in range(100))
    only_io = RetryPolicy(retry_on=(OSError,), dont_retry_on=(FileNotFoundError,))
    assert only_io.should_retry(ConnectionError()) and not only_io.should_retry(ValueError())
    assert not only_io.should_retry(FileNotFoundError())
    with pytest.raises(ConfigurationError):
        RetryPolicy(retry_on=("ValueError",))  # type: ignore[arg-type]


def test_a_task_defined_in_a_function_needs_a_name(app: App) -> None:
    with pytest.raises(ConfigurationError, match="explicit name"):

        @app.task
        async def inner() -> None: ...


def test_two_tasks_with_one_name_are_refused(app: App) -> None:
    app.task(name="same")(lambda: 1)
    with pytest.raises(ConfigurationError, match="two tasks are named"):
        app.task(name="same")(lambda: 2)


def test_get_task_of_unknown_name(app: App) -> None:
    with pytest.raises(UnknownTaskError, match="no task named 'nope'"):
        app.get_task("nope")


async def test_calling_a_task_runs_it_directly(app: App) -> None:
    @app.task(name="double")
    async def double(x: int) -> int:
        return 2 * x

    assert await double(21) == 42


async def test_enqueue_writes_arq_layout(app: App, sync_redis: redis.Redis) -> None:
    @app.task(name="mail.send", queue="emails", priority=7)
    async def send(user_id: int) -> None: ...

    job = await send.enqueue(42)
    assert job.created and job.queue == "emails" and job.priority == 7
    assert sync_redis.zscore("arq:queue:emails#p7", job.job_id) is not None
    payload = app.serializer.loads(sync_redis.get(f"arq:job:{job.job_id}"))
    assert payload["f"] == "mail.send" and payload["a"] == [42] and payload["k"] == {}
    assert 0 < sync_redis.pttl(f"arq:job:{job.job_id}") <= 86_400_000
    assert await job.status() is JobStatus.queued
    assert sync_redis.sismember(keys.QUEUES_SET, "emails")


async def test_default_queue_and_priority_is_arqs_own_queue_key(app: App, sync_redis: redis.Redis) -> None:
    @app.task(name="plain")
    async def plain() -> None: ...

    job = await plain.enqueue()
    assert sync_redis.zscore("arq:queue", job.job_id) is not None


async def test_per_call_options(app: App, sync_redis: redis.Redis) -> None:
    @app.task(name="t")
    async def t(x: int) -> None: ...

    job = await t.enqueue_with((1,), job_id="fixed", queue="high", priority=9, delay=60)
    assert job.job_id == "fixed"
    score = sync_redis.zscore("arq:queue:high#p9", "fixed")
    assert score is not None and score > datetime.now(UTC).timestamp() * 1000 + 50_000
    assert await job.status() is JobStatus.deferred
    at = datetime.now(UTC) + timedelta(hours=1)
    job2 = await t.enqueue_with((2,), at=at)
    assert sync_redis.zscore("arq:queue", job2.job_id) == int(at.timestamp() * 1000)
    with pytest.raises(ConfigurationError, match="either delay"):
        await t.enqueue_with((3,), delay=1, at=at)
    with pytest.raises(ConfigurationError, match="unknown enqueue option"):
        await t.enqueue_with((3,), countdown=1)


async def test_explicit_job_id_dedupes(app: App, sync_redis: redis.Redis) -> None:
    @app.task(name="t")
    async def t(x: int) -> None: ...

    first = await t.enqueue_with((1,), job_id="order-7")
    second = await t.enqueue_with((2,), job_id="order-7")
    assert first.created and not second.created and second.job_id == "order-7"
    assert app.serializer.loads(sync_redis.get("arq:job:order-7"))["a"] == [1]


async def test_unique_task_folds_identical_calls(app: App) -> None:
    @app.task(name="report", unique=True)
    async def report(day: str) -> None: ...

    a = await report.enqueue("2026-11-23")
    b = await report.enqueue("2026-11-23")
    c = await report.enqueue("2026-11-24")
    assert a.job_id == b.job_id and a.created and not b.created
    assert c.job_id != a.job_id and c.created


async def test_unserializable_argument_fails_before_anything_is_written(app: App, sync_redis: redis.Redis) -> None:
    @app.task(name="t")
    async def t(x: object) -> None: ...

    sock = socket.socket()
    try:
        with pytest.raises(SerializationError, match="pass plain data \\(ids"):
            await app.enqueue_many([t.s(1), t.s(sock), t.s(3)])
    finally:
        sock.close()
    assert sync_redis.dbsize() == 0  # nothing half-enqueued


async def test_enqueue_many_is_one_round_trip_per_batch(app: App, sync_redis: redis.Redis) -> None:
    @app.task(name="t")
    async def t(x: int) -> None: ...

    broker = await app.broker()
    calls = 0
    original = broker.scripts._scripts["enqueue"]

    class Counting:
        async def __call__(self, *a: object, **kw: object) -> object:
            nonlocal calls
            calls += 1
            return await original(*a, **kw)

    broker.scripts._scripts["enqueue"] = Counting()
    jobs = await app.enqueue_many([t.s(i) for i in range(2500)], batch_size=1000)
    assert calls == 3
    assert len({j.job_id for j in jobs}) == 2500
    assert sync_redis.zcard("arq:queue") == 2500


async def test_enqueue_with_redis_down_raises_a_clear_error() -> None:
    app = App(redis_url="redis://:secret@127.0.0.1:1/0", connect_timeout=0.5)

    @app.task(name="t")
    async def t() -> None: ...

    with pytest.raises(BrokerUnavailable, match="unreachable while enqueueing 1 job.*nothing was written") as exc:
        await t.enqueue()
    assert "secret" not in str(exc.value)
    await app.close()


def test_app_rejects_unknown_settings() -> None:
    with pytest.raises(ConfigurationError, match="unknown AppSettings option"):
        App(redis_url=redis_url(CORE_DB), keep_results=1)


def test_settings_from_env() -> None:
    from asyncq import AppSettings, WorkerSettings

    s = WorkerSettings.from_env({"ASYNCQ_WORKER_CONCURRENCY": "500", "ASYNCQ_WORKER_QUEUES": "high,default"})
    assert s.concurrency == 500 and s.queues == ("high", "default")
    a = AppSettings.from_env({"ASYNCQ_TIMEOUT": "none", "ASYNCQ_MAX_TRIES": "7"})
    assert a.timeout is None and a.max_tries == 7
    with pytest.raises(ConfigurationError, match="ASYNCQ_WORKER_CONCURRENCY"):
        WorkerSettings.from_env({"ASYNCQ_WORKER_CONCURRENCY": "lots"})
