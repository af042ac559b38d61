"""compat/store.py, the one owner of the Celery layer's Redis state: what it keeps, for how long, and where
(the broker's Redis, or the Redis of the app's ``result_backend``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from asyncq import keys
from asyncq.celery_protocol.kombu_layout import meta_key
from asyncq.celery_protocol.results import meta_document
from asyncq.compat import Celery, store

from .conftest import flushed_url

BROKER_DB, BACKEND_DB = 4, 5


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("store", broker=flushed_url(BROKER_DB), backend=flushed_url(BACKEND_DB))
    yield app
    app.close()


@pytest.fixture
def broker_redis() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(flushed_url(BROKER_DB))
    yield r
    r.close()


def test_state_and_group_live_result_expires_else_a_day(app: Celery, broker_redis: redis.Redis) -> None:
    app.store_state("t1", "PROGRESS", {"done": 3})
    assert app.bridge.run(store.read_state(app, "t1")) == {"state": "PROGRESS", "meta": {"done": 3}}
    assert store.RESULT_TTL - 5 < broker_redis.ttl(keys.CELERY_STATE_PREFIX + "t1") <= store.RESULT_TTL
    app.conf.result_expires = 60
    app.bridge.run(app.save_group("g1", ["a", "b"]))
    assert app.bridge.run(app.load_group("g1")) == ["a", "b"]
    assert 55 < broker_redis.ttl(keys.CELERY_GROUP_PREFIX + "g1") <= 60
    assert app.bridge.run(app.load_group("nope")) is None


def test_a_chord_header_is_released_once_to_the_member_completing_it(app: Celery, broker_redis: redis.Redis) -> None:
    done = [app.bridge.run(store.chord_part_done(app, "c1", i, f"r{i}".encode(), 3)) for i in (2, 0)]
    assert done == [None, None]
    assert app.bridge.run(store.chord_part_done(app, "c1", 1, b"r1", 3)) == [b"r0", b"r1", b"r2"]
    assert app.bridge.run(store.chord_part_done(app, "c1", 1, b"r1", 3)) is None  # a re-run: fired already
    assert app.bridge.run(store.chord_fire(app, "c1")) is False
    assert store.CHORD_TTL - 5 < broker_redis.ttl(keys.CELERY_CHORD_PREFIX + "c1") <= store.CHORD_TTL


def test_retry_counter_and_revokes(app: Celery, broker_redis: redis.Redis) -> None:
    assert app.bridge.run(store.retries(app, "t")) == 0
    app.bridge.run(store.count_retry(app, "t"))
    app.bridge.run(store.count_retry(app, "t", refresh_ttl=False))
    assert app.bridge.run(store.retries(app, "t")) == 2
    assert store.RETRIES_TTL - 5 < broker_redis.ttl(keys.CELERY_RETRIES_PREFIX + "t") <= store.RETRIES_TTL
    assert app.bridge.run(store.any_revoked(app)) is False
    now = 10 * store.REVOKE_KEEP * 1000
    app.bridge.run(store.add_revoked(app, ["old"], now - store.REVOKE_KEEP * 1000 - 1))
    app.bridge.run(store.add_revoked(app, ["new"], now))  # forgets revokes older than REVOKE_KEEP
    assert app.bridge.run(store.is_revoked(app, "new")) is True
    assert app.bridge.run(store.is_revoked(app, "old")) is False


def test_celery_documents_go_to_the_result_backend_not_the_broker(app: Celery, broker_redis: redis.Redis) -> None:
    backend = redis.Redis.from_url(flushed_url(BACKEND_DB))
    try:
        doc = meta_document("t9", "SUCCESS", 5, None)
        assert app.bridge.run(store.write_celery_meta(app, "t9", doc)) is True
        assert broker_redis.get(meta_key("t9")) is None and backend.get(meta_key("t9")) == doc
        meta = app.bridge.run(store.read_celery_meta(app, "t9"))
        assert (meta.status, meta.result) == ("SUCCESS", 5)
        # a SUCCESS is never replaced (a re-run after a lost worker cannot change what the producer saw)
        assert app.bridge.run(store.write_celery_meta(app, "t9", meta_document("t9", "FAILURE", None, "x"))) is False
        backend.set("celery-taskset-meta-g.s", 4)
        assert app.bridge.run(store.celery_chord_size(app, "g")) == 4
        app.bridge.run(store.forget_celery_meta(app, "t9"))
        assert backend.get(meta_key("t9")) is None
    finally:
        backend.close()
