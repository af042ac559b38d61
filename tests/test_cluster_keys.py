"""The cluster layout's pure parts (no cluster needed): key names and their hash slots, job ids that carry their
shard, shard choice, the claim rotation's order, URL parsing and the settings that select the layout. The real
cluster scenarios are tests/test_cluster*.py (H2's harness)."""

from __future__ import annotations

import pytest
from redis.cluster import key_slot

from asyncq import App, keys
from asyncq.broker import Lease, NewJob, enqueue_args
from asyncq.cluster import NotReplicated, Placer, claim_order, shard_for
from asyncq.exceptions import ConfigurationError
from asyncq.redis_url import async_pool, check, cluster_url, is_cluster, parse_cluster
from asyncq.settings import AppSettings

CLUSTER = "redis+cluster://127.0.0.1:7000"  # never connected to in this module


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_every_key_of_a_shard_hashes_to_one_slot() -> None:
    k = keys.shard_keys("", "webhooks", 3)
    jid = keys.tagged_id("webhooks", 3, "0f" * 16)
    lane = keys.lane_key("webhooks", 7) + keys.flow_suffix("acme", "send")
    names = [
        k(keys.job_key(jid)), k(keys.result_key(jid)), k(keys.in_progress_key(jid)), k(keys.retry_key(jid)),
        k(lane), k.ring(lane), k(keys.running_key("webhooks")), k(keys.claimed_key("webhooks")), k(keys.DLQ_INDEX),
        k(keys.DLQ_PAYLOADS), k(keys.DLQ_META), k(keys.RECOVERIES), k(keys.PAUSED_SET), k(keys.ABORT_SET),
        k(keys.RATE_PREFIX + "send"), k(keys.INFLIGHT_PREFIX + "send"), k(keys.cron_last_key("nightly")),
        # what the Lua scripts build at run time from the prefixes they are given
        k(keys.JOB_PREFIX) + jid, k(keys.IN_PROGRESS_PREFIX) + jid,
    ]
    tag = keys.shard_tag("webhooks", 3)
    assert {slot(n) for n in names} == {slot(tag)}
    assert k(keys.job_key(jid)) == f"{tag}:arq:job:{tag}" + "0f" * 16


def test_namespace_goes_before_the_tag_and_keeps_the_slot() -> None:
    k = keys.shard_keys("billing", "emails", 0)
    assert k(keys.queue_key("emails")) == "billing:{emails:0}:arq:queue:emails"
    assert slot(k(keys.queue_key("emails"))) == slot("{emails:0}")
    g = keys.global_keys("billing")
    assert g(keys.WORKERS_SET) == "billing:{asyncq}:asyncq:workers"
    assert slot(g(keys.WORKERS_SET)) == slot(g(keys.worker_key("w1"))) == slot(g(keys.SHARDS_REGISTRY))


def test_shards_of_one_queue_spread_over_slots() -> None:
    slots = {slot(keys.shard_tag("webhooks", s)) for s in range(16)}
    assert len(slots) == 16


def test_shards_spread_over_the_slot_ring() -> None:
    # CRC16 is linear: "{q:0}" and "{q:1}" would differ in low slot bits only (same master on a 2-master
    # cluster for every queue). Shard tags aim at golden-ratio steps around the ring instead.
    assert keys.shard_tag("q", 0) == "{q:0}"
    halves = [{slot(keys.shard_tag(f"queue{i}", s)) * 2 // 16384 for s in range(2)} for i in range(200)]
    assert sum(len(h) == 2 for h in halves) > 100  # was 0 of 200 with plain "{q:s}" tags
    thirds = [{slot(keys.shard_tag(f"queue{i}", s)) * 3 // 16384 for s in range(6)} for i in range(200)]
    assert all(len(t) == 3 for t in thirds)  # 6 shards always reach all of 3 masters


def test_job_id_carries_its_shard() -> None:
    jid = keys.tagged_id("web-hooks.v2", 12, "abc")
    assert jid == keys.shard_tag("web-hooks.v2", 12) + "abc" and jid.startswith("{web-hooks.v2:12:")
    assert keys.shard_of(jid) == ("web-hooks.v2", 12)
    assert keys.shard_of("{q:0}abc") == ("q", 0)
    assert keys.shard_of("0f3a9c") is None  # a standalone id
    assert keys.shard_of("{bad queue:1}x") is None
    assert keys.shard_of("{q:x}y") is None


def test_placer_rules() -> None:
    p = Placer()
    # round-robin without a tenant or id
    fresh = [keys.shard_of(p.place("q", 4, f"{i:032x}", given=False)) for i in range(8)]
    assert [s for _, s in fresh] == [0, 1, 2, 3, 0, 1, 2, 3]  # type: ignore[misc]
    # one tenant, one shard
    assert len({keys.shard_of(p.place("q", 4, f"{i:032x}", given=False, tenant="acme")) for i in range(20)}) == 1
    assert keys.shard_of(p.place("q", 4, "x", given=False, tenant="acme")) == ("q", shard_for("acme", 4))
    # a given id: same id, same shard (dedupe holds)
    assert p.place("q", 4, "order-17", given=True) == keys.tagged_id("q", shard_for("order-17", 4), "order-17")
    # the tenant wins over a given id (the tenant's jobs stay on one shard; same id + same tenant: same shard)
    a = p.place("q", 4, "order-17", given=True, tenant="acme")
    assert a == p.place("q", 4, "order-17", given=True, tenant="acme") == keys.tagged_id("q", shard_for("acme", 4),
                                                                                         "order-17")
    # an id that already names a shard of its queue keeps it
    assert p.place("q", 4, keys.tagged_id("q", 2, "abc"), given=True) == keys.tagged_id("q", 2, "abc")
    assert p.place("q", 4, "{q:9}abc", given=True).startswith("{q:")  # shard 9 does not exist: re-tagged
    # a pin (a periodic task's guard) decides for every tick of that schedule
    ticks = {keys.shard_of(p.place("q", 4, f"cron:nightly:{t}", given=True, pin="asyncq:cron:nightly"))
             for t in range(10)}
    assert len(ticks) == 1
    # one shard: always shard 0
    assert keys.shard_of(p.place("solo", 1, "x", given=False, tenant="acme")) == ("solo", 0)


def test_shard_for_is_stable() -> None:
    # crc32: the same on every producer process and Python version (not hash(), which is salted)
    assert shard_for("acme", 16) == 14
    assert shard_for("anything", 1) == 0


def test_cluster_urls() -> None:
    u = parse_cluster("redis+cluster://user:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert u.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (u.username, u.password, u.ssl) == ("user", "p@ss", False)
    assert parse_cluster("rediss+cluster://h:1").ssl
    assert is_cluster("REDIS+CLUSTER://h:1") and not is_cluster("redis://h:1")
    check("redis+cluster://h:1")
    for bad in ("redis+cluster://h:1/3", "redis+cluster://h:notaport", "redis+cluster://h:1?x=1", "redis+cluster://"):
        with pytest.raises(ConfigurationError, match="not a Redis Cluster URL"):
            parse_cluster(bad)
    assert cluster_url("redis://:pw@h:7001/0").nodes == (("h", 7001),)
    with pytest.raises(ConfigurationError, match="cluster=True needs"):
        cluster_url("redis+sentinel://h:26379/mymaster")
    with pytest.raises(ConfigurationError, match="cannot serve a cluster"):
        async_pool("redis+cluster://h:1", max_connections=1, timeout=1)


def test_settings_select_and_check_the_layout() -> None:
    assert AppSettings(redis_url=CLUSTER).is_cluster
    assert AppSettings(redis_url="redis://h:1", cluster=True).is_cluster
    assert not AppSettings(redis_url="redis://h:1").is_cluster
    s = AppSettings.from_env({"ASYNCQ_REDIS_URL": CLUSTER, "ASYNCQ_QUEUE_SHARDS": "webhooks=16, emails=4"})
    assert s.queue_shards == {"webhooks": 16, "emails": 4}
    with pytest.raises(ConfigurationError, match="needs Redis Cluster"):
        AppSettings(redis_url="redis://h:1", queue_shards={"webhooks": 2})
    with pytest.raises(ConfigurationError, match="queue_shards"):
        AppSettings(redis_url=CLUSTER, queue_shards={"webhooks": 0})
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        AppSettings(redis_url=CLUSTER, queue_shards={"a:b": 2})
    with pytest.raises(ConfigurationError, match="not a valid"):
        AppSettings.from_env({"ASYNCQ_QUEUE_SHARDS": "webhooks"})
    with pytest.raises(ConfigurationError, match="Cluster only"):
        AppSettings(redis_url="redis://h:1", enqueue_wait_replicas=1)


def test_app_on_cluster_makes_tagged_ids() -> None:
    app = App(CLUSTER, queue_shards={"webhooks": 3})

    @app.task(name="hook", queue="webhooks", tenant_from="account")
    async def hook(account: str) -> None: ...

    a = app.new_job(hook.s(account="acme"), 0)
    b = app.new_job(hook.s(account="acme"), 0)
    assert keys.shard_of(a.job_id) == keys.shard_of(b.job_id) == ("webhooks", shard_for("acme", 3))
    plain = App("redis://h:1")

    @plain.task(name="t")
    async def t() -> None: ...

    assert keys.shard_of(plain.new_job(t.s(), 0).job_id) is None  # standalone ids are arq's: untouched


def test_scripts_declare_their_shard_keys_on_cluster_only() -> None:
    # the enqueue script's arguments are the same on both layouts; only the names differ (the shard's prefix)
    k, tag = keys.shard_keys("", "q", 1), keys.shard_tag("q", 1)
    nj = NewJob(tag + "x", keys.lane_key("q"), "q", 0, 1000, b"p")
    args = enqueue_args([nj], k=k)
    assert args[1] == f"{tag}:arq:job:" and args[4] == f"{tag}:asyncq:queues"
    assert Lease(tag + "x", "t", keys.lane_key("q"), "q").args(k)[2] == f"{tag}:arq:queue:q"


def test_claim_rotation_puts_every_shard_first_in_turn() -> None:
    firsts = [claim_order(["a"], {"a": 4}, turn)[0] for turn in range(8)]
    assert firsts == [("a", t % 4) for t in range(8)]
    # every claim visits every shard once; queues keep the worker's order; one-shard queues are plain
    assert claim_order(["a", "b"], {"a": 3}, 5) == [("a", 2), ("a", 0), ("a", 1), ("b", 0)]
    assert sorted(claim_order(["a"], {"a": 16}, 123)) == [("a", s) for s in range(16)]


def test_not_replicated_is_a_broker_error_that_names_the_jobs() -> None:
    from asyncq.exceptions import BrokerUnavailable

    err = NotReplicated("written, not replicated", ["{q:1}a"])
    assert isinstance(err, BrokerUnavailable) and err.job_ids == ["{q:1}a"]


def test_scripts_announce_with_the_publish_command_they_are_built_with() -> None:
    from asyncq.scripts import PUBLISHING, script_source

    for name in PUBLISHING:
        plain, sharded = script_source(name), script_source(name, "SPUBLISH")
        assert plain.startswith("local PUBLISH = 'PUBLISH'\n") and sharded.startswith("local PUBLISH = 'SPUBLISH'\n")
        assert "redis.call('PUBLISH'" not in plain  # every announcement goes through the local
    assert not script_source("claim").startswith("local PUBLISH")
    with pytest.raises(ValueError, match="publish must be"):
        script_source("finish", "XPUBLISH")


def test_cluster_pubsub_setting_is_checked() -> None:
    assert AppSettings(redis_url=CLUSTER).cluster_pubsub == "auto"
    assert AppSettings.from_env({"ASYNCQ_REDIS_URL": CLUSTER, "ASYNCQ_CLUSTER_PUBSUB": "classic"}).cluster_pubsub == (
        "classic")
    with pytest.raises(ConfigurationError, match="cluster_pubsub must be"):
        AppSettings(redis_url=CLUSTER, cluster_pubsub="spublish")


def test_a_worker_name_is_its_id_and_is_checked() -> None:
    from asyncq import Worker
    from asyncq.settings import WorkerSettings

    app = App(CLUSTER)

    @app.task(name="noop")
    async def noop() -> None: ...

    assert Worker(app, name="gen42@host").worker_id == "gen42@host"
    assert Worker(app).worker_id  # host-pid-random when not named
    for bad in ("a:b", "with space", "x" * 201):
        with pytest.raises(ConfigurationError, match="worker name"):
            WorkerSettings(name=bad)


async def test_a_shard_that_fails_keeps_its_failure_to_its_own_items() -> None:
    # renew/finish on a cluster: every shard's part is sent; one shard without Redis fails only its items
    from redis.exceptions import ConnectionError as RedisConnectionError

    from asyncq.broker import PartialWrite
    from asyncq.broker_cluster import _each_shard

    sent: list[list[str]] = []

    async def call(shard: str, part: list[str]) -> list[str]:
        sent.append(part)
        if shard == "b":
            raise RedisConnectionError("master of b is gone")
        return [x.upper() for x in part]

    ids = ["a1", "b1", "a2", "c1", "b2"]
    with pytest.raises(PartialWrite) as caught:
        await _each_shard(ids, ids, lambda jid: jid[0], call)
    assert sorted(map(tuple, sent)) == [("a1", "a2"), ("b1", "b2"), ("c1",)]  # every shard was tried
    results = caught.value.results
    assert [r if isinstance(r, str) else "error" for r in results] == ["A1", "error", "A2", "C1", "error"]
    assert await _each_shard(["a1", "c1"], ["a1", "c1"], lambda jid: jid[0], call) == ["A1", "C1"]


def test_the_celery_bridge_refuses_a_cluster_app_wherever_it_is_built() -> None:
    """Not only the CLI: a CeleryConsumer built in code on a cluster app fails at once, saying why."""
    from asyncq.compat import Celery
    from asyncq.compat.celery_consumer import CeleryConsumer, ConsumerSettings
    from asyncq.exceptions import ConfigurationError

    app = Celery("bridge", broker="redis+cluster://127.0.0.1:1")  # nothing connects: the check is on the URL
    with pytest.raises(ConfigurationError, match="Redis Cluster"):
        CeleryConsumer(app, ConsumerSettings(celery_queues=("celery",)))
    standalone = Celery("bridge2", broker="redis://127.0.0.1:1/0")
    assert CeleryConsumer(standalone, ConsumerSettings(celery_queues=("celery",))).queues == ("celery",)
