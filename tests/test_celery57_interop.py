"""Celery 5.7 interop, with stock Celery 5.7 in its own venv (``tests/celery57.py``; arq pins redis<6 and Celery
5.7's redis extra needs redis>=6.4, so 5.7 cannot share the project's environment).

- asyncq.compat producer -> stock Celery 5.7 worker (``-P threads``): args/kwargs, countdown and priority, link,
  exceptions with their type; results read through asyncq.compat's ``AsyncResult`` (``CeleryBackendResult``).
- The envelope: what real Celery 5.7 ``apply_async`` writes into Redis, field by field against
  ``asyncq.celery_protocol.encode.encode_message`` (through asyncq.compat, and called directly).
- Celery 5.7 producer -> asyncq worker consuming Celery's queues (``asyncq worker --celery-queues``): ``delay``,
  failures re-raised with their type, a chain; the producer reads the results with Celery's own ``AsyncResult``.

Database 7 only (broker and backend), flushed per test. The Celery 5.7 worker serves queue ``w57`` only and the
asyncq worker ``celery,i57`` only, so neither takes the other's messages.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from asyncq.celery_protocol.encode import decode_body, encode_message
from asyncq.compat import Celery
from asyncq.compat.result import CeleryBackendResult
from asyncq.compat.router import Router, set_rule
from asyncq.exceptions import RemoteTaskError

from . import celery57
from .conftest import flushed_url
from .test_celery_protocol import _assert_same, _messages, _normal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # 300: a cold venv build runs in the first test's setup

DB = 7
WORKER_QUEUE = "w57"  # the Celery 5.7 worker's only queue
ASYNCQ_QUEUES = "celery,i57"  # the asyncq worker's Celery queues

# --- the temporary project ------------------------------------------------------------------------------------
ERRORS = '''
class PaymentDeclined(Exception):
    pass


class NotImportedHere(Exception):
    pass
'''

# the stock Celery 5.7 worker's app (runs in the venv)
CELERY57_TASKS = '''
import time

from celery import Celery

import c57_errors

app = Celery("c57", broker="{url}", backend="{url}")
app.conf.update(result_expires=600, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                task_default_queue="{queue}")


@app.task(name="c57.add")
def add(x, y):
    return x + y


@app.task(name="c57.kw")
def kw(a, b=0, **extra):
    return {{"a": a, "b": b, "extra": extra}}


@app.task(name="c57.when", bind=True)
def when(self, tag):
    return {{"tag": tag, "ran_at": time.time(), "eta": self.request.eta,
            "priority": self.request.delivery_info.get("priority"),
            "routing_key": self.request.delivery_info.get("routing_key")}}


@app.task(name="c57.boom")
def boom(msg):
    raise LookupError(msg)


@app.task(name="c57.pay")
def pay(amount):
    raise c57_errors.PaymentDeclined(f"declined: {{amount}}")


@app.task(name="c57.hidden")
def hidden():
    raise c57_errors.NotImportedHere("secret type")


@app.task(name="c57.record")
def record(value, tag):
    import redis
    redis.Redis.from_url("{url}").rpush("c57:record", f"{{tag}}:{{value}}")
    return value


@app.task(name="c57.version")
def version():
    import celery, kombu
    return [celery.__version__, kombu.__version__]
'''

# the asyncq worker's app: asyncq.compat, the same task names (runs in the project's environment)
ASYNCQ_TASKS = '''
from asyncq.compat import Celery

import c57_errors

app = Celery("c57", broker="{url}", backend="{url}")


@app.task(name="c57.add")
def add(x, y):
    return x + y


@app.task(name="c57.boom")
def boom(msg):
    raise LookupError(msg)


@app.task(name="c57.pay")
async def pay(amount):
    raise c57_errors.PaymentDeclined(f"declined: {{amount}}")
'''

# a Celery 5.7 producer that writes the envelope test's messages (and nothing consumes them)
ENVELOPE_PRODUCER = '''
import json
import sys
from datetime import UTC, datetime

import celery
import kombu
from celery import Celery

app = Celery("proj", broker="{url}", backend="{url}", set_as_current=False)


@app.task(name="proj.add")
def add(x, y):
    return x + y


@app.task(name="proj.kw")
def kw(a, b=0):
    return a + b


{calls}
# arguments whose argsrepr/kwargsrepr differ from asyncq's (see test_argsrepr_differences_are_known)
add.apply_async([2, 3], queue="reprq")
kw.apply_async(([[[[1]]]],), {{"b": {{"x": {{"y": {{"z": 1}}}}}}}}, queue="reprq")
kw.apply_async(("x" * 2000,), {{"b": list(range(600))}}, queue="reprq")
app.close()
print(json.dumps({{"celery": celery.__version__, "kombu": kombu.__version__}}))
'''

# the same calls as test_celery_protocol._calls (Celery 5.6), so both versions are held to one standard
CALLS = '''
add.apply_async((2, 3), queue="q1")
add.apply_async((2, 3), countdown=10, expires=60, priority=5, time_limit=30, soft_time_limit=20,
                link=add.s(10), link_error=add.si(0, 0), headers={"custom": "h"}, queue="q1")
kw.apply_async((1,), {"b": 2}, priority=9, shadow="nice", ignore_result=True)
kw.apply_async((1,), priority=1, eta=datetime(2030, 1, 1, tzinfo=UTC))
kw.delay(7)
'''

# a Celery 5.7 producer whose tasks run on the asyncq worker; prints one JSON report, every step attempted
ASYNCQ_PRODUCER = '''
import json

import celery
from celery import Celery

import c57_errors  # noqa: F401 - importable, so Celery rebuilds PaymentDeclined itself

app = Celery("c57", broker="{url}", backend="{url}", set_as_current=False)
app.conf.update(result_expires=600, broker_connection_retry_on_startup=True)


@app.task(name="c57.add")
def add(x, y):
    return x + y


@app.task(name="c57.boom")
def boom(msg):
    raise LookupError(msg)


@app.task(name="c57.pay")
def pay(amount):
    raise c57_errors.PaymentDeclined(f"declined: {{amount}}")


def attempt(step):
    try:
        return {{"value": step()}}
    except Exception as exc:
        return {{"raised": [type(exc).__module__, type(exc).__name__, str(exc)]}}


out = {{"celery": celery.__version__}}
out["add"] = attempt(lambda: add.delay(2, 3).get(timeout=30))
out["boom"] = attempt(lambda: boom.apply_async(("nope",), queue="i57").get(timeout=30))
out["pay"] = attempt(lambda: pay.delay(12).get(timeout=30))
out["chain"] = attempt(lambda: (add.s(1, 2) | add.s(10)).apply_async().get(timeout=30))
app.close()
print(json.dumps(out))
'''


@dataclass
class Project:
    root: Path
    url: str
    c57: celery57.Celery57


@pytest.fixture(scope="module")
def c57() -> celery57.Celery57:
    return celery57.venv()  # pytest.skip with pip's last lines when it cannot be installed


@pytest.fixture(scope="module")
def project(c57: celery57.Celery57, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    url = flushed_url(DB)
    root = tmp_path_factory.mktemp("c57")
    (root / "c57_errors.py").write_text(ERRORS)
    (root / "c57_celery.py").write_text(textwrap.dedent(CELERY57_TASKS.format(url=url, queue=WORKER_QUEUE)))
    (root / "c57_asyncq.py").write_text(ASYNCQ_TASKS.format(url=url))
    sys.path.insert(0, str(root))  # c57_errors, for the exception types
    try:
        yield Project(root, url, c57)
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("c57_errors", None)


# --- asyncq.compat producer -> stock Celery 5.7 worker --------------------------------------------------------
@pytest.fixture(scope="module")
def celery57_worker(project: Project) -> Iterator[subprocess.Popen[bytes]]:
    proc = celery57.start_worker(project.c57, project.root, "c57_celery", queues=WORKER_QUEUE)
    try:
        yield proc
    finally:
        celery57.stop(proc)


@pytest.fixture
def producer(celery57_worker: subprocess.Popen[bytes], project: Project) -> Iterator[tuple[Celery, redis.Redis]]:
    url = flushed_url(DB)
    client = redis.Redis.from_url(url)
    set_rule(client, "*", "celery")
    app = Celery("producer", broker=url, backend=url, set_as_current=False, asyncq_router=Router(ttl=0.2),
                 task_default_queue=WORKER_QUEUE)
    try:
        # the worker is up once it answers (bounded: a broken worker fails here, with its log)
        try:
            versions = app.send_task("c57.version").get(timeout=30)
        except Exception as exc:
            pytest.fail(f"the Celery 5.7 worker did not answer ({exc!r}); exit code {celery57_worker.poll()}; "
                        f"log:\n{celery57.log_of(project.root)}")
        assert versions[0].startswith("5.7.") and versions[1].startswith("5.7."), versions
        yield app, client
    finally:
        app.close()
        client.close()
        flushed_url(DB)  # leave database 7 empty


def test_stock_celery57_worker_runs_args_and_kwargs(producer: tuple[Celery, redis.Redis]) -> None:
    app, _ = producer

    @app.task(name="c57.add")
    def add(x: int, y: int) -> int:  # registered here too; the rule "*" -> celery sends its calls to Celery 5.7
        return x + y

    r = app.send_task("c57.kw", (1,), {"b": 2, "c": 3})
    assert isinstance(r, CeleryBackendResult)
    assert r.get(timeout=15) == {"a": 1, "b": 2, "extra": {"c": 3}}
    assert r.state == "SUCCESS" and r.successful() and r.ready() and r.date_done is not None
    r2 = add.delay(2, 3)  # a registered task's own delay, routed to Celery by the rule
    assert isinstance(r2, CeleryBackendResult) and r2.get(timeout=15) == 5


def test_countdown_and_priority_on_celery57(producer: tuple[Celery, redis.Redis]) -> None:
    app, client = producer
    sent = time.time()
    r = app.send_task("c57.when", ("countdown",), countdown=1)
    r2 = app.send_task("c57.when", ("eta",), eta=datetime.fromtimestamp(sent + 1, UTC), priority=7)
    out, out2 = r.get(timeout=15), r2.get(timeout=15)
    for o in (out, out2):
        assert o["ran_at"] >= datetime.fromisoformat(o["eta"]).timestamp() - 0.05  # not before its eta
        assert datetime.fromisoformat(o["eta"]).timestamp() >= sent + 0.9
    assert out["routing_key"] == WORKER_QUEUE and out["priority"] == 0
    assert out2["routing_key"] == WORKER_QUEUE and out2["priority"] == 7
    assert not client.exists(WORKER_QUEUE, f"{WORKER_QUEUE}\x06\x166")  # both consumed


def test_link_runs_on_celery57(producer: tuple[Celery, redis.Redis]) -> None:
    app, client = producer
    r = app.send_task("c57.add", (2, 3), link=app.signature("c57.record", kwargs={"tag": "linked"}))
    assert r.get(timeout=15) == 5
    deadline = time.monotonic() + 15
    while not client.lrange("c57:record", 0, -1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.lrange("c57:record", 0, -1) == [b"linked:5"]


def test_exceptions_cross_from_celery57_with_their_type(producer: tuple[Celery, redis.Redis]) -> None:
    import c57_errors

    app, _ = producer
    with pytest.raises(LookupError, match="nope"):
        app.send_task("c57.boom", ("nope",)).get(timeout=15)
    with pytest.raises(c57_errors.PaymentDeclined, match="declined: 12"):
        app.send_task("c57.pay", (12,)).get(timeout=15)
    failed = app.send_task("c57.pay", (13,))
    assert isinstance(failed.get(timeout=15, propagate=False), c57_errors.PaymentDeclined)
    assert failed.state == "FAILURE" and failed.failed() and "PaymentDeclined" in (failed.traceback or "")
    hidden = app.send_task("c57.hidden")
    sys.modules.pop("c57_errors", None)  # the producer never imported the class: no import on Redis's say-so
    try:
        with pytest.raises(RemoteTaskError, match="NotImportedHere: secret type"):
            hidden.get(timeout=15)
    finally:
        sys.modules["c57_errors"] = c57_errors


# --- the envelope -------------------------------------------------------------------------------------------
def _kombu_keys(client: redis.Redis) -> dict[str, str]:
    return {k.decode(): client.type(k).decode() for k in client.keys("*")}


def _publish_with_compat(url: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """The same calls through asyncq.compat (``encode_message``); its messages and the types of all its keys."""
    app = Celery("proj", broker=url, backend=url, set_as_current=False, asyncq_router=Router(default="celery"))

    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.kw")
    def kw(a: Any, b: Any = 0) -> Any:
        return a + b

    try:
        exec(CALLS, {"add": add, "kw": kw, "datetime": datetime, "UTC": UTC})  # the very calls Celery 5.7 made
        add.apply_async([2, 3], queue="reprq")
        kw.apply_async(([[[[1]]]],), {"b": {"x": {"y": {"z": 1}}}}, queue="reprq")
        kw.apply_async(("x" * 2000,), {"b": list(range(600))}, queue="reprq")
    finally:
        app.close()
    client = redis.Redis.from_url(url)
    try:
        return _messages(client), _kombu_keys(client)
    finally:
        client.close()


@pytest.fixture
def celery57_messages(project: Project) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Messages real Celery 5.7 wrote into the flushed database 7 (no worker reads them), and its key types."""
    url = flushed_url(DB)
    ran = celery57.run_script(project.c57, ENVELOPE_PRODUCER.format(url=url, calls=CALLS), project.root,
                              name="envelope57.py", timeout=60)
    versions = ran.json()
    assert isinstance(versions, dict) and versions["celery"].startswith("5.7."), versions
    client = redis.Redis.from_url(url)
    try:
        return _messages(client), _kombu_keys(client)
    finally:
        client.flushdb()
        client.close()


def test_messages_match_real_celery57_field_by_field(
        celery57_messages: tuple[dict[str, list[dict[str, Any]]], dict[str, str]]) -> None:
    theirs, their_keys = celery57_messages
    ours, our_keys = _publish_with_compat(flushed_url(DB))
    try:
        queues = {"q1", "q1\x06\x163", "celery", "celery\x06\x169", "reprq"}
        assert set(ours) == set(theirs) == queues
        for key in queues - {"reprq"}:
            assert len(ours[key]) == len(theirs[key]), key
            for a, b in zip(ours[key], theirs[key], strict=True):
                _assert_same(a, b)
        full = theirs["q1\x06\x163"][0]
        assert full["headers"]["custom"] == "h" and full["headers"]["timelimit"] == [30, 20]
        assert full["properties"]["priority"] == 5 and full["properties"]["delivery_info"]["routing_key"] == "q1"
        assert decode_body(full)[2]["callbacks"][0]["args"] == [10]
        assert decode_body(full)[2]["errbacks"][0]["immutable"] is True
        # Redis keys besides the lists: kombu 5.7 adds _kombu.binding_permanent.<queue> sets next to the
        # _kombu.binding.<queue> sets that 5.6 writes too; asyncq.compat writes neither (it publishes to the
        # default exchange, which needs no binding table, as Celery's own messages do: exchange "")
        mine = ("q1", "celery", "reprq")  # (the running Celery 5.7 worker keeps bindings of its own: w57, pidbox)
        assert {k: t for k, t in their_keys.items() if t != "list" and k.rsplit(".", 1)[-1] in mine} == {
            **{f"_kombu.binding.{q}": "set" for q in mine},
            **{f"_kombu.binding_permanent.{q}": "set" for q in mine},
        }
        assert set(our_keys.values()) == {"list"}
    finally:
        flushed_url(DB)  # leave database 7 empty


def test_encode_message_reproduces_celery57_exactly(
        celery57_messages: tuple[dict[str, list[dict[str, Any]]], dict[str, str]]) -> None:
    """``encode_message`` called directly with the values Celery 5.7 chose (ids, times, origin, signatures):
    every header and property equal, the body equal once decoded (Celery's JSON has spaces, orjson's has none)."""
    theirs, _ = celery57_messages
    full = theirs["q1\x06\x163"][0]
    h, p = full["headers"], full["properties"]
    embed = decode_body(full)[2]
    sent = datetime.fromisoformat(h["eta"]).timestamp() - 10  # countdown=10
    ours = encode_message(
        "proj.add", h["id"], (2, 3), {}, queue="q1", priority=5, eta=h["eta"], expires=h["expires"],
        callbacks=embed["callbacks"], errbacks=embed["errbacks"], timelimit=[30, 20], origin=h["origin"],
        headers={"custom": "h"}, reply_to=p["reply_to"], delivery_tag=p["delivery_tag"],
        now=datetime.fromtimestamp(sent, UTC),
    )
    assert ours["headers"] == h
    assert {k: v for k, v in ours["properties"].items() if k != "expiration"} == \
        {k: v for k, v in p.items() if k != "expiration"}
    assert p["expiration"] == "60000" and abs(int(ours["properties"]["expiration"]) - 60000) < 5000
    assert decode_body(ours) == decode_body(full)
    assert {k: v for k, v in ours.items() if k not in ("headers", "properties", "body")} == \
        {k: v for k, v in full.items() if k not in ("headers", "properties", "body")}
    assert json.loads(base64.b64decode(full["body"])) == decode_body(full)

    plain = theirs["celery"][-1]  # kw.delay(7): no option at all
    ours_plain = encode_message("proj.kw", plain["headers"]["id"], (7,), {}, queue="celery",
                                origin=plain["headers"]["origin"], reply_to=plain["properties"]["reply_to"],
                                delivery_tag=plain["properties"]["delivery_tag"])
    assert ours_plain["headers"] == plain["headers"] and ours_plain["properties"] == plain["properties"]
    assert "expiration" not in plain["properties"]


def test_argsrepr_differences_are_known(
        celery57_messages: tuple[dict[str, list[dict[str, Any]]], dict[str, str]]) -> None:
    """Known difference, pinned so that a change on either side shows. Celery (5.6 and 5.7 alike) builds the
    ``argsrepr``/``kwargsrepr`` headers with ``celery.utils.saferepr`` of the args as given (a list stays a list;
    containers nested deeper than 3 levels become ``...``; about 1024 characters, cut inside the value), while
    ``encode_message`` uses ``repr(tuple(args))`` cut to 1024 characters by ``reprlib``. Between 5.6 and 5.7 only
    the cut of a long string changed (5.6: ``('xxx...', ...`` unbalanced; 5.7: ``('xxx...',)``). Workers only log
    these two headers; everything else in these messages is equal."""
    theirs, _ = celery57_messages
    ours, _ = _publish_with_compat(flushed_url(DB))
    try:
        listed, deep, long = theirs["reprq"]
        our_listed, our_deep, our_long = ours["reprq"]
        for a, b in ((our_listed, listed), (our_deep, deep), (our_long, long)):
            strip = ("argsrepr", "kwargsrepr")
            a2 = {**a, "headers": {k: v for k, v in a["headers"].items() if k not in strip}}
            b2 = {**b, "headers": {k: v for k, v in b["headers"].items() if k not in strip}}
            assert _normal(a2) == _normal(b2)
        # Celery 5.7 (5.6 writes the same except the long string: "('" + 1023 x + "...', ..." with no closing paren)
        assert listed["headers"]["argsrepr"] == "[2, 3]" and decode_body(listed)[0] == [2, 3]
        assert deep["headers"]["argsrepr"] == "([[[...]]],)"
        assert deep["headers"]["kwargsrepr"] == "{'b': {'x': {'y': {...}}}}"
        assert long["headers"]["argsrepr"] == "('" + "x" * 1023 + "...',)"
        assert long["headers"]["kwargsrepr"].startswith("{'b': [0, 1, 2, ")
        assert long["headers"]["kwargsrepr"].endswith(", 223, 224, 22..., ...]}")
        assert len(long["headers"]["kwargsrepr"]) == 1034
        # asyncq's encoder
        assert our_listed["headers"]["argsrepr"] == "(2, 3)" and decode_body(our_listed)[0] == [2, 3]
        assert our_deep["headers"]["argsrepr"] == "([[[[1]]]],)"
        assert our_deep["headers"]["kwargsrepr"] == "{'b': {'x': {'y': {'z': 1}}}}"
        assert our_long["headers"]["argsrepr"] == "('" + "x" * 509 + "..." + "x" * 510  # reprlib, cut at 1024
        assert our_long["headers"]["kwargsrepr"] == "{'b': [0, 1, 2, 3, 4, 5, ...]}"
    finally:
        flushed_url(DB)  # leave database 7 empty


# --- Celery 5.7 producer -> asyncq worker consuming Celery's queues -------------------------------------------
@pytest.fixture
def asyncq_worker(project: Project) -> Iterator[subprocess.Popen[bytes]]:
    """``asyncq worker c57_asyncq:app --celery-queues celery,i57`` in the project's environment (not the venv)."""
    url = flushed_url(DB)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project.root), os.environ.get("PYTHONPATH", "")]),
           "ASYNCQ_REDIS_URL": url}
    log = open(project.root / "asyncq.log", "wb")  # noqa: SIM115 - closed right after the fork
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncq", "worker", "c57_asyncq:app", "--celery-queues", ASYNCQ_QUEUES,
             "--log-level", "warning", "--redis-url", url],
            cwd=project.root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()
    deadline = time.monotonic() + 2  # an unknown option or a bad app shows as an exit within this
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield proc
    finally:
        celery57.stop(proc)
        flushed_url(DB)  # leave database 7 empty


def test_celery57_producer_to_asyncq_worker(asyncq_worker: subprocess.Popen[bytes], project: Project) -> None:
    def log() -> str:
        return celery57.log_of(project.root, "asyncq.log")

    assert asyncq_worker.poll() is None, \
        f"the asyncq worker exited with {asyncq_worker.returncode}; its output:\n{log()}"
    ran = celery57.run_script(project.c57, ASYNCQ_PRODUCER.format(url=project.url), project.root,
                              name="to_asyncq57.py", timeout=180)
    assert ran.returncode == 0, f"{ran.describe()}\n--- asyncq worker ---\n{log()}"
    out = ran.json()
    expected = {
        "celery": out["celery"] if isinstance(out, dict) else None,
        "add": {"value": 5},
        "boom": {"raised": ["builtins", "LookupError", "nope"]},
        "pay": {"raised": ["c57_errors", "PaymentDeclined", "declined: 12"]},
        "chain": {"value": 13},
    }
    assert out == expected, f"\n--- asyncq worker ---\n{log()}"
    assert str(expected["celery"]).startswith("5.7.")
    assert asyncq_worker.poll() is None, f"the asyncq worker died:\n{log()}"
