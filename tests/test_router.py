"""The side-by-side router (asyncq.compat.router): rule precedence, canaries, rules read from Redis with a
short cache, the ``asyncq migrate route`` commands, and where real calls land. Redis database 15, flushed per
test; no worker is needed (the calls' destinations are checked in Redis)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
import redis
from typer.testing import CliRunner

from asyncq import keys
from asyncq.cli import cli
from asyncq.compat import Celery
from asyncq.compat.result import CeleryBackendResult
from asyncq.compat.router import ASYNCQ, CELERY, Router, Rules, explain, load_rules, parse_rule, set_rule

from .conftest import flushed_url

DB = 15
BACKEND_DB = 14  # a result backend apart from the broker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def url() -> str:
    return flushed_url(DB)


@pytest.fixture
def client(url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(url)
    yield c
    c.close()


def rules(**kw: str) -> Rules:
    return Rules({k: parse_rule(k, v) for k, v in kw.items()})


def test_exact_name_beats_globs_and_longer_globs_beat_shorter() -> None:
    r = Rules({p: parse_rule(p, v) for p, v in {
        "billing.*": "celery", "billing.invoices.*": "asyncq", "notifications.*": "asyncq", "*": "celery",
        "billing.invoices.void": "celery", "billing.?ay": "asyncq",
    }.items()})
    router = Router(url="redis://unused")
    assert router.decide("billing.charge", r) == CELERY
    assert router.decide("billing.invoices.send", r) == ASYNCQ  # longer glob
    assert router.decide("billing.invoices.void", r) == CELERY  # exact name
    assert router.decide("billing.pay", r) == ASYNCQ  # 'billing.?ay' (11 chars) beats 'billing.*' (9)
    assert router.decide("notifications.push", r) == ASYNCQ
    assert router.decide("other.task", r) == CELERY  # '*'
    assert Router(url="x", default=ASYNCQ).decide("x", Rules()) == ASYNCQ  # no rule: the default
    assert Router(url="x").decide("x", Rules()) == CELERY


def test_rule_values_are_checked() -> None:
    assert parse_rule("a", "10%").percent == 10.0 and parse_rule("a", "12.5%").value == "12.5%"
    assert parse_rule("a", " Celery ").target == CELERY
    for bad in ("rabbit", "101%", "-1%", "x%", ""):
        with pytest.raises(ValueError, match="celery, asyncq or a canary"):
            parse_rule("a", bad)
    with pytest.raises(ValueError, match="default"):
        Router(default="both")


def test_a_rule_written_by_hand_that_cannot_be_read_is_skipped(client: redis.Redis, url: str) -> None:
    client.hset("asyncq:router:rules", mapping={b"\xff\xfe": "asyncq", "ok.*": "asyncq", "bad.*": b"\xff",
                                                "odd": "rabbit"})
    router = Router(url=url)
    assert dict(router.rules().by_pattern) == {"ok.*": parse_rule("ok.*", "asyncq")}
    client.delete("asyncq:router:rules")
    client.set("asyncq:router:rules", "not a hash")
    fresh = Router(url=url)
    assert len(fresh.rules()) == 0  # a key of the wrong type reads as no rules (logged), never an exception


def test_canary_uses_the_injected_draw() -> None:
    draws = iter([0.05, 0.099, 0.1, 0.5, 0.0, 0.999])
    router = Router(url="x", draw=lambda: next(draws))
    r = rules(**{"notifications.send": "10%"})
    assert [router.decide("notifications.send", r) for _ in range(6)] == [
        ASYNCQ, ASYNCQ, CELERY, CELERY, ASYNCQ, CELERY]
    assert Router(url="x", draw=lambda: 0.0).decide("n", rules(n="0%")) == CELERY
    assert Router(url="x", draw=lambda: 0.9999).decide("n", rules(n="100%")) == ASYNCQ


def test_canary_share_over_1000_calls_with_a_fixed_seed() -> None:
    router = Router(url="x", draw=random.Random(20261123).random)
    r = rules(**{"notifications.send": "10%"})
    to_asyncq = sum(router.decide("notifications.send", r) == ASYNCQ for _ in range(1000))
    # binomial(1000, 0.1): sd = 9.5; +-4 sd
    assert 62 <= to_asyncq <= 138, to_asyncq


def test_rules_are_cached_for_the_ttl_then_reread(client: redis.Redis, url: str) -> None:
    clock = Clock()
    router = Router(url, ttl=2.0, clock=clock)
    set_rule(client, "billing.*", "celery")
    assert router.route("billing.charge") == CELERY
    set_rule(client, "billing.*", "asyncq")
    client.hset(keys.ROUTER_RULES, "junk", "???")  # an invalid value in Redis is ignored, not fatal
    for _ in range(100):  # within the TTL: the cached rules, no Redis read per call
        assert router.route("billing.charge") == CELERY
    clock.now += 1.9
    assert router.route("billing.charge") == CELERY
    clock.now += 0.2
    assert router.route("billing.charge") == ASYNCQ
    router.close()


def test_a_failed_refresh_keeps_the_last_rules(client: redis.Redis, url: str) -> None:
    clock = Clock()
    router = Router(url, ttl=1.0, clock=clock)
    set_rule(client, "*", "asyncq")
    assert router.route("t") == ASYNCQ
    router.sync_client().close()
    router._client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    clock.now += 5
    assert router.route("t") == ASYNCQ
    fresh = Router("redis://127.0.0.1:1/0", ttl=1.0)
    fresh._client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        fresh.route("t")  # nothing read yet: the error surfaces


def test_running_producer_follows_rule_changes_without_restart(client: redis.Redis, url: str) -> None:
    """A real compat app: where its delay() calls land (kombu list or arq lane) follows the rules in Redis."""
    clock = Clock()
    app = Celery("proj", broker=url, backend=url, set_as_current=False,
                 asyncq_router=Router(ttl=2.0, clock=clock))

    @app.task(name="notifications.send")
    def send(user: int) -> int:
        return user

    try:
        set_rule(client, "notifications.*", "celery")
        r1 = send.delay(1)
        assert isinstance(r1, CeleryBackendResult) and client.llen("celery") == 1
        set_rule(client, "notifications.*", "asyncq")  # as `asyncq migrate route set` does
        send.delay(2)
        assert client.llen("celery") == 2  # still cached
        clock.now += 2.5
        r3 = send.delay(3)
        assert not isinstance(r3, CeleryBackendResult)
        assert client.llen("celery") == 2 and client.zcard("arq:queue:celery") == 1
        client.hdel(keys.ROUTER_RULES, "notifications.*")  # rollback: back to the default (celery)
        clock.now += 2.5
        send.delay(4)
        assert client.llen("celery") == 3
    finally:
        app.close()


def test_router_true_uses_the_apps_broker(client: redis.Redis, url: str) -> None:
    app = Celery("proj", broker=url, set_as_current=False, asyncq_router=True)
    try:
        set_rule(client, "*", "asyncq")
        app.send_task("any.task", (1,))
        assert isinstance(app.asyncq_router, Router) and app.asyncq_router.url == url
        assert client.zcard("arq:queue:celery") == 1 and not client.llen("celery")
    finally:
        app.close()
    off = Celery("proj", broker=url, set_as_current=False)
    try:
        client.hset(keys.ROUTER_RULES, "*", "celery")
        off.send_task("any.task", (2,))  # no router: the usual asyncq path, whatever the rules say
        assert client.zcard("arq:queue:celery") == 2 and not client.llen("celery")
    finally:
        off.close()


def test_forget_deletes_celerys_result_on_the_result_backend(client: redis.Redis, url: str) -> None:
    """``forget()`` of a Celery-run task deletes ``celery-task-meta-<id>`` where it is read: the result backend,
    which may be another Redis than the broker (it used to delete on the broker's)."""
    backend_url = flushed_url(BACKEND_DB)
    backend = redis.Redis.from_url(backend_url)
    app = Celery("proj", broker=url, backend=backend_url, set_as_current=False, asyncq_router=True)
    try:
        doc = json.dumps({"status": "SUCCESS", "result": 3, "traceback": None, "children": [],
                          "date_done": None, "task_id": "f1"})
        backend.set("celery-task-meta-f1", doc)
        client.set("celery-task-meta-f1", doc)  # the broker's Redis: not where this app reads results
        result = CeleryBackendResult("f1", app=app)
        assert result.get(timeout=5) == 3
        result.forget()
        assert not backend.exists("celery-task-meta-f1")
        assert client.exists("celery-task-meta-f1")
    finally:
        app.close()
        backend.close()


def test_cli_set_rm_show(client: redis.Redis, url: str) -> None:
    runner = CliRunner()

    def run(*args: str) -> str:
        res = runner.invoke(cli, ["migrate", "route", *args, "--redis-url", url])
        assert res.exit_code == 0, res.output
        return res.output

    assert "no route rules" in run("show")
    assert "billing.* -> celery" in run("set", "billing.*", "celery")
    run("set", "notifications.*", "asyncq")
    run("set", "notifications.send", "10%")
    run("set", "*", "celery")
    assert load_rules(client).by_pattern["notifications.send"].percent == 10.0
    shown = run("show", "notifications.send", "notifications.push", "billing.charge", "misc")
    assert shown.index("notifications.send ") < shown.index("notifications.*") < shown.index("billing.*")
    assert "notifications.send: 10% asyncq, 90% celery  (rule: notifications.send)" in shown
    assert "notifications.push: asyncq  (rule: notifications.*)" in shown
    assert "misc: celery  (rule: *)" in shown
    data = json.loads(run("show", "billing.charge", "--json"))
    assert data["tasks"]["billing.charge"] == {"goes_to": "celery", "rule": "billing.*"}
    assert {"pattern": "notifications.send", "route": "10%"} in data["rules"]
    assert "removed notifications.send" in run("rm", "notifications.send")
    assert explain(load_rules(client), "notifications.send") == ("asyncq", "notifications.*")
    bad = runner.invoke(cli, ["migrate", "route", "set", "x", "rabbitmq", "--redis-url", url])
    assert bad.exit_code == 2 and "canary percentage" in bad.output
    missing = runner.invoke(cli, ["migrate", "route", "rm", "nope", "--redis-url", url])
    assert missing.exit_code == 1 and "no rule 'nope'" in missing.output
