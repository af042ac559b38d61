"""Job statistics: counted in worker memory, flushed to Redis every few seconds, read by the dashboard.

A worker installs a ``StatsRecorder`` (a ``Hooks``) by default. Per job it only bumps counters in a dict: no
Redis command. Every ``WorkerSettings.stats_interval`` seconds the worker sends what it counted in one
pipeline of HINCRBYs, so the Redis cost is per flush, not per job, whatever the job rate.

Two hashes per queue (keys in ``asyncq.keys``):

* ``asyncq:stats:total:<queue>``: cumulative, fields ``<metric>|<task>`` for the counters (``started``,
  ``succeeded``, ``failed``, ``retried``, ``dead``, ``aborted``), ``wait|<task>|<i>`` / ``run|<task>|<i>``
  for the queue-wait and run-time histogram buckets (``i`` indexes ``BUCKETS``) and ``wait_sum|<task>`` /
  ``run_sum|<task>`` in milliseconds. The dashboard's ``/metrics`` turns these into Prometheus counters.
* ``asyncq:stats:minute:<queue>:<minute>``: the same counters and the queue-wait histogram for one minute,
  all tasks together, kept two hours: the dashboard's throughput and latency charts.

A failed job is counted as ``failed`` and, because it then goes to the dead-letter store, as ``dead`` too.
Jobs that left a queue = ``succeeded + dead + aborted``.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asyncq.broker import REDIS_DOWN
from asyncq.context import JobContext
from asyncq.exceptions import JobAborted
from asyncq.hooks import Hooks

if TYPE_CHECKING:
    from asyncq.broker import Broker

log = logging.getLogger("asyncq.stats")

#: histogram upper bounds in seconds, shared by queue wait and run time (the last bucket is +Inf)
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, math.inf,
)
COUNTERS = ("started", "succeeded", "failed", "retried", "dead", "aborted")
#: a dead letter without a decodable payload has no task or queue
UNKNOWN = "unknown"


def bucket_index(seconds: float) -> int:
    return bisect.bisect_left(BUCKETS, seconds)


_NB = len(BUCKETS)
#: layout of one (queue, task) row: the counters, then wait buckets, run buckets, wait sum, run sum (ms)
_WAIT0 = len(COUNTERS)
_RUN0 = _WAIT0 + _NB
_WAIT_SUM = _RUN0 + _NB
_RUN_SUM = _WAIT_SUM + 1
_IDX = {c: i for i, c in enumerate(COUNTERS)}


def _fields(task: str, row: list[int]) -> list[tuple[str, int]]:
    """The non-zero hash fields of one (queue, task) row."""
    names = [f"{c}|{task}" for c in COUNTERS]
    names += [f"wait|{task}|{b}" for b in range(_NB)] + [f"run|{task}|{b}" for b in range(_NB)]
    names += [f"wait_sum|{task}", f"run_sum|{task}"]
    return [(name, n) for name, n in zip(names, row, strict=True) if n]


class StatsRecorder(Hooks):
    """Counts job outcomes and latencies in memory; ``flush()`` sends them to Redis in one pipeline.

    Per job this is a dict lookup and a few list increments (the hot path runs >10,000 jobs/s). Counts are
    filed under the minute of the flush that sends them, so a minute's chart point is accurate to one
    ``stats_interval``.
    """

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], list[int]] = {}

    def _row(self, queue: str, task: str) -> list[int]:
        row = self._rows.get((queue, task))
        if row is None:
            row = self._rows[(queue, task)] = [0] * (_RUN_SUM + 1)
        return row

    def _count(self, queue: str, task: str, metric: str, amount: int = 1) -> None:
        self._row(queue, task)[_IDX[metric]] += amount

    async def on_start(self, ctx: JobContext) -> None:
        row = self._row(ctx.queue, ctx.task_name)
        row[0] += 1  # started
        wait = ctx.queue_wait_ms
        row[_WAIT0 + bisect.bisect_left(BUCKETS, wait / 1000)] += 1
        row[_WAIT_SUM] += wait

    def _ended(self, ctx: JobContext, index: int) -> None:
        row = self._row(ctx.queue, ctx.task_name)
        row[index] += 1
        ran = max(0, int(time.time() * 1000) - ctx.start_ms)
        row[_RUN0 + bisect.bisect_left(BUCKETS, ran / 1000)] += 1
        row[_RUN_SUM] += ran

    async def on_success(self, ctx: JobContext, result: Any) -> None:
        self._ended(ctx, _IDX["succeeded"])

    async def on_failure(self, ctx: JobContext, exc: BaseException) -> None:
        self._ended(ctx, _IDX["aborted" if isinstance(exc, JobAborted) else "failed"])

    async def on_retry(self, ctx: JobContext, exc: BaseException, delay: float) -> None:
        self._row(ctx.queue, ctx.task_name)[_IDX["retried"]] += 1

    async def on_dead_letter(self, ctx: JobContext | None, job_id: str, reason: str) -> None:
        self._row(ctx.queue if ctx else UNKNOWN, ctx.task_name if ctx else UNKNOWN)[_IDX["dead"]] += 1

    @property
    def pending(self) -> bool:
        return bool(self._rows)

    async def flush(self, broker: Broker) -> None:
        """Send what was counted since the last flush; on a Redis error it is kept for the next one."""
        if not self._rows:
            return
        rows, self._rows = self._rows, {}
        minute = int(time.time() // 60)
        per_minute: dict[str, Counter[str]] = {}
        per_total: dict[str, Counter[str]] = {}
        for (queue, task), row in rows.items():
            total = per_total.setdefault(queue, Counter())
            m = per_minute.setdefault(queue, Counter())
            for name, n in _fields(task, row):
                total[name] += n
                metric, _, rest = name.partition("|")
                if metric in _IDX:
                    m[metric] += n
                elif metric == "wait":
                    m["wait|" + rest.rpartition("|")[2]] += n
        try:
            await broker.add_stats(per_total, per_minute, minute)
        except REDIS_DOWN:
            for k, row in rows.items():  # keep them for the next flush
                mine = self._row(*k)
                for i, n in enumerate(row):
                    mine[i] += n
            raise

    async def run(self, broker: Broker, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled (the worker flushes once more when it stops)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush(broker)
            except REDIS_DOWN as exc:
                log.debug("stats flush postponed, Redis unreachable (%s)", exc)


# --- reading ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MinuteStats:
    """One queue in one minute: how many jobs ended how, and the queue-wait histogram."""

    minute: int  #: Unix time // 60
    counts: dict[str, int]
    wait_buckets: list[int] = field(default_factory=list)

    @property
    def out(self) -> int:
        return self.counts.get("succeeded", 0) + self.counts.get("dead", 0) + self.counts.get("aborted", 0)


def percentile(bucket_counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram in ``BUCKETS``, interpolated inside its bucket (seconds)."""
    total = sum(bucket_counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(bucket_counts):
        if n and seen + n >= rank:
            low = BUCKETS[i - 1] if i > 0 else 0.0
            high = BUCKETS[i] if math.isfinite(BUCKETS[i]) else low * 2
            return low + (high - low) * max(0.0, min(1.0, (rank - seen) / n))
        seen += n
    return BUCKETS[-2]


async def minute_history(broker: Broker, queues: Sequence[str], minutes: int = 60) -> dict[str, list[MinuteStats]]:
    """The last ``minutes`` minutes of each queue, oldest first, the current (partial) minute last."""
    now_minute = int(time.time() // 60)
    span = list(range(now_minute - minutes + 1, now_minute + 1))
    raw = await broker.stats_minutes(queues, span)
    history: dict[str, list[MinuteStats]] = {}
    for qi, q in enumerate(queues):
        rows = []
        for mi, m in enumerate(span):
            fields = {k.decode(): int(v) for k, v in raw[qi * len(span) + mi].items()}
            wait = [fields.get(f"wait|{i}", 0) for i in range(len(BUCKETS))]
            counts = {c: fields.get(c, 0) for c in COUNTERS}
            rows.append(MinuteStats(minute=m, counts=counts, wait_buckets=wait))
        history[q] = rows
    return history


async def totals(broker: Broker, queues: Sequence[str]) -> dict[str, dict[str, int]]:
    """Each queue's cumulative counters as stored (``metric|task`` and histogram fields)."""
    raw = await broker.stats_totals(queues)
    return {q: {k.decode(): int(v) for k, v in r.items()} for q, r in zip(queues, raw, strict=True)}
