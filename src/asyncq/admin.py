"""Operations on a running deployment: queue statistics, dead letters, the worker list.

Used by the ``asyncq`` command and (later) the dashboard. Everything here reads the Redis layout described in
``asyncq.keys`` and the ``lua/*.lua`` headers, and writes only through ``Broker`` methods, so the scripts stay
the one place where a job's state changes.

Costs, so a dashboard polling these knows what it pays:

* ``queue_stats``: three round trips however many queues there are (the queue list, one pipeline of counts
  for all queues, one ZMSCORE to rule out running ids among the oldest candidates), plus an ``HVALS`` of the
  dead-letter metadata, counted in Python: O(dead letters). Fine for the default cap (100,000 entries);
  a per-queue dead-letter counter kept by the Lua scripts would make it O(1) if that ever matters.
* ``list_dead_letters`` with ``queue=...`` and the ``queue=`` variants of retry/purge walk the dead-letter index
  in pages, reading metadata to filter: O(dead letters), for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import enum
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from asyncq import keys
from asyncq.broker import REDIS_DOWN, Broker, now_ms
from asyncq.codec import decode_payload, ms_to_datetime
from asyncq.dead_letter import DeadLetter
from asyncq.exceptions import ConfigurationError, JobNotFound

if TYPE_CHECKING:
    from asyncq.app import App

__all__ = [
    "DeadLetter",
    "QueueStats",
    "RetryOutcome",
    "RetrySummary",
    "WorkerInfo",
    "count_dead_letters",
    "list_dead_letters",
    "list_workers",
    "purge_dead_letters",
    "queue_stats",
    "retry_all_dead_letters",
    "retry_dead_letter",
]

#: ready ids looked at per lane to find the oldest one that is not running
OLDEST_PROBE = 10
#: dead-letter ids read per page when filtering by queue
DLQ_PAGE = 500
#: dead letters retried at once by ``retry_all_dead_letters``
RETRY_CONCURRENCY = 50


_dt = ms_to_datetime


# --- queues ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue right now, summed over its priority lanes."""

    queue: str
    #: jobs ready to run now (run-at time reached, not held by a worker)
    length: int
    #: seconds the oldest ready job has waited since its run-at time (None: nothing ready)
    oldest_age: float | None
    #: jobs a worker holds a live lease on
    in_flight: int
    #: jobs waiting for a later run-at time (delayed, or a retry after backoff)
    scheduled: int
    #: dead letters whose job came from this queue
    dead_letters: int


async def queue_stats(app: App, queues: Sequence[str] | None = None) -> list[QueueStats]:
    """Statistics for every known queue (``asyncq:queues``) plus ``queues``, sorted by name."""
    extra = {keys.check_queue_name(q) for q in queues or ()}
    broker = await app.broker()
    try:
        names = sorted(set(await broker.queue_names()) | extra)
        now = now_ms()
        rows, dead_metas = await broker.queue_snapshot(names, now, OLDEST_PROBE)
        dead_by_queue: dict[str, int] = {}
        for raw in dead_metas:
            q = DeadLetter.parse("", raw).queue
            dead_by_queue[q] = dead_by_queue.get(q, 0) + 1
        partial = [(q, *row) for q, row in zip(names, rows, strict=True)]
        oldest = await _oldest_not_running(broker, partial, now)
    except REDIS_DOWN as exc:
        raise broker.unavailable(exc, "reading queue statistics") from exc
    return [
        QueueStats(
            queue=q,
            length=ready,
            oldest_age=oldest.get(q),
            in_flight=in_flight,
            scheduled=max(0, later - in_flight),  # a running job's lane score is its lease end (> now)
            dead_letters=dead_by_queue.get(q, 0),
        )
        for q, ready, later, in_flight, _ in partial
    ]


async def _oldest_not_running(
    broker: Broker, partial: list[tuple[str, int, int, int, list[tuple[bytes, float]]]], now: int
) -> dict[str, float]:
    """Age in seconds of each queue's oldest ready job whose id holds no live lease (one round trip)."""
    with_candidates = [(q, cands) for q, _, _, _, cands in partial if cands]
    if not with_candidates:
        return {}
    leases = await broker.lease_ends([(q, [member.decode() for member, _ in cands]) for q, cands in with_candidates])
    ages: dict[str, float] = {}
    for (q, cands), lease_scores in zip(with_candidates, leases, strict=True):
        for (_, score), lease in zip(cands, lease_scores, strict=True):
            if lease is None or lease <= now:
                ages[q] = max(0.0, (now - score) / 1000)
                break
    return ages


# --- workers -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker's last heartbeat. ``alive`` is False once its heartbeat key has expired."""

    worker_id: str
    alive: bool
    last_beat: datetime | None
    host: str | None = None
    pid: int | None = None
    queues: tuple[str, ...] = ()
    concurrency: int | None = None
    running: int | None = None
    started_at: datetime | None = None
    stats: dict[str, int] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()
    #: what the worker reported doing: serving, full, redis-down, wedged (its claim loop stopped making
    #: progress: restart it) or stopping; None for workers of older versions
    state: str | None = None
    #: outcomes it holds because Redis did not answer when its jobs ended
    holding: int = 0

    @property
    def serving(self) -> bool:
        """Alive and able to take jobs: a wedged or stopping worker does not count."""
        return self.alive and self.state not in ("wedged", "stopping")


def _seq(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def list_workers(app: App) -> list[WorkerInfo]:
    """Workers that sent a heartbeat recently, newest heartbeat first (two round trips)."""
    broker = await app.broker()
    try:
        beats = await broker.worker_beats()
    except REDIS_DOWN as exc:
        raise broker.unavailable(exc, "listing workers") from exc
    return workers_of(beats)


def workers_of(beats: Sequence[tuple[str, float, bytes | None]]) -> list[WorkerInfo]:
    """``WorkerInfo`` of each (worker id, last beat ms, heartbeat JSON or None) from ``worker_beats``."""
    workers = []
    for wid, score, raw in beats:
        beat: dict[str, Any] = {}
        if raw is not None:  # a heartbeat is JSON written by a worker; anything else is shown as empty
            with contextlib.suppress(orjson.JSONDecodeError):
                loaded = orjson.loads(raw)
                beat = loaded if isinstance(loaded, dict) else {}
        stats = beat.get("stats")
        workers.append(
            WorkerInfo(
                worker_id=wid,
                alive=raw is not None,
                last_beat=_dt(beat.get("last_beat", score)),
                host=str(beat["host"]) if beat.get("host") is not None else None,
                pid=_int(beat.get("pid")),
                queues=_seq(beat.get("queues")),
                concurrency=_int(beat.get("concurrency")),
                running=_int(beat.get("running")),
                started_at=_dt(beat.get("started")),
                stats={str(k): v for k, v in stats.items() if _int(v) is not None} if isinstance(stats, dict) else {},
                tasks=_seq(beat.get("tasks")),
                state=str(beat["state"]) if beat.get("state") is not None else None,
                holding=_int(beat.get("holding")) or 0,
            )
        )
    return workers


# --- dead letters ------------------------------------------------------------------------------------------
def _dead_letter(app: App, job_id: str, raw_meta: bytes | None, payload: bytes | None) -> DeadLetter:
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    payload_error = None
    if not payload:
        payload_error = "payload missing (it expired before a worker reached it)"
    else:
        try:
            p = decode_payload(app.serializer, payload)
            args, kwargs = p.args, p.kwargs
        except Exception as exc:  # any serializer's failure: show the dead letter anyway
            payload_error = f"undecodable payload ({type(exc).__name__}: {exc})"
    return DeadLetter.parse(job_id, raw_meta).with_payload(args, kwargs, payload_error)


async def _pages(broker: Broker, queue: str | None) -> AsyncIterator[list[tuple[str, bytes | None]]]:
    """(id, meta) pages of the dead-letter index, newest first, filtered by queue when given."""
    offset = 0
    while True:
        ids = await broker.dlq_ids(offset, DLQ_PAGE)
        if not ids:
            return
        offset += len(ids)
        metas = await broker.dlq_meta(ids)
        page = [
            (i, m) for i, m in zip(ids, metas, strict=True)
            if queue is None or DeadLetter.parse(i, m).queue == queue
        ]
        if page:
            yield page
        if len(ids) < DLQ_PAGE:
            return


async def list_dead_letters(
    app: App, queue: str | None = None, limit: int = 100, offset: int = 0
) -> list[DeadLetter]:
    """Dead letters, newest first; ``queue`` keeps only that queue's (offset/limit count after filtering)."""
    if limit < 0 or offset < 0:
        raise ConfigurationError(f"limit and offset must be >= 0, got limit={limit} offset={offset}")
    if limit == 0:
        return []
    broker = await app.broker()
    try:
        if queue is None:
            ids = await broker.dlq_ids(offset, limit)
            metas = await broker.dlq_meta(ids)
            chosen = list(zip(ids, metas, strict=True))
        else:
            keys.check_queue_name(queue)
            chosen = []
            skip = offset
            async for page in _pages(broker, queue):
                if skip >= len(page):
                    skip -= len(page)
                    continue
                chosen += page[skip : skip + limit - len(chosen)]
                skip = 0
                if len(chosen) >= limit:
                    break
        payloads: list[bytes | None] = []
        if chosen:
            payloads = await broker.dlq_payloads([i for i, _ in chosen])
    except REDIS_DOWN as exc:
        raise broker.unavailable(exc, "listing dead letters") from exc
    return [
        _dead_letter(app, job_id, meta, payload)
        for (job_id, meta), payload in zip(chosen, payloads, strict=True)
        if meta is not None  # removed between the index read and the metadata read
    ]


async def count_dead_letters(app: App, queue: str | None = None) -> int:
    """How many dead letters there are (of ``queue``, if given: O(dead letters), see the module doc)."""
    broker = await app.broker()
    try:
        if queue is None:
            return await broker.dlq_count()
        keys.check_queue_name(queue)
        return len({job_id async for page in _pages(broker, queue) for job_id, _ in page})
    except REDIS_DOWN as exc:
        raise broker.unavailable(exc, "counting dead letters") from exc


class RetryOutcome(enum.StrEnum):
    """What ``retry_dead_letter`` did."""

    retried = "retried"  #: back in its lane as a fresh job (tries reset)
    job_exists = "job_exists"  #: a live job has this id (enqueued again meanwhile); left in the store


@dataclass(frozen=True, slots=True)
class RetrySummary:
    """What ``retry_all_dead_letters`` did: counts by outcome."""

    retried: int = 0
    job_exists: int = 0
    #: gone between listing and retrying (someone else retried or purged it)
    missing: int = 0

    @property
    def total(self) -> int:
        return self.retried + self.job_exists + self.missing


async def _retry_one(app: App, broker: Broker, job_id: str, raw_meta: bytes | None) -> RetryOutcome:
    missing = JobNotFound(
        f"no dead letter with id {job_id!r}: it was retried or purged already, or never dead-lettered; "
        "`asyncq dlq list` shows the ones there are",
        job_id=job_id,
    )
    if raw_meta is None:
        raise missing
    record = DeadLetter.parse(job_id, raw_meta)
    if record.kind == "celery":  # a Celery message: back onto its kombu list, as it was
        if await broker.dlq_push_to_list(job_id, record.celery_list):
            return RetryOutcome.retried
        raise missing
    status = await broker.dlq_retry(job_id, record.lane, record.queue, int(app.settings.payload_ttl * 1000))
    if status == 1:
        return RetryOutcome.retried
    if status == -1:
        return RetryOutcome.job_exists
    raise missing


async def retry_dead_letter(app: App, job_id: str) -> RetryOutcome:
    """Put one dead letter back in the lane it came from, as a fresh job (tries reset, old result dropped).

    Raises JobNotFound if there is no such dead letter. Returns ``RetryOutcome.job_exists`` (and changes
    nothing) if a live job with the same id exists.
    """
    broker = await app.broker()
    try:
        (raw_meta,) = await broker.dlq_meta([job_id])
        return await _retry_one(app, broker, job_id, raw_meta)
    except REDIS_DOWN as exc:
        raise broker.unavailable(exc, f"retrying dead letter {job_id}") from exc


#: ``progress(done, total)`` after each retried dead letter
Progress = Callable[[int, int], None]


async def retry_all_dead_letters(
    app: App, queue: str | None = None, progress: Progress | None = None
) -> RetrySummary:
    """Retry every dead letter (of ``queue``, if given); ``progress(done, total)`` reports as it goes."""
    if queue is not None:
        keys.check_queue_name(queue)
    broker = await app.broker()
    counts = {"retried": 0, "job_exists": 0, "missing": 0}
    try:
        # Collect first: retrying removes entries from the index being paged through.
        todo = list({job_id: meta async for page in _pages(broker, queue) for job_id, meta in page}.items())
        total = len(todo)
        if progress is not None:
            progress(0, total)
        done = 0
        for start in range(0, total, RETRY_CONCURRENCY):
            chunk = todo[start : start + RETRY_CONCURRENCY]
            outcomes = await asyncio.gather(
                *(_retry_one(app, broker, job_id, meta) for job_id, meta in chunk), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, JobNotFound):
                    counts["missing"] += 1
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    counts[outcome.value] += 1
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    except REDIS_DOWN as exc:
        raise broker.unavailable(exc, "retrying dead letters") from exc
    return RetrySummary(**counts)


async def purge_dead_letters(
    app: App, job_ids: Sequence[str] | None = None, *, queue: str | None = None
) -> int:
    """Delete dead letters for good; returns how many were deleted.

    ``job_ids``: those; ``queue``: every one of that queue; neither: all of them.
    """
    if job_ids is not None and queue is not None:
        raise ConfigurationError("purge either given job ids or a whole queue, not both")
    if isinstance(job_ids, str):
        raise ConfigurationError("job_ids must be a list of ids, not one string")
    if queue is not None:
        keys.check_queue_name(queue)
    broker = await app.broker()
    try:
        if queue is None:
            return await broker.dlq_purge(None if job_ids is None else list(job_ids))
        ids = list({job_id: None async for page in _pages(broker, queue) for job_id, _ in page})
        removed = 0
        for start in range(0, len(ids), DLQ_PAGE):
            removed += await broker.dlq_purge(ids[start : start + DLQ_PAGE])
        return removed
    except REDIS_DOWN as exc:
        raise broker.unavailable(exc, "purging dead letters") from exc


# --- operator views: paused and unserved queues, purge, task names live workers know --------------------------
@dataclass(frozen=True, slots=True)
class QueueService:
    """Who serves a queue right now (``asyncq queues``)."""

    queue: str
    #: no worker claims from it until ``asyncq resume QUEUE``
    paused: bool
    #: live workers that list this queue and can take jobs (not wedged, not stopping)
    serving_workers: int
    #: ready jobs wait and no live worker serves the queue: nothing runs them until a worker for it starts
    unserved: bool


async def queue_service(app: App, stats: Sequence[QueueStats], workers: Sequence[WorkerInfo]) -> list[QueueService]:
    """Paused flag and serving workers per queue of ``stats`` (workers from ``list_workers``: their heartbeats
    list the queues they serve). One round trip."""
    broker = await app.broker()
    try:
        paused = await broker.paused()
    except REDIS_DOWN as exc:
        raise broker.unavailable(exc, "reading paused queues") from exc
    serving = [w for w in workers if w.serving]
    rows = []
    for s in stats:
        n = sum(1 for w in serving if s.queue in w.queues)
        rows.append(QueueService(s.queue, s.queue in paused, n, unserved=s.length > 0 and n == 0))
    return rows


async def purge_queue(app: App, queue: str) -> int:
    """Delete ``queue``'s ready jobs (due now, held by no worker); jobs due later and running jobs stay.
    Returns how many were deleted. Their ids are gone: ``job.status()`` says not_found."""
    broker = await app.broker()
    try:
        return await broker.purge_ready(keys.check_queue_name(queue))
    except REDIS_DOWN as exc:
        raise broker.unavailable(exc, f"purging queue {queue}") from exc


@dataclass(frozen=True, slots=True)
class TaskNameCheck:
    """Whether the live workers have a task name registered (their heartbeats list their tasks)."""

    task: str
    #: live workers whose heartbeat lists their tasks (workers of older versions list none and are not counted)
    workers: int
    #: a live worker has the task registered
    known: bool
    #: the closest names the live workers know, best first (difflib)
    suggestions: tuple[str, ...] = ()

    def problem(self) -> str | None:
        """One plain sentence when no live worker can run the task (None when one can, or none is alive)."""
        if self.known or not self.workers:
            return None
        hint = f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        return (f"no live worker has a task named {self.task!r} ({self.workers} worker(s) alive){hint} Its jobs "
                "wait as 'unknown task' and go to the dead-letter store after the workers' unknown_task_wait")


def check_task_name(task: str, workers: Sequence[WorkerInfo]) -> TaskNameCheck:
    listing = [w for w in workers if w.alive and w.tasks]
    known = {t for w in listing for t in w.tasks}
    close = tuple(difflib.get_close_matches(task, sorted(known), n=3, cutoff=0.6)) if task not in known else ()
    return TaskNameCheck(task, len(listing), task in known, close)
