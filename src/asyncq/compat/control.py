"""``app.control``: revoke (persistent, unlike Celery's in-memory revokes) and ``inspect()``.

Revokes are kept in Redis for ``REVOKE_KEEP`` seconds, so a revoked task stays revoked across worker restarts
and for workers that start later. A queued or scheduled task is also removed at once; a running one is
cancelled only with ``terminate=True`` (Celery's rule).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

import orjson

from asyncq import keys
from asyncq.codec import decode_payload
from asyncq.compat._state import CeleryApp
from asyncq.exceptions import DeserializationError

REVOKE_KEEP = 3 * 86_400
ANY_REVOKED_CACHE = 1.0  # seconds a process trusts "nothing is revoked"


class Control:
    def __init__(self, app: CeleryApp) -> None:
        self.app = app
        self._any_revoked = True
        self._any_checked_until = 0.0

    def revoke(self, task_id: str | Iterable[str], destination: Any = None, terminate: bool = False,
               signal: Any = None, **kwargs: Any) -> None:
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        self.app.bridge.run(self.arevoke(ids, terminate=terminate))

    async def arevoke(self, ids: list[str], *, terminate: bool = False) -> None:
        asyncq_app = self.app.asyncq_app
        broker = await asyncq_app.broker()
        now = int(time.time() * 1000)
        async with broker.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.CELERY_REVOKED, {i: now for i in ids})
            pipe.zremrangebyscore(keys.CELERY_REVOKED, "-inf", now - REVOKE_KEEP * 1000)
            await pipe.execute()
        self._any_revoked, self._any_checked_until = True, 0.0
        for i in ids:
            job = asyncq_app.job(i)
            if terminate or not await broker.exists(keys.in_progress_key(i)):
                await job.abort()

    async def ais_revoked(self, task_id: str) -> bool:
        """Whether ``task_id`` was revoked. While no revoke exists at all (the common case), this costs one
        ``EXISTS`` per second per process instead of a round trip per job; revoking also removes queued jobs at
        once, so this check is the backstop for a job that was already claimed."""
        broker = await self.app.asyncq_app.broker()
        now = time.monotonic()
        if now >= self._any_checked_until:
            self._any_revoked = bool(await broker.exists(keys.CELERY_REVOKED))
            self._any_checked_until = now + ANY_REVOKED_CACHE
        if not self._any_revoked:
            return False
        return await broker.zscore(keys.CELERY_REVOKED, task_id) is not None

    def inspect(self, destination: Any = None, timeout: float = 1.0, **kwargs: Any) -> Inspect:
        return Inspect(self.app)

    def ping(self, **kwargs: Any) -> list[dict[str, Any]]:
        return [{w: {"ok": "pong"}} for w in (self.inspect().ping() or {})]


class Inspect:
    """Answers from Redis (heartbeats, leases, lanes) rather than a broadcast to every worker."""

    def __init__(self, app: CeleryApp) -> None:
        self.app = app

    def _run(self, coro: Any) -> Any:
        return self.app.bridge.run(coro)

    async def _workers(self) -> dict[str, dict[str, Any]]:
        broker = await self.app.asyncq_app.broker()
        ids = [i.decode() for i in await cast(Any, broker.zrange(keys.WORKERS_SET, 0, -1))]
        out: dict[str, dict[str, Any]] = {}
        for wid in ids:
            raw = await cast(Any, broker.get(keys.worker_key(wid)))
            if raw:
                out[wid] = orjson.loads(raw)
        return out

    async def _describe(self, job_id: str) -> dict[str, Any]:
        broker = await self.app.asyncq_app.broker()
        raw: bytes | None = await cast(Any, broker.get(keys.job_key(job_id)))
        d: dict[str, Any] = {"id": job_id}
        if raw is not None:
            try:
                p = decode_payload(self.app.asyncq_app.serializer, raw)
                d.update(name=p.function, args=list(p.args), kwargs=p.kwargs, queue=p.queue)
            except DeserializationError:
                pass
        return d

    async def _active(self) -> dict[str, list[dict[str, Any]]]:
        broker = await self.app.asyncq_app.broker()
        now = int(time.time() * 1000)
        out: dict[str, list[dict[str, Any]]] = {w: [] for w in await self._workers()}
        queues = {m.decode() for m in await cast(Any, broker.smembers(keys.QUEUES_SET))}
        for q in sorted(queues):
            for raw_id in await cast(Any, broker.zrangebyscore(keys.running_key(q), now, "+inf")):
                job_id = raw_id.decode()
                lease = await cast(Any, broker.get(keys.in_progress_key(job_id)))
                if lease is None:
                    continue
                worker, _, rest = lease.decode().rpartition(":" + job_id)[0].rpartition(":")
                info = await self._describe(job_id)
                info.update(hostname=worker, time_start=int(rest) / 1000 if rest.isdigit() else None)
                out.setdefault(worker, []).append(info)
        return out

    async def _scheduled(self) -> dict[str, list[dict[str, Any]]]:
        broker = await self.app.asyncq_app.broker()
        now = int(time.time() * 1000)
        entries: list[dict[str, Any]] = []
        queues = {m.decode() for m in await cast(Any, broker.smembers(keys.QUEUES_SET))}
        for q in sorted(queues):
            for lane in keys.lanes_by_priority(q):
                for raw_id, score in await cast(Any, broker.zrangebyscore(lane, f"({now}", "+inf", withscores=True)):
                    job_id = raw_id.decode()
                    if await broker.exists(keys.in_progress_key(job_id)):
                        continue  # running: its score is its lease end
                    entries.append({"eta": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(score / 1000)),
                                    "priority": None, "request": await self._describe(job_id)})
        return {"redis": entries}

    def active(self) -> dict[str, list[dict[str, Any]]]:
        return self._run(self._active())  # type: ignore[no-any-return]

    def scheduled(self) -> dict[str, list[dict[str, Any]]]:
        """ETA/countdown tasks. They live in Redis, not in a worker's memory, so they are listed under "redis"."""
        return self._run(self._scheduled())  # type: ignore[no-any-return]

    def reserved(self) -> dict[str, list[dict[str, Any]]]:
        """Always empty: asyncq workers never reserve (prefetch) jobs."""
        return {w: [] for w in self._run(self._workers())}

    def registered(self) -> dict[str, list[str]]:
        return {w: list(b.get("tasks", [])) for w, b in self._run(self._workers()).items()}

    def ping(self) -> dict[str, dict[str, str]]:
        return {w: {"ok": "pong"} for w in self._run(self._workers())}

    def stats(self) -> dict[str, Any]:
        return dict(self._run(self._workers()))
