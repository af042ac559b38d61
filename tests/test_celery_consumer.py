"""An asyncq worker consuming Celery's own queues (``--celery-queues``), with an unchanged Celery 5.6 producer.

Real processes throughout: the producer is real Celery (``from celery import Celery``) in this test process and
reads results with Celery's own ``AsyncResult.get()``; the consumer is ``python -m asyncq worker ...
--celery-queues celery`` on an asyncq.compat app registering the same task names; the side-by-side test adds a
stock Celery worker on the same queue. Redis database 1, flushed per test.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from asyncq import App
from asyncq.admin import retry_dead_letter
from asyncq.celery_protocol.transport import CeleryTransport

from .conftest import flushed_url, redis_url, stop_process

pytest.importorskip("celery")
pytestmark = pytest.mark.slow

DB = 1
VISIBILITY_TIMEOUT = 2  # seconds: the restore test backdates a claim by more than this

TASKS = '''
import time

import redis

{import_line}

app = Celery("cons", broker="{url}", backend="{url}")
app.conf.update(result_expires=600, broker_transport_options={{"visibility_timeout": {vt}}},
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
r = redis.Redis.from_url("{url}")
RUNTIME = "{runtime}"


@app.task(name="cons.add")
def add(x, y):
    return x + y


@app.task(name="cons.boom")
def boom(msg):
    raise ValueError(msg)


@app.task(name="cons.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="cons.slow")
def slow(tag, seconds):
    r.rpush("starts:" + tag, RUNTIME)
    time.sleep(seconds)
    return tag


@app.task(name="cons.record")
def record(tag):
    r.hincrby("runs", tag, 1)
    r.hset("ran_on", tag, RUNTIME)
    return tag


@app.task(name="cons.flaky", bind=True, max_retries=3)
def flaky(self, failures):
    if self.request.retries < failures:
        raise self.retry(countdown=0.1)
    return self.request.retries


@app.task(name="cons.kw")
def kw(a, b=0, **extra):
    return {{"a": a, "b": b, "extra": extra}}
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    url = flushed_url(DB)
    root = tmp_path_factory.mktemp("cons")
    for module, line, runtime in (("cons_celery", "from celery import Celery", "celery"),
                                  ("cons_asyncq", "from asyncq.compat import Celery", "asyncq")):
        (root / f"{module}.py").write_text(
            textwrap.dedent(TASKS.format(url=url, import_line=line, runtime=runtime, vt=VISIBILITY_TIMEOUT)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "ASYNCQ_REDIS_URL": url, "ASYNCQ_WORKER_UNKNOWN_TASK_WAIT": "2", "ASYNCQ_WORKER_LEASE": "2"}
    sys.path.insert(0, str(root))
    try:
        yield root, env
    finally:
        sys.path.remove(str(root))


class Procs:
    """Worker processes started by one test, stopped at its end; their logs for failure messages."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def asyncq(self, *extra: str) -> subprocess.Popen[bytes]:
        return self._start("asyncq", [sys.executable, "-m", "asyncq", "worker", "cons_asyncq:app",
                                      "--celery-queues", "celery", "--concurrency", "20", *extra])

    def celery(self) -> subprocess.Popen[bytes]:
        return self._start("celery", [
            sys.executable, "-m", "celery", "-A", "cons_celery", "worker", "-P", "threads", "-c", "4", "-Q", "celery",
            "--loglevel=WARNING", "--without-mingle", "--without-gossip", "--without-heartbeat",
            "-n", f"cons-{uuid.uuid4().hex[:6]}@%h"])

    def _start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}-{len(self.procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for _, log in self.procs)

    def stop(self) -> None:
        for proc, _ in self.procs:
            stop_process(proc)


@pytest.fixture
def env(project: tuple[Path, dict[str, str]]) -> Iterator[tuple[Any, redis.Redis, Procs]]:
    """(the real Celery producer module, a Redis client, the process starter); database flushed first."""
    root, environ = project
    url = flushed_url(DB)
    import cons_celery  # type: ignore[import-not-found]  # written by the project fixture

    client = redis.Redis.from_url(url)
    procs = Procs(root, environ)
    # Celery's AsyncResult.__del__, run by a cyclic collection while redis-py holds its PubSub lock, deadlocks
    # get() (see compat/conftest.py): no cyclic collections while Celery results are being waited on
    gc.disable()
    try:
        yield cons_celery, client, procs
    finally:
        procs.stop()
        client.close()
        gc.enable()


def _wait(predicate: Callable[[], Any], timeout: float, what: str, procs: Procs) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{procs.logs()}")


def _dead_letters(client: redis.Redis) -> dict[str, dict[str, Any]]:
    return {k.decode(): json.loads(v) for k, v in client.hgetall("asyncq:dlq:meta").items()}


def test_celery_producer_reads_values_and_exceptions(env: tuple[Any, redis.Redis, Procs]) -> None:
    celery_mod, client, procs = env
    procs.asyncq()
    try:
        assert celery_mod.add.delay(2, 3).get(timeout=30) == 5
        assert celery_mod.kw.apply_async((1,), {"b": 2, "c": 3}).get(timeout=10) == {
            "a": 1, "b": 2, "extra": {"c": 3}}
        failing = celery_mod.boom.delay("broken on purpose")
        with pytest.raises(ValueError, match="broken on purpose"):
            failing.get(timeout=10)
        assert failing.state == "FAILURE" and "ValueError" in (failing.traceback or "")
        assert celery_mod.flaky.delay(2).get(timeout=10) == 2  # self.retry() twice, on asyncq
    except Exception:
        print(procs.logs())
        raise
    # nothing left behind in kombu's structures; every message was adopted
    assert client.llen("celery") == 0 and client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
    meta = json.loads(client.get(f"celery-task-meta-{failing.id}") or b"{}")
    assert meta["result"] == {"exc_type": "ValueError", "exc_message": ["broken on purpose"],
                              "exc_module": "builtins"}


def test_eta_expires_time_limit_and_priority(env: tuple[Any, redis.Redis, Procs]) -> None:
    from celery.exceptions import TaskRevokedError, TimeLimitExceeded

    celery_mod, client, procs = env
    procs.asyncq()
    assert celery_mod.add.delay(0, 0).get(timeout=30) == 0  # the worker is up
    sent = time.time()
    later = celery_mod.slow.apply_async(("eta", 0), countdown=1.5)
    # an eta task is not held in a worker's memory nor in kombu's unacked: it waits in asyncq's schedule
    _wait(lambda: client.hlen("unacked") == 0 and client.llen("celery") == 0, 5, "adoption", procs)
    assert later.get(timeout=10) == "eta"
    assert time.time() - sent >= 1.4
    expired = celery_mod.add.apply_async((1, 1), expires=-1)  # already expired when it arrives
    with pytest.raises(TaskRevokedError):
        expired.get(timeout=10)
    assert expired.state == "REVOKED"
    limited = celery_mod.slow.apply_async(("limited", 5), time_limit=0.5)
    with pytest.raises(TimeLimitExceeded):
        limited.get(timeout=10)
    assert celery_mod.add.apply_async((2, 2), priority=9).get(timeout=10) == 4  # a priority bucket list


def test_link_chain_and_chord_from_celery(env: tuple[Any, redis.Redis, Procs]) -> None:
    from celery import chain, chord

    celery_mod, client, procs = env
    procs.asyncq()
    assert celery_mod.add.apply_async((1, 2), link=celery_mod.record.si("linked")).get(timeout=30) == 3
    _wait(lambda: client.hget("runs", "linked") == b"1", 10, "the link", procs)
    assert chain(celery_mod.add.s(1, 2), celery_mod.add.s(10), celery_mod.add.s(100)).apply_async().get(
        timeout=10) == 113
    assert chord([celery_mod.add.s(1, 2), celery_mod.add.s(3, 4)], celery_mod.tsum.s())().get(timeout=10) == 10
    failing = celery_mod.boom.apply_async(("x",), link_error=celery_mod.record.si("errback"))
    with pytest.raises(ValueError):
        failing.get(timeout=10)
    _wait(lambda: client.hget("runs", "errback") == b"1", 10, "the errback", procs)


def _message(task: str, args: list[Any], *, body: str | None = None, task_id: str | None = None) -> bytes:
    tid = task_id or str(uuid.uuid4())
    return json.dumps({
        "body": body if body is not None else base64.b64encode(json.dumps([args, {}, {}]).encode()).decode(),
        "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": tid, "retries": 0, "root_id": tid},
        "properties": {"correlation_id": tid, "delivery_mode": 2, "body_encoding": "base64",
                       "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0,
                       "delivery_tag": str(uuid.uuid4())},
    }).encode()


def test_malformed_messages_go_to_the_dead_letter_store(env: tuple[Any, redis.Redis, Procs]) -> None:
    celery_mod, client, procs = env
    client.lpush("celery", b"this is not JSON")
    client.lpush("celery", json.dumps({"headers": {"task": "cons.add"}}).encode())  # no delivery tag
    client.lpush("celery", _message("cons.add", [], body="%%% not base64 %%%", task_id="bad-base64"))
    client.lpush("celery", _message("cons.add", [], body=base64.b64encode(b"{not json").decode(),
                                    task_id="bad-json"))
    client.lpush("celery", _message("cons.nobody", [1], task_id="unknown-task"))
    client.lpush("celery", _message("cons.add", [1, 2, 3], task_id="bad-arguments"))
    procs.asyncq()
    assert celery_mod.add.delay(1, 1).get(timeout=30) == 2  # the worker keeps running past them
    dead = _wait(lambda: (d := _dead_letters(client)) and len(d) == 6 and d, 15, "six dead letters", procs)
    reasons = {k: v["reason"] for k, v in dead.items()}
    assert "not a JSON object" in " ".join(reasons.values())
    assert "no properties.delivery_tag" in " ".join(reasons.values())
    assert "not valid base64" in reasons["bad-base64"]
    assert "not valid JSON" in reasons["bad-json"]
    assert "unknown task 'cons.nobody'" in reasons["unknown-task"]
    assert "cannot run" in reasons["bad-arguments"] and "argument" in reasons["bad-arguments"]
    assert all(v["kind"] == "celery" for v in dead.values())
    # the producer waiting on the call with bad arguments gets the TypeError, as from Celery
    with pytest.raises(TypeError):
        celery_mod.add.AsyncResult("bad-arguments").get(timeout=5)
    assert client.hlen("unacked") == 0 and client.llen("celery") == 0
    # a dead letter can be retried: the message goes back onto its Celery list, as it was, and is consumed
    # again (here: dead-lettered again, since its body is still broken)
    first = dead["bad-base64"]["failed_at"]

    async def retry() -> None:
        app = App(redis_url=redis_url(DB))
        try:
            await retry_dead_letter(app, "bad-base64")
        finally:
            await app.close()

    import asyncio

    asyncio.run(retry())
    _wait(lambda: _dead_letters(client).get("bad-base64", {}).get("failed_at", first) != first, 10,
          "the retried message to come back", procs)


def test_consumer_killed_mid_task_the_task_runs_again(env: tuple[Any, redis.Redis, Procs]) -> None:
    celery_mod, client, procs = env
    first = procs.asyncq()
    assert celery_mod.add.delay(0, 0).get(timeout=30) == 0
    result = celery_mod.slow.delay("killed", 2.0)
    _wait(lambda: client.llen("starts:killed") == 1, 10, "the slow task to start", procs)
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    procs.asyncq()  # a second consumer; the first one's job comes back when its 2 s lease runs out
    assert result.get(timeout=30) == "killed"
    assert client.llen("starts:killed") == 2


def test_a_claimed_but_unadopted_message_is_restored(env: tuple[Any, redis.Redis, Procs]) -> None:
    """A consumer that died between taking a message and adopting it: the message sits in kombu's `unacked`
    in kombu's own form, and comes back after the visibility timeout (here 2 s) and runs."""
    import asyncio

    celery_mod, client, procs = env
    result = celery_mod.record.delay("restored")

    async def claim_only() -> list[tuple[str, bytes, str]]:
        app = App(redis_url=redis_url(DB))
        try:
            broker = await app.broker()
            return await CeleryTransport(broker).claim([("celery", "celery")], 10)
        finally:
            await app.close()

    claimed = asyncio.run(claim_only())
    assert len(claimed) == 1 and client.llen("celery") == 0
    tag = claimed[0][0]
    entry = json.loads(client.hget("unacked", tag) or b"null")  # what kombu's restore_visible reads
    assert entry[1:] == ["", "celery"] and entry[0]["headers"]["id"] == result.id
    assert client.zscore("unacked_index", tag) is not None
    client.zadd("unacked_index", {tag: time.time() - VISIBILITY_TIMEOUT - 1})  # "delivered" long ago
    procs.asyncq()
    assert result.get(timeout=30) == "restored"
    assert client.hget("runs", "restored") == b"1" and client.hlen("unacked") == 0


def test_1000_messages_two_runtimes_one_queue_none_lost(env: tuple[Any, redis.Redis, Procs]) -> None:
    """A Celery worker and an asyncq worker consume the same Celery queue; an unchanged Celery producer sends
    1,000 calls: every one runs exactly once, on one runtime or the other, and every result reaches Celery."""
    celery_mod, client, procs = env
    procs.celery()
    procs.asyncq()
    assert celery_mod.add.delay(0, 0).get(timeout=30) == 0
    results = [celery_mod.record.delay(f"m{i}") for i in range(1000)]
    values = [r.get(timeout=60) for r in results]
    assert values == [f"m{i}" for i in range(1000)]
    runs = {k.decode(): int(v) for k, v in client.hgetall("runs").items()}
    assert len(runs) == 1000 and set(runs.values()) == {1}, "a message was lost or ran twice"
    ran_on = {v.decode() for v in client.hvals("ran_on")}
    print(f"ran on: { {rt: sum(1 for v in client.hvals('ran_on') if v.decode() == rt) for rt in ran_on} }")
    assert ran_on == {"celery", "asyncq"}, f"expected both runtimes to take messages, got {ran_on}"


def test_revoke_from_a_celery_client(env: tuple[Any, redis.Redis, Procs]) -> None:
    """``AsyncResult.revoke()`` on the Celery side reaches the asyncq worker (Celery's pidbox broadcast): a
    waiting job never runs, a running one is cancelled with ``terminate=True``; both read REVOKED in Celery."""
    from celery.exceptions import TaskRevokedError

    celery_mod, client, procs = env
    procs.asyncq()
    assert celery_mod.add.delay(0, 0).get(timeout=30) == 0
    time.sleep(0.3)  # the worker's pidbox subscription
    later = celery_mod.slow.apply_async(("later", 0), countdown=3)
    _wait(lambda: client.exists(f"arq:job:{later.id}") and client.hlen("unacked") == 0, 5, "adoption", procs)
    later.revoke()
    with pytest.raises(TaskRevokedError):
        later.get(timeout=10)
    running = celery_mod.slow.delay("term", 4)
    _wait(lambda: client.llen("starts:term") == 1, 10, "the long task to start", procs)
    running.revoke(terminate=True)
    with pytest.raises(TaskRevokedError):
        running.get(timeout=10)
    time.sleep(3.2)  # past the first one's countdown: it must not have started
    assert client.llen("starts:later") == 0


def test_celery_queues_needs_a_compat_app() -> None:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "asyncq", "worker", "tests.proc_app:app", "--celery-queues", "celery"],
                          cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--celery-queues needs an asyncq.compat.Celery app" in proc.stderr
