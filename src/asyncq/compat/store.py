"""The one owner of asyncq.compat's Redis state: every ``asyncq:celery:*`` key and every read or write of
Celery's result backend goes through these functions (the key names are in ``asyncq.keys``, Celery's in
``celery_protocol.kombu_layout``; the backend document in ``celery_protocol.results``).

Why one module: the rest of compat deals in Celery's concepts (a state, a group, a chord, a revoke), not in
Redis commands, so a transport change or a TTL change is made here once, and which Redis holds what is visible in
one place: the asyncq keys live in the broker's Redis; Celery's result documents in the Redis of the app's
``result_backend`` when that is another Redis URL (``backend_client``), else in the broker's.

What is kept and how long (seconds):

- ``asyncq:celery:state:<id>`` (``update_state``): the app's ``result_expires``, else ``RESULT_TTL``
- ``asyncq:celery:group:<id>`` (``GroupResult.save``): the same
- ``asyncq:celery:chord:<group>`` (header results), its ``:fired`` guard, ``:size`` (a generated header's
  size, known once it is all sent) and ``:grown`` (members added by ``add_to_chord``): ``CHORD_TTL``
- ``asyncq:celery:retries:<id>`` (``self.retry()`` calls so far): ``RETRIES_TTL``
- ``asyncq:celery:revoked`` (task id -> revoke time): entries older than ``REVOKE_KEEP`` are dropped on revoke
- ``celery-task-meta-<id>`` in the result backend: the app's ``result_expires`` (none: kept)

A namespaced App (``asyncq_namespace`` in the Celery conf) puts ``<namespace>:`` in front of the asyncq keys
(``broker.names``); Celery's own keys (kombu's lists, ``unacked``, the result backend's documents) are Celery's
layout and stay as they are, so Celery clients keep reading them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any, cast

import orjson
from redis.asyncio import Redis as AsyncRedis

from asyncq import keys
from asyncq.celery_protocol.kombu_layout import chord_size_key
from asyncq.celery_protocol.results import CeleryMeta, forget_meta, read_meta, wait_meta, write_meta
from asyncq.compat._state import CeleryApp
from asyncq.compat.config import seconds

#: a state or saved group when the app sets no ``result_expires`` (Celery's own default is one day)
RESULT_TTL = 86_400
#: a chord's collected header results and its fired guard (a header that takes longer loses its body)
CHORD_TTL = 86_400
#: the ``self.retry()`` counter of a job (a job retried over more than a day restarts its count)
RETRIES_TTL = 86_400
#: how long a revoke is remembered (Celery keeps revokes in memory only: until the worker restarts)
REVOKE_KEEP = 3 * 86_400


def result_ttl(app: CeleryApp) -> int:
    return int(seconds(app.conf.result_expires) or RESULT_TTL)


# --- update_state, saved groups -------------------------------------------------------------------------------
def state_key(task_id: str) -> str:
    return keys.CELERY_STATE_PREFIX + task_id


async def save_state(app: CeleryApp, task_id: str, state: str, meta: Any) -> None:
    broker = await app.asyncq_app.broker()
    await broker.set(broker.names_for(task_id)(state_key(task_id)), orjson.dumps({"state": state, "meta": meta}),
                     ex=result_ttl(app))


async def read_state(app: CeleryApp, task_id: str) -> dict[str, Any] | None:
    """The state a running task set with ``update_state`` (``{"state": ..., "meta": ...}``), or None."""
    broker = await app.asyncq_app.broker()
    raw = await broker.get(broker.names_for(task_id)(state_key(task_id)))
    return cast(dict[str, Any], orjson.loads(raw)) if raw else None


async def forget(app: CeleryApp, task_id: str) -> None:
    """Delete a task's asyncq result and any custom state (``AsyncResult.forget()``)."""
    broker = await app.asyncq_app.broker()
    names = broker.names_for(task_id)  # a job's own keys live on its shard (Redis Cluster)
    await broker.delete(names(keys.result_key(task_id)), names(state_key(task_id)))


async def forget_finished(app: CeleryApp, task_ids: Sequence[str]) -> None:
    """Delete the kept results of these tasks (one round trip), so that sending a canvas again whose
    signatures were frozen (ids reused) runs them again, as Celery does; a task still queued or running is
    left alone (its job key keeps the new send a duplicate)."""
    if not task_ids:
        return
    broker = await app.asyncq_app.broker()
    async with broker.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            names = broker.names_for(task_id)
            pipe.delete(names(keys.result_key(task_id)), names(state_key(task_id)))
        await pipe.execute()


async def save_group(app: CeleryApp, group_id: str, ids: list[str]) -> None:
    broker = await app.asyncq_app.broker()
    await broker.set(broker.names(keys.CELERY_GROUP_PREFIX + group_id), orjson.dumps(ids), ex=result_ttl(app))


async def load_group(app: CeleryApp, group_id: str) -> list[str] | None:
    broker = await app.asyncq_app.broker()
    raw = await broker.get(broker.names(keys.CELERY_GROUP_PREFIX + group_id))
    return None if raw is None else list(orjson.loads(raw))


# --- chords ---------------------------------------------------------------------------------------------------
async def chord_part_done(app: CeleryApp, group_id: str, index: int, result: bytes,
                          size: int | None) -> list[bytes] | None:
    """Record one header result (serialized); returns every header result in order to the one caller that
    completes the set and wins the fired guard (it sends the body, exactly once), else None.

    ``size`` None: the header is a generator still being sent; its size comes later (``chord_set_size``)."""
    broker = await app.asyncq_app.broker()
    key = broker.names(keys.CELERY_CHORD_PREFIX + group_id)
    async with broker.pipeline(transaction=True) as pipe:
        pipe.hset(key, str(index), cast(Any, result))
        pipe.hlen(key)
        pipe.expire(key, CHORD_TTL)
        pipe.get(key + ":size")
        pipe.get(key + ":grown")
        _, count, _, known, grown = await pipe.execute()
    if size is None:
        if known is None:
            return None
        size = int(known)
    return await _fire_if_complete(broker, key, int(count), size + int(grown or 0))


async def chord_grow(app: CeleryApp, group_id: str) -> int:
    """One more member for a chord whose header is running (``Task.add_to_chord``); returns how many were added
    so far. Called from inside a member that has not reported yet, so the join cannot complete before it counts."""
    broker = await app.asyncq_app.broker()
    key = broker.names(keys.CELERY_CHORD_PREFIX + group_id) + ":grown"
    async with broker.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, CHORD_TTL)
        grown, _ = await pipe.execute()
    return int(grown)


async def chord_set_size(app: CeleryApp, group_id: str, size: int) -> list[bytes] | None:
    """The size of a header sent as it was generated, known once the last member is sent; returns the header
    results to the caller when they are all in already (and it wins the fired guard), else None."""
    broker = await app.asyncq_app.broker()
    key = broker.names(keys.CELERY_CHORD_PREFIX + group_id)
    async with broker.pipeline(transaction=True) as pipe:
        pipe.set(key + ":size", size, ex=CHORD_TTL)
        pipe.hlen(key)
        pipe.get(key + ":grown")
        _, count, grown = await pipe.execute()
    return await _fire_if_complete(broker, key, int(count), size + int(grown or 0))


async def _fire_if_complete(broker: Any, key: str, count: int, size: int) -> list[bytes] | None:
    if count < size or not await broker.set(key + ":fired", 1, nx=True, ex=CHORD_TTL):
        return None
    parts: dict[bytes, bytes] = await cast(Any, broker.hgetall(key))
    return [parts[str(i).encode()] for i in range(size)]


async def chord_fire(app: CeleryApp, group_id: str) -> bool:
    """Take the chord's fired guard (a failed header member sends the body with the error); False if taken."""
    broker = await app.asyncq_app.broker()
    fired = broker.names(keys.CELERY_CHORD_PREFIX + group_id + ":fired")
    return bool(await broker.set(fired, 1, nx=True, ex=CHORD_TTL))


# --- self.retry() counter -------------------------------------------------------------------------------------
async def retries(app: CeleryApp, task_id: str) -> int:
    broker = await app.asyncq_app.broker()
    return int(await broker.get(broker.names_for(task_id)(keys.CELERY_RETRIES_PREFIX + task_id)) or 0)


async def count_retry(app: CeleryApp, task_id: str, *, refresh_ttl: bool = True) -> None:
    """One more ``self.retry()`` (or requeue) of the task; ``refresh_ttl`` restarts its ``RETRIES_TTL``."""
    broker = await app.asyncq_app.broker()
    key = broker.names_for(task_id)(keys.CELERY_RETRIES_PREFIX + task_id)
    if not refresh_ttl:
        await broker.incr(key)
        return
    async with broker.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, RETRIES_TTL)
        await pipe.execute()


# --- revokes ----------------------------------------------------------------------------------------------------
async def add_revoked(app: CeleryApp, ids: Sequence[str], now_ms: int) -> None:
    """Remember revokes (and forget those older than ``REVOKE_KEEP``), in one round trip."""
    broker = await app.asyncq_app.broker()
    async with broker.pipeline(transaction=False) as pipe:
        pipe.zadd(broker.names(keys.CELERY_REVOKED), dict.fromkeys(ids, now_ms))
        pipe.zremrangebyscore(broker.names(keys.CELERY_REVOKED), "-inf", now_ms - REVOKE_KEEP * 1000)
        await pipe.execute()


async def any_revoked(app: CeleryApp) -> bool:
    broker = await app.asyncq_app.broker()
    return bool(await broker.exists(broker.names(keys.CELERY_REVOKED)))


async def is_revoked(app: CeleryApp, task_id: str) -> bool:
    broker = await app.asyncq_app.broker()
    return await broker.zscore(broker.names(keys.CELERY_REVOKED), task_id) is not None


async def revoked_ids(app: CeleryApp) -> list[str]:
    """The ids revoked in the last ``REVOKE_KEEP`` seconds, oldest first (``inspect().revoked()``)."""
    broker = await app.asyncq_app.broker()
    ids: list[bytes] = await cast(Any, broker.zrange(broker.names(keys.CELERY_REVOKED), 0, -1))
    return [i.decode() for i in ids]


# --- Celery's result backend ----------------------------------------------------------------------------------
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncRedis]] = weakref.WeakKeyDictionary()


async def backend_client(app: CeleryApp) -> AsyncRedis:
    """The Redis of the app's ``result_backend`` (when that is another Redis URL), else the broker's; one client
    per event loop and URL."""
    url = app.conf.result_backend
    if not (isinstance(url, str) and url.startswith(("redis://", "rediss://", "unix://"))) \
            or url == app.asyncq_app.settings.redis_url:
        return await app.asyncq_app.broker()
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if url not in per_loop:
        per_loop[url] = AsyncRedis.from_url(url)
    return per_loop[url]


async def write_celery_meta(app: CeleryApp, task_id: str, document: bytes) -> bool:
    """Store and PUBLISH ``celery-task-meta-<id>`` for 'result_expires' (none: kept); never replaces a SUCCESS."""
    ttl = seconds(app.conf.result_expires)
    return await write_meta(await backend_client(app), task_id, document, max(1, int(ttl)) if ttl else 0)


async def read_celery_meta(app: CeleryApp, task_id: str) -> CeleryMeta:
    return await read_meta(await backend_client(app), task_id)


async def wait_celery_meta(app: CeleryApp, task_id: str, timeout: float | None) -> CeleryMeta:
    return await wait_meta(await backend_client(app), task_id, timeout)


async def forget_celery_meta(app: CeleryApp, task_id: str) -> None:
    """Delete the result where it is read: the result backend, not the broker (which can be another Redis)."""
    await forget_meta(await backend_client(app), task_id)


async def celery_chord_size(app: CeleryApp, group_id: str) -> int | None:
    """A chord header's size as a Celery producer stored it (``celery-taskset-meta-<group>.s``), or None."""
    client = await backend_client(app)
    raw = await client.get(chord_size_key(group_id))
    return int(raw) if raw is not None else None
