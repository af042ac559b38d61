"""Prometheus metrics: a worker's own (``WorkerMetrics`` + ``serve_metrics``) and the fleet's (``fleet_metrics``).

* A worker started with ``metrics_port`` (``WorkerSettings`` / ``ASYNCQ_WORKER_METRICS_PORT``) counts its
  jobs in a ``CollectorRegistry`` of its own (never prometheus_client's global one) and serves it at
  ``http://<metrics_host>:<port>/metrics``.
* The dashboard's ``/metrics`` answers for every worker at once: it reads the cumulative counters that the
  workers flush to Redis (``asyncq.stats``) and the live queue lengths. Scrape one or the other, not both,
  or the job counters are counted twice.

The metric names are the same in both: ``asyncq_jobs_{started,succeeded,failed,retried,dead_lettered,
aborted}_total{queue,task}``, ``asyncq_job_queue_wait_seconds{queue,task}`` and
``asyncq_job_run_seconds{queue,task}`` histograms; the fleet adds ``asyncq_queue_length{queue}`` (ready),
``asyncq_queue_in_flight``, ``asyncq_queue_scheduled``, ``asyncq_queue_dead_letters`` and
``asyncq_workers_alive``; a worker adds ``asyncq_worker_jobs_in_flight``.

With ``metrics_celery_names`` (``ASYNCQ_WORKER_METRICS_CELERY_NAMES=1``) a worker's endpoint also answers with
celery-exporter's names and labels (``CeleryExporterNames``), so Grafana dashboards built on celery-exporter keep
working while a project moves from Celery: ``celery_task_{received,started,succeeded,failed,retried,revoked,
rejected}_total{name,hostname,queue_name}`` (``failed`` adds ``exception``), the ``celery_task_runtime``
histogram, ``celery_worker_up{hostname}`` and ``celery_worker_tasks_active{hostname}``. ``celery_task_sent_total``
is a producer's count, which no worker sees: take it from OpenTelemetry's ``messaging.client.sent.messages``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from asyncq.context import JobContext
from asyncq.exceptions import JobAborted
from asyncq.hooks import Hooks
from asyncq.stats import BUCKETS, COUNTERS, UNKNOWN

if TYPE_CHECKING:
    from asyncq.admin import QueueStats, WorkerInfo
    from asyncq.flow_stats import FlowSummary

log = logging.getLogger("asyncq.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_FINITE = [b for b in BUCKETS if math.isfinite(b)]
#: stats counter name -> Prometheus metric name
_NAMES = {c: f"asyncq_jobs_{'dead_lettered' if c == 'dead' else c}" for c in COUNTERS}
_HELP = {
    "started": "Jobs that started running.",
    "succeeded": "Jobs whose task returned.",
    "failed": "Jobs that failed for good (retries exhausted or not retryable).",
    "retried": "Failed tries that were scheduled to run again.",
    "dead": "Jobs moved to the dead-letter store (failed ones and ones that could not run).",
    "aborted": "Jobs aborted while running.",
}


class CeleryExporterNames(Hooks):
    """The same job events under celery-exporter's metric names and labels, in the worker's registry.

    ``hostname`` is the machine's name (celery-exporter's is the worker's ``celery@host``; every worker process
    of a host shares it, and Prometheus tells them apart by its ``instance`` label).
    """

    def __init__(self, registry: CollectorRegistry, in_flight: Callable[[], float] | None,
                 hostname: str | None = None) -> None:
        self.hostname = hostname or socket.gethostname()
        labels = ("name", "hostname", "queue_name")

        def counter(event: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(f"celery_task_{event}", doc, (*labels, *extra), registry=registry)

        self.received = counter("received", "Tasks received by a worker.")
        self.started = counter("started", "Tasks that started running.")
        self.succeeded = counter("succeeded", "Tasks that succeeded.")
        self.failed = counter("failed", "Tasks that failed for good.", ("exception",))
        self.retried = counter("retried", "Tasks that failed and will be retried.")
        self.revoked = counter("revoked", "Tasks aborted (revoked) while running.")
        self.rejected = counter("rejected", "Tasks that could not run (unknown, undecodable, expired payload).")
        self.runtime = Histogram("celery_task_runtime", "Histogram of task runtime measurements.", labels,
                                 buckets=_FINITE, registry=registry)
        up = Gauge("celery_worker_up", "Indicates if a worker has recently sent a heartbeat.", ("hostname",),
                   registry=registry)
        up.labels(self.hostname).set(1)
        active = Gauge("celery_worker_tasks_active", "The number of tasks the worker is currently processing",
                       ("hostname",), registry=registry)
        if in_flight is not None:
            active.labels(self.hostname).set_function(in_flight)

    def _labels(self, ctx: JobContext) -> tuple[str, str, str]:
        return ctx.task_name, self.hostname, ctx.queue

    def _ran(self, ctx: JobContext) -> None:
        self.runtime.labels(*self._labels(ctx)).observe(max(0.0, time.time() - ctx.start_ms / 1000))

    async def on_start(self, ctx: JobContext) -> None:
        self.received.labels(*self._labels(ctx)).inc()
        self.started.labels(*self._labels(ctx)).inc()

    async def on_success(self, ctx: JobContext, result: Any) -> None:
        self.succeeded.labels(*self._labels(ctx)).inc()
        self._ran(ctx)

    async def on_failure(self, ctx: JobContext, exc: BaseException) -> None:
        if isinstance(exc, JobAborted):
            self.revoked.labels(*self._labels(ctx)).inc()
        else:
            self.failed.labels(*self._labels(ctx), type(exc).__name__).inc()
        self._ran(ctx)

    async def on_retry(self, ctx: JobContext, exc: BaseException, delay: float) -> None:
        self.retried.labels(*self._labels(ctx)).inc()
        self._ran(ctx)

    async def on_dead_letter(self, ctx: JobContext | None, job_id: str, reason: str) -> None:
        if ctx is None:  # it never ran (a run that failed for good is counted by on_failure)
            self.rejected.labels(UNKNOWN, self.hostname, UNKNOWN).inc()


class WorkerMetrics(Hooks):
    """Prometheus counters and histograms of one worker's jobs, in ``self.registry`` (with ``celery_names``,
    celery-exporter's names as well)."""

    def __init__(self, registry: CollectorRegistry | None = None, in_flight: Callable[[], float] | None = None,
                 *, celery_names: bool = False) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.celery = CeleryExporterNames(self.registry, in_flight) if celery_names else None
        labels = ("queue", "task")
        self.counters = {
            c: Counter(_NAMES[c], _HELP[c], labels, registry=self.registry) for c in COUNTERS
        }
        self.wait = Histogram("asyncq_job_queue_wait_seconds", "Time from run-at to start.", labels,
                              buckets=_FINITE, registry=self.registry)
        self.run = Histogram("asyncq_job_run_seconds", "Time a task ran.", labels, buckets=_FINITE,
                             registry=self.registry)
        self.in_flight = Gauge("asyncq_worker_jobs_in_flight", "Jobs this worker runs now.", registry=self.registry)
        if in_flight is not None:
            self.in_flight.set_function(in_flight)

    async def on_start(self, ctx: JobContext) -> None:
        self.counters["started"].labels(ctx.queue, ctx.task_name).inc()
        self.wait.labels(ctx.queue, ctx.task_name).observe(ctx.queue_wait_ms / 1000)
        if self.celery is not None:
            await self.celery.on_start(ctx)

    def _ended(self, ctx: JobContext, outcome: str) -> None:
        self.counters[outcome].labels(ctx.queue, ctx.task_name).inc()
        self.run.labels(ctx.queue, ctx.task_name).observe(max(0.0, time.time() - ctx.start_ms / 1000))

    async def on_success(self, ctx: JobContext, result: Any) -> None:
        self._ended(ctx, "succeeded")
        if self.celery is not None:
            await self.celery.on_success(ctx, result)

    async def on_failure(self, ctx: JobContext, exc: BaseException) -> None:
        self._ended(ctx, "aborted" if isinstance(exc, JobAborted) else "failed")
        if self.celery is not None:
            await self.celery.on_failure(ctx, exc)

    async def on_retry(self, ctx: JobContext, exc: BaseException, delay: float) -> None:
        self.counters["retried"].labels(ctx.queue, ctx.task_name).inc()
        if self.celery is not None:
            await self.celery.on_retry(ctx, exc, delay)

    async def on_dead_letter(self, ctx: JobContext | None, job_id: str, reason: str) -> None:
        queue, task = (ctx.queue, ctx.task_name) if ctx else (UNKNOWN, UNKNOWN)
        self.counters["dead"].labels(queue, task).inc()
        if self.celery is not None:
            await self.celery.on_dead_letter(ctx, job_id, reason)


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> asyncio.Server:
    """A minimal HTTP server answering every GET with the registry's metrics (no threads)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path.split(b"?")[0] in (b"/metrics", b"/"):
                body, status = generate_latest(registry), b"200 OK"
            else:
                body, status = b"not found; metrics are at /metrics\n", b"404 Not Found"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + CONTENT_TYPE.encode()
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host, port)
    log.info("worker metrics at http://%s:%d/metrics", host, port)
    return server


# --- the fleet, from Redis ------------------------------------------------------------------------------------
class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _histogram(name: str, doc: str, fields: dict[tuple[str, str], dict[str, int]], kind: str) -> Metric:
    fam = HistogramMetricFamily(name, doc, labels=("queue", "task"))
    for (queue, task), f in sorted(fields.items()):
        counts = [f.get(f"{kind}|{task}|{i}", 0) for i in range(len(BUCKETS))]
        if not any(counts):
            continue
        running, buckets = 0, []
        for bound, n in zip(BUCKETS, counts, strict=True):
            running += n
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), float(running)))
        fam.add_metric([queue, task], buckets, f.get(f"{kind}_sum|{task}", 0) / 1000)
    return fam


def fleet_metrics(
    totals: dict[str, dict[str, int]], queues: Iterable[QueueStats], workers: Iterable[WorkerInfo],
    flows: Iterable[FlowSummary] = (),
) -> bytes:
    """Prometheus text for every worker's flushed counters plus the live queue and worker gauges; ``flows`` adds
    the flow-control gauges, labelled by queue only (a tenant label would be unbounded)."""
    by_task: dict[tuple[str, str], dict[str, int]] = {}
    for queue, fields in totals.items():
        for name, value in fields.items():
            parts = name.split("|")
            by_task.setdefault((queue, parts[1] if len(parts) > 1 else UNKNOWN), {})[name] = value
    families: list[Metric] = []
    for c in COUNTERS:
        fam = CounterMetricFamily(_NAMES[c], _HELP[c], labels=("queue", "task"))
        for (queue, task), f in sorted(by_task.items()):
            if f"{c}|{task}" in f:
                fam.add_metric([queue, task], f[f"{c}|{task}"])
        families.append(fam)
    families.append(_histogram("asyncq_job_queue_wait_seconds", "Time from run-at to start.", by_task, "wait"))
    families.append(_histogram("asyncq_job_run_seconds", "Time a task ran.", by_task, "run"))
    gauges = {
        "length": ("asyncq_queue_length", "Jobs ready to run now."),
        "in_flight": ("asyncq_queue_in_flight", "Jobs a worker holds a live lease on."),
        "scheduled": ("asyncq_queue_scheduled", "Jobs waiting for a later run-at time."),
        "dead_letters": ("asyncq_queue_dead_letters", "Dead letters from this queue."),
    }
    qs = list(queues)
    for attr, (name, doc) in gauges.items():
        g = GaugeMetricFamily(name, doc, labels=("queue",))
        for s in qs:
            g.add_metric([s.queue], getattr(s, attr))
        families.append(g)
    flow_gauges = {
        "tenant_ready": ("asyncq_queue_tenant_ready", "Ready jobs in tenants' and limited tasks' flows."),
        "limited_ready": ("asyncq_queue_limited_ready", "Ready jobs of rate- or concurrency-limited tasks."),
    }
    fl = list(flows)
    for attr, (name, doc) in flow_gauges.items():
        g = GaugeMetricFamily(name, doc, labels=("queue",))
        for fs in fl:
            g.add_metric([fs.queue], getattr(fs, attr))
        families.append(g)
    tenants = GaugeMetricFamily("asyncq_queue_tenants", "Tenants with queued jobs.", labels=("queue",))
    for fs in fl:
        tenants.add_metric([fs.queue], len(fs.tenants))
    families.append(tenants)
    alive = GaugeMetricFamily("asyncq_workers_alive", "Workers with a live heartbeat.")
    alive.add_metric([], sum(1 for w in workers if w.alive))
    families.append(alive)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return generate_latest(registry)
