"""Celery's wire protocol from asyncq.compat: the messages match what real Celery 5.6 writes, a real stock Celery
worker runs them, and their results come back through asyncq's ``AsyncResult``.

Databases: 15 for the envelope comparisons (no worker), 10 for the real Celery worker (broker and backend) and a
real asyncq worker. Both are flushed per test.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from asyncq.celery_protocol.encode import decode_body, encode_message
from asyncq.celery_protocol.kombu_layout import queue_list_key, queue_list_keys
from asyncq.celery_protocol.results import parse_meta, rebuild_celery_exception
from asyncq.compat import Celery
from asyncq.compat.exceptions import ImproperlyConfigured, TaskRevokedError, TimeoutError
from asyncq.compat.result import CeleryBackendResult
from asyncq.compat.router import Router, set_rule
from asyncq.exceptions import RemoteTaskError

from .conftest import flushed_url, stop_process

pytest.importorskip("celery")

ENVELOPE_DB = 15
WORKER_DB = 10

CELERY_TASKS = '''
import time

from celery import Celery

import sbs_errors

app = Celery("sbs", broker="{url}", backend="{url}")
app.conf.update(result_expires=600, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="sbs.add")
def add(x, y):
    return x + y


@app.task(name="sbs.kw")
def kw(a, b=0, **extra):
    return {{"a": a, "b": b, "extra": extra}}


@app.task(name="sbs.when", bind=True)
def when(self, tag):
    return {{"tag": tag, "ran_at": time.time(), "eta": self.request.eta,
            "priority": self.request.delivery_info.get("priority"),
            "routing_key": self.request.delivery_info.get("routing_key")}}


@app.task(name="sbs.boom")
def boom(msg):
    raise LookupError(msg)


@app.task(name="sbs.pay")
def pay(amount):
    raise sbs_errors.PaymentDeclined(f"declined: {{amount}}")


@app.task(name="sbs.hidden")
def hidden():
    raise sbs_errors.NotImportedHere("secret type")


@app.task(name="sbs.record")
def record(value, tag):
    import redis
    redis.Redis.from_url("{url}").rpush("sbs:record", f"{{tag}}:{{value}}")
    return value


@app.task(name="mix.square")
def square(x):
    return ("celery", x * x)
'''

ERRORS = '''
class PaymentDeclined(Exception):
    pass


class NotImportedHere(Exception):
    pass
'''

ASYNCQ_TASKS = '''
from asyncq.compat import Celery

app = Celery("mix", broker="{url}", backend="{url}")


@app.task(name="mix.square")
def square(x):
    return ("asyncq", x * x)


@app.task(name="mix.triple")
async def triple(x):
    return ("asyncq", 3 * x)
'''


# --- helpers ------------------------------------------------------------------------------------------------
def _messages(client: redis.Redis) -> dict[str, list[dict[str, Any]]]:
    """Every kombu list in the database, decoded, oldest message first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key in client.keys("*"):
        if client.type(key) != b"list":
            continue
        raw = [json.loads(m) for m in reversed(client.lrange(key, 0, -1))]
        out[key.decode()] = raw
    return out


VOLATILE_HEADERS = {"id", "root_id", "eta", "expires", "origin"}
VOLATILE_PROPERTIES = {"correlation_id", "reply_to", "delivery_tag", "expiration"}


def _normal(env: dict[str, Any]) -> dict[str, Any]:
    headers = {k: v for k, v in env["headers"].items() if k not in VOLATILE_HEADERS}
    props = {k: v for k, v in env["properties"].items() if k not in VOLATILE_PROPERTIES}
    rest = {k: v for k, v in env.items() if k not in ("headers", "properties", "body")}
    return {"headers": headers, "properties": props, "body": decode_body(env), **rest}


def _close(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs((a - b).total_seconds()) < 5


def _assert_same(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert set(ours) == set(theirs)
    assert set(ours["headers"]) == set(theirs["headers"])
    assert set(ours["properties"]) == set(theirs["properties"])
    assert _normal(ours) == _normal(theirs)
    for field in ("eta", "expires"):
        a, b = ours["headers"][field], theirs["headers"][field]
        assert _close(a and datetime.fromisoformat(a), b and datetime.fromisoformat(b)), field
    assert ours["headers"]["root_id"] == ours["headers"]["id"] == ours["properties"]["correlation_id"]
    if "expiration" in theirs["properties"]:
        assert abs(int(ours["properties"]["expiration"]) - int(theirs["properties"]["expiration"])) < 5000


def _publish_with_real_celery(url: str) -> dict[str, list[dict[str, Any]]]:
    from celery import Celery as RealCelery

    app = RealCelery("proj", broker=url, backend=url, set_as_current=False)

    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.kw")
    def kw(a: int, b: int = 0) -> int:
        return a + b

    try:
        _calls(add, kw)
    finally:
        app.close()
    client = redis.Redis.from_url(url)
    try:
        msgs = _messages(client)
    finally:
        client.flushdb()
        client.close()
    return msgs


def _calls(add: Any, kw: Any) -> None:
    add.apply_async((2, 3), queue="q1")
    add.apply_async((2, 3), countdown=10, expires=60, priority=5, time_limit=30, soft_time_limit=20,
                    link=add.s(10), link_error=add.si(0, 0), headers={"custom": "h"}, queue="q1")
    kw.apply_async((1,), {"b": 2}, priority=9, shadow="nice", ignore_result=True)
    kw.apply_async((1,), priority=1, eta=datetime(2030, 1, 1, tzinfo=UTC))
    kw.delay(7)


def _publish_with_compat(url: str) -> dict[str, list[dict[str, Any]]]:
    app = Celery("proj", broker=url, backend=url, set_as_current=False, asyncq_router=Router(default="celery"))

    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.kw")
    def kw(a: int, b: int = 0) -> int:
        return a + b

    try:
        _calls(add, kw)
    finally:
        app.close()
    client = redis.Redis.from_url(url)
    try:
        return _messages(client)
    finally:
        client.close()


# --- the envelope -------------------------------------------------------------------------------------------
def test_kombu_layout_matches_kombu() -> None:
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    assert tuple(PRIORITY_STEPS) == (0, 3, 6, 9) and Channel.priority_steps == PRIORITY_STEPS
    assert Channel.sep == "\x06\x16"
    assert [queue_list_key("q", p) for p in range(10)] == ["q"] * 3 + ["q\x06\x163"] * 3 + ["q\x06\x166"] * 3 + [
        "q\x06\x169"]
    assert queue_list_key("q", None) == "q"
    assert queue_list_keys("q") == ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]


def test_messages_match_real_celery_field_by_field() -> None:
    url = flushed_url(ENVELOPE_DB)
    theirs = _publish_with_real_celery(url)
    ours = _publish_with_compat(url)
    assert set(ours) == set(theirs) == {"q1", "q1\x06\x163", "celery", "celery\x06\x169"}
    for key in theirs:
        assert len(ours[key]) == len(theirs[key]), key
        for a, b in zip(ours[key], theirs[key], strict=True):
            _assert_same(a, b)
    full = ours["q1\x06\x163"][0]
    assert full["headers"]["custom"] == "h" and full["headers"]["timelimit"] == [30, 20]
    assert decode_body(full)[2]["callbacks"][0]["args"] == [10]
    assert base64.b64decode(full["body"])  # base64, as body_encoding says


def test_encoder_with_as_task_v2() -> None:
    """The same call through Celery's own ``app.amqp.as_task_v2`` (no broker involved)."""
    from celery import Celery as RealCelery

    app = RealCelery("proj", set_as_current=False)
    try:
        msg = app.amqp.as_task_v2("t-1", "proj.add", args=(1, 2), kwargs={"k": 3}, group_id="g", group_index=2,
                                  retries=0, root_id="r", parent_id="p", origin="o", shadow="s",
                                  time_limit=5, soft_time_limit=3)
    finally:
        app.close()
    env = encode_message("proj.add", "t-1", (1, 2), {"k": 3}, queue="celery", group="g", group_index=2,
                         root_id="r", parent_id="p", origin="o", shadow="s", timelimit=[5, 3])
    theirs_headers = dict(msg.headers)
    assert {k: v for k, v in env["headers"].items() if k in theirs_headers} == theirs_headers
    assert set(env["headers"]) == set(theirs_headers)
    assert decode_body(env) == json.loads(json.dumps(list(msg.body)))


# --- the result backend, offline ----------------------------------------------------------------------------
def test_exceptions_are_rebuilt_only_from_imported_classes() -> None:
    exc = rebuild_celery_exception({"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"},
                                   "tb", "t1")
    assert type(exc) is ValueError and exc.args == ("boom",)
    unknown = rebuild_celery_exception({"exc_type": "Evil", "exc_message": ["x"], "exc_module": "os_not_loaded"})
    assert isinstance(unknown, RemoteTaskError) and unknown.exc_type == "os_not_loaded.Evil"
    exit_ = rebuild_celery_exception({"exc_type": "SystemExit", "exc_message": [1], "exc_module": "builtins"})
    assert isinstance(exit_, RemoteTaskError)  # only Exception subclasses are instantiated
    assert parse_meta("x", None).status == "PENDING"


# --- a real Celery worker -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    url = flushed_url(WORKER_DB)
    root = tmp_path_factory.mktemp("sbs")
    (root / "sbs_celery.py").write_text(textwrap.dedent(CELERY_TASKS.format(url=url)))
    (root / "sbs_errors.py").write_text(ERRORS)
    (root / "mix_asyncq.py").write_text(ASYNCQ_TASKS.format(url=url))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "ASYNCQ_REDIS_URL": url}
    sys.path.insert(0, str(root))
    try:
        yield root, env
    finally:
        sys.path.remove(str(root))


@pytest.fixture(scope="module")
def celery_worker(project: tuple[Path, dict[str, str]]) -> Iterator[subprocess.Popen[bytes]]:
    root, env = project
    log = open(root / "celery.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "sbs_celery", "worker", "-P", "solo", "-c", "1", "-Q", "celery,sbsq",
         "--loglevel=WARNING", "--without-mingle", "--without-gossip", "--without-heartbeat", "-n", "sbs@%h"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture
def producer(celery_worker: subprocess.Popen[bytes]) -> Iterator[tuple[Celery, redis.Redis]]:
    url = flushed_url(WORKER_DB)
    client = redis.Redis.from_url(url)
    set_rule(client, "*", "celery")
    app = Celery("producer", broker=url, backend=url, set_as_current=False, asyncq_router=Router(ttl=0.2))
    try:
        # the worker is up once it answers (bounded: a broken worker fails here, not later)
        assert app.send_task("sbs.add", (1, 1)).get(timeout=30) == 2, "the Celery worker did not start"
        yield app, client
    finally:
        app.close()
        client.close()


def _celery_log(project: tuple[Path, dict[str, str]]) -> str:
    path = project[0] / "celery.log"
    return path.read_text(errors="replace") if path.exists() else ""


def test_stock_worker_runs_args_kwargs(producer: tuple[Celery, redis.Redis]) -> None:
    app, _ = producer
    r = app.send_task("sbs.kw", (1,), {"b": 2, "c": 3})
    assert isinstance(r, CeleryBackendResult)
    assert r.get(timeout=15) == {"a": 1, "b": 2, "extra": {"c": 3}}
    assert r.state == "SUCCESS" and r.successful() and r.ready() and r.date_done is not None


def test_countdown_eta_and_priority(producer: tuple[Celery, redis.Redis]) -> None:
    app, _ = producer
    sent = time.time()
    r = app.send_task("sbs.when", ("countdown",), countdown=1)
    r2 = app.send_task("sbs.when", ("eta",), eta=datetime.fromtimestamp(sent + 1, UTC), priority=7, queue="sbsq")
    out, out2 = r.get(timeout=15), r2.get(timeout=15)
    for o in (out, out2):
        assert o["ran_at"] >= datetime.fromisoformat(o["eta"]).timestamp() - 0.05  # not before its eta
        assert datetime.fromisoformat(o["eta"]).timestamp() >= sent + 0.9
    assert out["routing_key"] == "celery" and out["priority"] == 0
    assert out2["routing_key"] == "sbsq" and out2["priority"] == 7


def test_link_runs_on_celery(producer: tuple[Celery, redis.Redis]) -> None:
    app, client = producer
    r = app.send_task("sbs.add", (2, 3), link=app.signature("sbs.record", kwargs={"tag": "linked"}))
    assert r.get(timeout=15) == 5
    deadline = time.monotonic() + 15
    while not client.lrange("sbs:record", 0, -1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.lrange("sbs:record", 0, -1) == [b"linked:5"]


def test_exceptions_cross_with_their_type(producer: tuple[Celery, redis.Redis]) -> None:
    import sbs_errors

    app, _ = producer
    with pytest.raises(LookupError, match="nope"):
        app.send_task("sbs.boom", ("nope",)).get(timeout=15)
    with pytest.raises(sbs_errors.PaymentDeclined, match="declined: 12"):
        app.send_task("sbs.pay", (12,)).get(timeout=15)
    hidden = app.send_task("sbs.hidden")
    sys.modules.pop("sbs_errors", None)  # the producer never imported the class: no import on Redis's say-so
    try:
        with pytest.raises(RemoteTaskError, match="NotImportedHere: secret type"):
            hidden.get(timeout=15)
        assert hidden.state == "FAILURE" and hidden.failed()
        assert "NotImportedHere" in (hidden.traceback or "")
        assert isinstance(hidden.get(timeout=1, propagate=False), RemoteTaskError)
    finally:
        sys.modules["sbs_errors"] = sbs_errors


def test_pending_timeout_forget_and_revoke(producer: tuple[Celery, redis.Redis]) -> None:
    app, client = producer
    r = app.send_task("sbs.nobody_listens", queue="nowhere")  # no worker serves this queue
    assert r.state == "PENDING"
    with pytest.raises(TimeoutError):
        r.get(timeout=0.3)
    with pytest.raises(NotImplementedError, match="control revoke"):
        r.revoke()
    done = app.send_task("sbs.add", (1, 2))
    assert done.get(timeout=15) == 3
    done.forget()
    assert done.state == "PENDING"
    client.set("celery-task-meta-rv", json.dumps({"status": "REVOKED", "result": {
        "exc_type": "TaskRevokedError", "exc_message": ["revoked"], "exc_module": "celery.exceptions"}}))
    with pytest.raises(TaskRevokedError):
        CeleryBackendResult("rv", app=app).get(timeout=5)


async def test_async_path_and_batches(producer: tuple[Celery, redis.Redis]) -> None:
    app, client = producer
    set_rule(client, "mix.*", "asyncq")
    app.asyncq_router.invalidate()
    one = await app.asend_task("sbs.add", (20, 22))
    assert await one == 42
    sigs = [app.signature("sbs.add", (i, i)) for i in range(5)] + [app.signature("mix.triple", (1,))]
    results = await app.asend_many(sigs)
    assert [type(r).__name__ for r in results] == ["CeleryBackendResult"] * 5 + ["AsyncResult"]
    assert [await r.aget(timeout=15) for r in results[:5]] == [0, 2, 4, 6, 8]
    assert client.zcard("arq:queue:celery") == 1  # the asyncq-routed call is an asyncq job


def test_canvas_to_celery_is_refused(producer: tuple[Celery, redis.Redis]) -> None:
    from asyncq.compat import chain

    app, _ = producer
    with pytest.raises(ImproperlyConfigured, match="chain or chord"):
        chain(app.signature("sbs.add", (1, 1)), app.signature("sbs.add", (2,))).apply_async()


@pytest.mark.timeout(90)
def test_1000_mixed_calls_none_lost(producer: tuple[Celery, redis.Redis], project: tuple[Path, dict[str, str]],
                                    ) -> None:
    """Celery and asyncq workers side by side; rules: sbs.* to Celery, mix.triple to asyncq, mix.square a 30%
    canary. Every one of 1,000 calls returns its result from the runtime the router chose."""
    import random

    app, client = producer
    root, env = project
    set_rule(client, "sbs.*", "celery")
    set_rule(client, "mix.triple", "asyncq")
    set_rule(client, "mix.square", "30%")
    app.asyncq_router = Router(ttl=0.2, draw=random.Random(7).random)
    log = open(root / "asyncq.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "asyncq", "worker", "mix_asyncq:app", "--queues", "celery", "--concurrency", "200",
         "--log-level", "warning"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        calls: list[tuple[Any, Any]] = []
        for i in range(1000):
            kind = i % 3
            if kind == 0:
                calls.append((app.send_task("sbs.add", (i, 1)), i + 1))
            elif kind == 1:
                calls.append((app.send_task("mix.triple", (i,)), ["asyncq", 3 * i]))
            else:
                calls.append((app.send_task("mix.square", (i,)), i * i))
        runtimes = {"celery": 0, "asyncq": 0}
        for result, expected in calls:
            value = result.get(timeout=60)
            if isinstance(expected, int) and isinstance(value, list):  # mix.square: either runtime
                runtimes[value[0]] += 1
                value = value[1]
            assert value == expected
        square = sum(runtimes.values())
        assert square == 333
        assert 0.2 * square <= runtimes["asyncq"] <= 0.4 * square, runtimes
        assert not client.llen("celery") and not client.zcard("arq:queue:celery")
    finally:
        stop_process(worker)
        log.close()
