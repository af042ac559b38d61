"""What changed in redis-py 6 to 8 that touches asyncq, pinned by tests (the suite runs on the newest redis-py;
tests/test_arq_interop.py runs asyncq on redis-py 5).

- redis-py 6 made clients retry failed commands three times with backoff by default. asyncq turns that off
  (``broker.no_retry``): a script call retried after a lost reply could run twice, and asyncq's loops retry on
  their own. Shown with a server that drops every connection after reading a command: one attempt, not four.
- Closing: ``App.close`` uses ``aclose`` (``close`` is deprecated since redis-py 5.0.1); the suite's
  ``filterwarnings = error`` turns any deprecated call into a failure.
- RESP: asyncq speaks RESP2 (redis-py's default in 5 to 8; arq's replies are parsed as RESP2 bytes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from asyncq import App, BrokerUnavailable, keys
from asyncq.broker import REDIS_DOWN, Broker, NewJob, SyncBroker, now_ms

from .bad_servers import BadServer


@pytest.fixture
def dropper() -> Iterator[BadServer]:
    d = BadServer(hang=False)
    yield d
    d.close()


def job() -> NewJob:
    return NewJob("r1", keys.lane_key("default"), "default", now_ms(), 60_000, b"{}")


async def test_the_async_broker_does_not_retry_inside_redis_py(dropper: BadServer) -> None:
    broker = Broker.connect(f"redis://127.0.0.1:{dropper.port}/0", connect_timeout=1, command_timeout=1)
    try:
        with pytest.raises(BrokerUnavailable):
            await broker.enqueue([job()])
        await asyncio.sleep(0.2)
        assert dropper.accepted == 1, f"{dropper.accepted} connection attempts for one command"
    finally:
        await broker.aclose()


def test_the_sync_broker_does_not_retry_inside_redis_py(dropper: BadServer) -> None:
    broker = SyncBroker(f"redis://127.0.0.1:{dropper.port}/0", connect_timeout=1, command_timeout=1)
    try:
        with pytest.raises(BrokerUnavailable):
            broker.enqueue([job()])
        assert dropper.accepted == 1, f"{dropper.accepted} connection attempts for one command"
    finally:
        broker.close()


async def test_a_worker_claim_against_a_dropping_server_fails_once_and_fast(dropper: BadServer) -> None:
    broker = Broker.connect(f"redis://127.0.0.1:{dropper.port}/0", connect_timeout=1, command_timeout=1)
    try:
        with pytest.raises(REDIS_DOWN):
            await broker.claim([keys.lane_key("default")], ["default"], 1, 1000, "w")
        assert dropper.accepted == 1
    finally:
        await broker.aclose()


async def test_replies_are_resp2_bytes(url: str) -> None:
    app = App(redis_url=url)
    broker = await app.broker()
    await broker.set("resp-probe", "v")
    assert await broker.get("resp-probe") == b"v"  # bytes, not str: decode_responses stays off
    await app.close()


async def test_more_concurrent_commands_than_redis_py_8s_default_pool_allows(url: str) -> None:
    """redis-py 8's asyncio pool refuses a 101st connection (MaxConnectionsError); asyncq's pool is capped at
    ``max_connections`` and makes the rest wait, so hundreds of tasks using Redis at once all succeed."""
    app = App(redis_url=f"{url}?client_name=pool-cap-probe", max_connections=150)  # named: counted apart
    broker = await app.broker()

    async def slow(i: int) -> Any:
        return await broker.eval("redis.call('SET', KEYS[1], ARGV[1]); return ARGV[1]", 1, f"k{i}", i)

    assert await asyncio.gather(*(slow(i) for i in range(600))) == [str(i).encode() for i in range(600)]
    listed = (await broker.execute_command("CLIENT", "LIST")).decode()
    ours = sum(1 for line in listed.splitlines() if " name=pool-cap-probe " in f" {line} ")
    assert 100 < ours <= 150, ours  # more than redis-py 8's default pool allows, within our cap
    await app.close()
