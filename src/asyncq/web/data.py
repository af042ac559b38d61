"""What the dashboard shows, read from Redis: queues with rates, jobs by task and state, periodic tasks, charts.

Reads only (writes go through ``Broker`` / ``asyncq.admin``). Costs per call, for whoever polls them:
``overview`` is ``admin.queue_stats`` + ``admin.list_workers`` + one pipeline of HGETALLs (one per queue);
``list_jobs`` is one pipeline of ZRANGEs (first ``limit`` ids of each lane), one of GETs, one LRANGE of the
recent-jobs list and one MGET of their results; ``history`` is one pipeline of 60 HGETALLs per queue.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asyncq import admin, keys, stats
from asyncq.broker import now_ms, redact
from asyncq.codec import decode_payload, is_error
from asyncq.job import JobStatus
from asyncq.web.models import HistoryPoint, JobRow, Overview, PeriodicOut, QueueOut, WorkerOut

if TYPE_CHECKING:
    from asyncq.app import App

#: how far back the rate of a queue is measured (seconds)
RATE_WINDOW = 60.0
ACTIVE = (JobStatus.queued, JobStatus.deferred, JobStatus.in_progress)
_OUTCOME = {"success": "complete", "failed": "failed", "aborted": "aborted", "dead": "dead"}


def _dt(ms: Any) -> datetime | None:
    return None if ms in (None, 0, "") else datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


class RateMeter:
    """Rates in and out per queue, from successive samples of (jobs that left, jobs in the queue).

    ``out`` comes from the counters workers flush (``asyncq.stats``); ``in`` is ``out`` plus the growth of
    the backlog (ready + scheduled + in flight), so it needs no counter on the enqueue path. Samples are
    taken whenever the overview is read (the live page reads it every second or two).
    """

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[float, int, int]]] = {}

    def sample(self, queue: str, out_total: int, backlog: int, at: float | None = None) -> tuple[float, float] | None:
        now = time.monotonic() if at is None else at
        samples = self._samples.setdefault(queue, deque())
        samples.append((now, out_total, backlog))
        while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW:
            samples.popleft()
        t0, out0, back0 = samples[0]
        if now - t0 < 1.0:
            return None
        rate_out = max(0, out_total - out0) / (now - t0)
        return max(0.0, rate_out + (backlog - back0) / (now - t0)), rate_out


def _out_total(fields: dict[str, int]) -> int:
    return sum(v for k, v in fields.items() if k.split("|", 1)[0] in ("succeeded", "dead", "aborted"))


async def overview(app: App, meter: RateMeter) -> Overview:
    broker = await app.broker()
    queue_stats = await admin.queue_stats(app)
    workers = await admin.list_workers(app)
    paused = await broker.paused()
    totals = await stats.totals(broker, [q.queue for q in queue_stats])
    dead = await broker.dlq_count()
    queues = []
    for q in queue_stats:
        rates = meter.sample(q.queue, _out_total(totals.get(q.queue, {})), q.length + q.scheduled + q.in_flight)
        queues.append(QueueOut(
            queue=q.queue, length=q.length, oldest_age=q.oldest_age, in_flight=q.in_flight, scheduled=q.scheduled,
            dead_letters=q.dead_letters, paused=q.queue in paused,
            rate_in=None if rates is None else round(rates[0], 2),
            rate_out=None if rates is None else round(rates[1], 2),
        ))
    return Overview(
        redis=redact(app.settings.redis_url),
        queues=queues,
        workers=[
            WorkerOut(
                worker_id=w.worker_id, alive=w.alive, last_beat=w.last_beat, host=w.host, pid=w.pid,
                queues=list(w.queues), concurrency=w.concurrency, in_flight=w.running, started_at=w.started_at,
                stats=w.stats, state=w.state, holding=w.holding,
            )
            for w in workers
        ],
        dead_letters=dead,
        now=datetime.now(tz=UTC),
    )


# --- jobs ----------------------------------------------------------------------------------------------------
async def _active_jobs(app: App, queues: list[str], limit: int) -> list[JobRow]:
    broker = await app.broker()
    lanes = [(q, lane) for q in queues for lane in keys.lanes_by_priority(q)]
    ranges = await broker.lane_heads([lane for _, lane in lanes], limit)
    found = [(q, m.decode(), score) for (q, _), members in zip(lanes, ranges, strict=True) for m, score in members]
    if not found:
        return []
    raw = await broker.job_rows([jid for _, jid, _ in found])
    now = now_ms()
    rows = []
    for (q, jid, score), (payload_raw, in_progress, tries) in zip(found, raw, strict=True):
        try:
            payload = decode_payload(app.serializer, payload_raw) if payload_raw else None
        except Exception:  # any serializer's failure: list the job anyway
            payload = None
        started = None
        if in_progress is not None:
            status = JobStatus.in_progress
            claimed = in_progress.decode().rpartition(":" + jid)[0].rpartition(":")[2]
            started = _dt(claimed) if claimed.isdigit() else None
        else:
            status = JobStatus.deferred if score > now else JobStatus.queued
        rows.append(JobRow(
            job_id=jid, task=payload.function if payload else None, queue=q, status=status.value,
            tries=int(tries or 0), enqueued_at=_dt(payload.enqueue_ms) if payload else None, started_at=started,
            finished_at=None, scheduled_for=_dt(score) if status is not JobStatus.in_progress else None,
        ))
    return rows


async def _finished_jobs(app: App, scan: int) -> list[JobRow]:
    broker = await app.broker()
    ids = list(dict.fromkeys(await broker.recent_job_ids(scan)))
    if not ids:
        return []
    results = await broker.results_of(ids)
    rows = []
    for jid, raw in zip(ids, results, strict=True):
        if raw is None:
            continue  # expired (keep_result) or retried since
        try:
            d = app.serializer.loads(raw)
        except Exception:
            continue
        error = d.get("r") if is_error(d.get("r")) else None
        outcome = d.get("x") or ("success" if d.get("s") else "failed")
        rows.append(JobRow(
            job_id=jid, task=d.get("f") or None, queue=d.get("q") or None,
            status=_OUTCOME.get(outcome, "failed"), tries=int(d.get("t") or 0), enqueued_at=_dt(d.get("et")),
            started_at=_dt(d.get("st")), finished_at=_dt(d.get("ft")),
            error=f"{error['type']}: {error['message']}" if error else None,
        ))
    return rows


async def list_jobs(
    app: App, *, task: str | None = None, state: JobStatus | None = None, queue: str | None = None,
    limit: int = 50, scan: int = 1000,
) -> list[JobRow]:
    """Jobs waiting, running and recently finished, filtered; active ones first, then newest finished first.

    Active jobs: the first ``scan`` of each lane; finished ones: the last ``scan`` of the recent-jobs list.
    """
    broker = await app.broker()
    if queue is not None:
        queues = [keys.check_queue_name(queue)]
    else:
        queues = await broker.queue_names()
    rows: list[JobRow] = []
    if state is None or state in ACTIVE:
        rows += await _active_jobs(app, queues, scan)
    if state is None or state not in ACTIVE:
        rows += [r for r in await _finished_jobs(app, scan) if queue is None or r.queue == queue]
    return [
        r for r in rows
        if (task is None or r.task == task) and (state is None or r.status == state.value)
    ][:limit]


# --- periodic tasks and charts -----------------------------------------------------------------------------
async def periodic(app: App) -> list[PeriodicOut]:
    if not app.schedules:
        return []
    broker = await app.broker()
    lasts = await broker.cron_lasts([s.name for s in app.schedules])
    now = datetime.now(tz=UTC)
    out = []
    for s, last in zip(app.schedules, lasts, strict=True):
        last_ms = int(last) if last else None
        last_id = await app.tick_job_id(s, last_ms) if last_ms else None
        status = (await app.job(last_id).status()).value if last_id else None
        out.append(PeriodicOut(
            name=s.name, task=s.task_name, schedule=s.trigger.describe(), queue=s.queue,
            next_run=s.trigger.next_after(now), last_run=_dt(last_ms), last_job_id=last_id, last_status=status,
        ))
    return out


async def history(app: App, queues: list[str] | None = None, minutes: int = 60) -> dict[str, list[HistoryPoint]]:
    """Per queue, one point a minute over the last ``minutes``: jobs by outcome, queue-wait percentiles."""
    broker = await app.broker()
    if queues is None:
        queues = await broker.queue_names()
    raw = await stats.minute_history(broker, queues, minutes)
    return {
        q: [
            HistoryPoint(
                minute=datetime.fromtimestamp(m.minute * 60, tz=UTC),
                started=m.counts["started"], succeeded=m.counts["succeeded"], failed=m.counts["failed"],
                retried=m.counts["retried"], dead=m.counts["dead"],
                wait_p50=stats.percentile(m.wait_buckets, 0.5), wait_p95=stats.percentile(m.wait_buckets, 0.95),
                wait_p99=stats.percentile(m.wait_buckets, 0.99),
            )
            for m in rows
        ]
        for q, rows in raw.items()
    }
