"""``app.control``: revoke (persistent, unlike Celery's in-memory revokes) and ``inspect()``.

Revokes are kept in Redis for ``store.REVOKE_KEEP`` seconds, so a revoked task stays revoked across worker restarts
and for workers that start later. A queued or scheduled task is also removed at once; a running one is
cancelled only with ``terminate=True`` (Celery's rule).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from asyncq import keys
from asyncq.admin import purge_queue
from asyncq.broker import now_ms
from asyncq.codec import decode_payload
from asyncq.compat import stamping, store
from asyncq.compat._state import CeleryApp
from asyncq.exceptions import DeserializationError

ANY_REVOKED_CACHE = 1.0  # seconds a process trusts "nothing is revoked"
#: the ``priority`` of every ``inspect().scheduled()`` entry: Celery reports its worker timer's priority for ETA
#: entries, always 6 (the task's own priority is in ``request["delivery_info"]["priority"]``)
ETA_ENTRY_PRIORITY = 6
#: revoked-stamp entries live beside the revoked ids (``stamping.revoke_entry``); they are not task ids
STAMP_ENTRY = "stamp:"


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

    def revoke_by_stamped_headers(self, headers: dict[str, Any], destination: Any = None, terminate: bool = False,
                                  signal: Any = None, reply: bool = False, **kwargs: Any
                                  ) -> list[dict[str, Any]] | None:
        """Revoke every task stamped with one of these values (``{"monitoring_id": [...]}``): queued ones, ones
        sent later, on every worker (kept in Redis, as revokes are). A task already running is not stopped:
        ``terminate`` is not supported for stamps. With ``reply=True``, Celery's per-worker reply."""
        self.app.bridge.run(stamping.arevoke_by_stamped_headers(self.app, headers))
        self._any_revoked, self._any_checked_until = True, 0.0
        if not reply:
            return None
        text = f"headers {headers!r} flagged as revoked" + ("" if terminate else ", but not terminated")
        return [{w: {"ok": text}} for w in (self.inspect(destination).ping() or {})]

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

    def purge(self, connection: Any = None, **kwargs: Any) -> int:
        """Celery's ``control.purge()``: discard the tasks waiting in this app's queues (the default queue and
        those of its tasks), returning how many. As in Celery, tasks with an ETA or countdown and running tasks
        stay (Celery's workers hold those; asyncq keeps them in Redis, due later)."""
        return int(self.app.bridge.run(self._apurge()))

    async def _apurge(self) -> int:
        queues = {str(self.app.conf.task_default_queue)}
        queues.update(str(t.queue) for t in list(self.app.tasks.values()) if getattr(t, "queue", None))
        total = 0
        for queue in sorted(queues):
            total += await purge_queue(self.app.asyncq_app, queue)
        return total

    def inspect(self, destination: Any = None, timeout: float = 1.0, **kwargs: Any) -> Inspect:
        return Inspect(self.app, destination=destination, timeout=timeout)

    def ping(self, destination: Any = None, timeout: float = 1.0, **kwargs: Any) -> list[dict[str, Any]]:
        return [{w: {"ok": "pong"}} for w in (self.inspect(destination).ping() or {})]


class Inspect:
    """Answers from Redis (heartbeats, leases, lanes) rather than a broadcast to every worker.

    Each answer is keyed by worker name, as Celery's are by node name: an asyncq worker's name is its id
    (``ASYNCQ_WORKER_NAME``, which Celery's test worker sets to its node name; else ``host-pid-random``).
    ``destination`` (a name or a list of names) limits the answer to those workers. Celery's ``None`` for "no
    worker answered" is kept: an empty answer is ``None``.
    """

    def __init__(self, app: CeleryApp, destination: Any = None, timeout: float = 1.0, **kwargs: Any) -> None:
        self.app = app
        self.destination: list[str] | None = [destination] if isinstance(destination, str) else (
            list(destination) if destination else None)
        self.timeout = timeout

    def _run(self, coro: Any) -> Any:
        return self.app.bridge.run(coro)

    @staticmethod
    def _answer(out: dict[str, Any]) -> dict[str, Any] | None:
        return out or None

    async def _workers(self) -> dict[str, dict[str, Any]]:
        broker = await self.app.asyncq_app.broker()
        out: dict[str, dict[str, Any]] = {}
        for wid, _, raw in reversed(await broker.worker_beats()):  # oldest beat first, as Celery lists them
            if raw and (self.destination is None or wid in self.destination):
                out[wid] = orjson.loads(raw)
        return out

    async def _describe(self, job_id: str) -> dict[str, Any]:
        """Celery's request info of a job (``inspect().active()`` entries and the like)."""
        broker = await self.app.asyncq_app.broker()
        raw = await broker.job_payload(job_id)
        d: dict[str, Any] = {"id": job_id}
        if raw is not None:
            try:
                p = decode_payload(self.app.asyncq_app.serializer, raw)
            except DeserializationError:
                return d
            celery = (p.headers or {}).get("celery") or {}
            d.update(name=p.function, args=list(p.args), kwargs=p.kwargs, type=p.function, hostname=None,
                     time_start=None, acknowledged=False,
                     delivery_info={"exchange": "", "routing_key": p.queue, "priority": celery.get("priority") or 0,
                                    "redelivered": bool(p.job_try and p.job_try > 1)},
                     worker_pid=None)
            if celery.get("eta"):
                d["eta"] = celery["eta"]
        return d

    async def _running(self, workers: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        broker = await self.app.asyncq_app.broker()
        now = int(time.time() * 1000)
        out: dict[str, list[dict[str, Any]]] = {w: [] for w in workers}
        for q in await broker.queue_names():
            for job_id in await broker.running_ids(q, now):
                lease = await broker.lease_of(job_id)
                if lease is None:
                    continue
                worker, _, rest = lease.decode().rpartition(":" + job_id)[0].rpartition(":")
                if self.destination is not None and worker not in self.destination:
                    continue
                info = await self._describe(job_id)
                info.pop("eta", None)
                info.update(hostname=worker, time_start=int(rest) / 1000 if rest.isdigit() else None,
                            acknowledged=True, worker_pid=workers.get(worker, {}).get("pid"))
                out.setdefault(worker, []).append(info)
        return out

    async def _active(self) -> dict[str, list[dict[str, Any]]]:
        return await self._running(await self._workers())

    async def _scheduled(self) -> dict[str, list[dict[str, Any]]]:
        """ETA/countdown jobs live in Redis, not in a worker's memory; each is listed once, under the first
        (oldest) live worker serving its queue, or under ``"redis"`` when no live worker serves it."""
        broker = await self.app.asyncq_app.broker()
        workers = await self._workers()
        now = int(time.time() * 1000)
        out: dict[str, list[dict[str, Any]]] = {w: [] for w in workers}
        for q in await broker.queue_names():
            owner = next((w for w, beat in workers.items() if q in beat.get("queues", ())), None)
            for lane in keys.lanes_by_priority(q):
                for raw_id, score in await broker.lane_later(lane, now):
                    job_id = raw_id.decode()
                    if await broker.is_running(job_id):
                        continue  # running: its score is its lease end
                    request = await self._describe(job_id)
                    eta = request.pop("eta", None) or datetime.fromtimestamp(score / 1000, UTC).isoformat()
                    out.setdefault(owner or "redis", []).append(
                        {"eta": eta, "priority": ETA_ENTRY_PRIORITY, "request": request})
        if self.destination is not None:
            out = {w: v for w, v in out.items() if w in self.destination}
        return out

    def active(self, safe: Any = None) -> dict[str, list[dict[str, Any]]] | None:
        """The jobs each worker is running now."""
        return self._answer(self._run(self._active()))

    def scheduled(self, safe: Any = None) -> dict[str, list[dict[str, Any]]] | None:
        """ETA/countdown tasks waiting for their time (see ``_scheduled`` for which worker lists them)."""
        return self._answer(self._run(self._scheduled()))

    def reserved(self, safe: Any = None) -> dict[str, list[dict[str, Any]]] | None:
        """Always empty lists: asyncq workers never reserve (prefetch) jobs."""
        return self._answer({w: [] for w in self._run(self._workers())})

    def registered(self, *taskinfoitems: str) -> dict[str, list[str]] | None:
        """Each worker's task names; with ``taskinfoitems`` (e.g. ``"rate_limit"``), Celery's
        ``"name [rate_limit=10/s]"`` form, from this app's task options."""
        out: dict[str, list[str]] = {}
        for w, beat in self._run(self._workers()).items():
            names = [str(n) for n in beat.get("tasks", [])]
            out[w] = [self._task_info(n, taskinfoitems) for n in names] if taskinfoitems else names
        return self._answer(out)

    registered_tasks = registered

    def _task_info(self, name: str, items: tuple[str, ...]) -> str:
        task = self.app.tasks.get(name)
        fields = [f"{item}={getattr(task, item, None) if task is not None else None}" for item in items]
        return f"{name} [{' '.join(fields)}]"

    def ping(self) -> dict[str, dict[str, str]] | None:
        return self._answer({w: {"ok": "pong"} for w in self._run(self._workers())})

    def stats(self) -> dict[str, Any] | None:
        """Celery's ``stats()`` fields that have an asyncq meaning (pid, uptime, pool concurrency, totals),
        plus asyncq's own heartbeat fields."""
        out: dict[str, Any] = {}
        now = time.time()
        for w, beat in self._run(self._workers()).items():
            started = beat.get("started")
            out[w] = {**beat, "pid": beat.get("pid"),
                      "uptime": max(0.0, now - started / 1000) if started else 0.0,
                      "pool": {"max-concurrency": beat.get("concurrency"), "processes": [beat.get("pid")],
                               "implementation": "asyncq"},
                      "total": dict(beat.get("stats") or {})}
        return self._answer(out)

    def revoked(self) -> dict[str, list[str]] | None:
        """The revoked ids, under every worker: revokes live in Redis (for ``store.REVOKE_KEEP``), so every
        worker honours all of them."""
        ids = [i for i in self._run(store.revoked_ids(self.app)) if not i.startswith(STAMP_ENTRY)]
        return self._answer({w: list(ids) for w in self._run(self._workers())})

    def query_task(self, *ids: Any) -> dict[str, dict[str, list[Any]]] | None:
        """Celery's ``query_task``: for each worker, the given ids it is running (``["active", request]``) or
        that wait for their ETA in its queues (``["scheduled", request]``)."""
        wanted = {i for group in ids for i in ([group] if isinstance(group, str) else group)}
        return self._answer(self._run(self._query(wanted)))

    async def _query(self, wanted: set[str]) -> dict[str, dict[str, list[Any]]]:
        out: dict[str, dict[str, list[Any]]] = {w: {} for w in await self._workers()}
        for w, jobs in (await self._active()).items():
            for info in jobs:
                if info["id"] in wanted:
                    out.setdefault(w, {})[info["id"]] = ["active", info]
        for w, entries in (await self._scheduled()).items():
            for entry in entries:
                if entry["request"]["id"] in wanted:
                    out.setdefault(w, {})[entry["request"]["id"]] = ["scheduled", entry["request"]]
        return out

    def conf(self, with_defaults: bool = False) -> dict[str, dict[str, Any]] | None:
        """The configuration every worker of this app runs with. Answered from this process's app (asyncq
        workers read the same configuration module), with values made JSON-able as Celery's reply is."""
        conf = {k: _jsonable(v) for k, v in self.app.conf.items()}
        return self._answer({w: dict(conf) for w in self._run(self._workers())})

    def active_queues(self) -> dict[str, list[dict[str, Any]]] | None:
        """The queues each worker serves (``name`` and ``routing_key`` of Celery's queue declarations)."""
        return self._answer({w: [{"name": q, "routing_key": q} for q in beat.get("queues", [])]
                             for w, beat in self._run(self._workers()).items()})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)

