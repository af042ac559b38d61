"""``app.control``: revoke (persistent, unlike Celery's in-memory revokes) and ``inspect()``.

Revokes are kept in Redis for ``store.REVOKE_KEEP`` seconds, so a revoked task stays revoked across worker restarts
and for workers that start later. A queued or scheduled task is also removed at once; a running one is
cancelled only with ``terminate=True`` (Celery's rule).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson

from asyncq import keys
from asyncq.broker import now_ms
from asyncq.codec import decode_payload
from asyncq.compat import store
from asyncq.compat._state import CeleryApp
from asyncq.exceptions import DeserializationError

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
        await store.add_revoked(self.app, ids, now_ms())
        self._any_revoked, self._any_checked_until = True, 0.0
        for i in ids:
            job = asyncq_app.job(i)
            if terminate or not await broker.is_running(i):
                await job.abort()

    async def ais_revoked(self, task_id: str) -> bool:
        """Whether ``task_id`` was revoked. While no revoke exists at all (the common case), this costs one
        ``EXISTS`` per second per process instead of a round trip per job; revoking also removes queued jobs at
        once, so this check is the backstop for a job that was already claimed."""
        now = time.monotonic()
        if now >= self._any_checked_until:
            self._any_revoked = await store.any_revoked(self.app)
            self._any_checked_until = now + ANY_REVOKED_CACHE
        if not self._any_revoked:
            return False
        return await store.is_revoked(self.app, task_id)

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
        out: dict[str, dict[str, Any]] = {}
        for wid, _, raw in reversed(await broker.worker_beats()):  # oldest beat first, as Celery lists them
            if raw:
                out[wid] = orjson.loads(raw)
        return out

    async def _describe(self, job_id: str) -> dict[str, Any]:
        broker = await self.app.asyncq_app.broker()
        raw = await broker.job_payload(job_id)
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
        for q in await broker.queue_names():
            for job_id in await broker.running_ids(q, now):
                lease = await broker.lease_of(job_id)
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
        for q in await broker.queue_names():
            for lane in keys.lanes_by_priority(q):
                for raw_id, score in await broker.lane_later(lane, now):
                    job_id = raw_id.decode()
                    if await broker.is_running(job_id):
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
