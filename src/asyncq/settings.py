"""Configuration as frozen dataclasses: what a value means is written once, here, with its default.

``from_env`` reads ``ASYNCQ_*`` variables with typed casts, so a deployment can tune a worker without code.
Unknown fields are rejected rather than ignored: a typo in a setting should fail loudly at start-up.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asyncq.cron import zone
from asyncq.exceptions import ConfigurationError
from asyncq.keys import DEFAULT_QUEUE, MAX_SHARDS, check_namespace, check_queue_name
from asyncq.redis_url import is_cluster

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

T = TypeVar("T")


def _cast(name: str, raw: str, typ: Any) -> Any:
    try:
        if typ in (bool, "bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if typ in (int, "int"):
            return int(raw)
        if typ in (float, "float"):
            return float(raw)
        if typ == "float | None":
            return None if raw.lower() in ("", "none") else float(raw)
        if typ == "dict[str, int]":  # "webhooks=16,emails=4"
            pairs = [part.split("=", 1) for part in raw.split(",") if part.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError(raw)
            return {k.strip(): int(v) for k, v in pairs}
        if typ in ("tuple[str, ...]",):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw
    except ValueError:
        raise ConfigurationError(f"environment variable {name}={raw!r} is not a valid {typ}") from None


def from_env_fields(cls: type[T], prefix: str, env: Mapping[str, str] | None, overrides: dict[str, Any]) -> T:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        var = prefix + f.name.upper()
        if var in env:
            values[f.name] = _cast(var, env[var], f.type)
    values.update(overrides)
    return cls(**values)


def check_fields(cls: type[Any], given: Mapping[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown {cls.__name__} option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How one worker process behaves. Times are seconds."""

    #: served in this order; empty means the App's default queue, then every other queue its tasks use
    queues: tuple[str, ...] = ()
    #: jobs in flight at once; a job is claimed only when one of these slots is free (no prefetch)
    concurrency: int = 100
    #: threads for plain ``def`` tasks (they never run on the event loop)
    threads: int = 40
    #: a running job's lease; a dead worker's jobs run again this long after its last renewal
    lease: float = 10.0
    #: the safety-net poll when no wake-up arrives (wake-ups normally start a job within milliseconds)
    poll_interval: float = 1.0
    #: on SIGTERM, how long running jobs may take to finish before they are handed back to the queue
    shutdown_grace: float = 30.0
    #: a job whose task this worker does not know is put back for this long before it is dead-lettered
    unknown_task_wait: float = 600.0
    #: most jobs claimed in one claim round trip
    claim_batch: int = 200
    #: heartbeat period (worker list, arq health key)
    heartbeat_interval: float = 5.0
    #: stop when the queues are empty (for scripts and tests)
    burst: bool = False
    #: dead letters kept; the oldest are dropped past this
    max_dead_letters: int = 100_000
    #: install SIGTERM/SIGINT handlers in ``run()``
    handle_signals: bool = True
    #: seconds between flushes of job statistics to Redis (dashboard charts, fleet metrics); 0: not recorded
    stats_interval: float = 2.0
    #: serve this worker's Prometheus metrics on this port (0: no metrics server)
    metrics_port: int = 0
    #: the address the metrics server binds to
    metrics_host: str = "127.0.0.1"
    #: the metrics server also answers with celery-exporter's names and labels (celery_task_succeeded_total
    #: {name,hostname,queue_name}, ...), so dashboards built for Celery keep working during a migration
    metrics_celery_names: bool = False
    #: how long a worker keeps an outcome (result, retry, dead letter) it could not write because Redis was
    #: unreachable; it writes it as soon as Redis answers, before claiming new work. Past this the outcome is
    #: dropped and the job runs again after its lease (at least once)
    outcome_hold: float = 120.0
    #: after a worker reconnects from an outage, no worker recovers lapsed leases for this long, so their
    #: owners can take them back and write the outcomes they held
    reconnect_grace: float = 15.0
    #: a worker whose claim loop made no progress this long (with free slots) reports itself "wedged" in its
    #: heartbeat, its log and `asyncq queues`
    wedged_after: float = 60.0
    #: this worker's id in heartbeats, leases and ``asyncq workers`` (Celery's ``-n`` nodename); empty:
    #: ``host-pid-random``. Must be unique among live workers; no ':' or spaces (the id is part of lease tokens)
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.queues, str):
            object.__setattr__(self, "queues", tuple(q.strip() for q in self.queues.split(",") if q.strip()))
        for q in self.queues:
            check_queue_name(q)
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.threads < 1:
            raise ConfigurationError(f"threads must be >= 1, got {self.threads}")
        if self.lease < 0.5:
            raise ConfigurationError(f"lease must be >= 0.5 s, got {self.lease}")
        if self.poll_interval <= 0 or self.shutdown_grace < 0 or self.unknown_task_wait < 0:
            raise ConfigurationError("poll_interval must be > 0; shutdown_grace and unknown_task_wait >= 0")
        if self.stats_interval < 0 or not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError("stats_interval must be >= 0 and metrics_port 0 (off) to 65535")
        if self.claim_batch < 1:
            raise ConfigurationError(f"claim_batch must be >= 1, got {self.claim_batch}")
        if self.name and (":" in self.name or not self.name.isprintable() or " " in self.name or len(self.name) > 200):
            raise ConfigurationError(
                f"worker name {self.name!r} must be 1-200 printable characters without ':' or spaces (it is part "
                "of each lease token); leave it empty for host-pid-random")
        if self.outcome_hold < 0 or self.reconnect_grace < 0 or self.wedged_after <= 0:
            raise ConfigurationError("outcome_hold and reconnect_grace must be >= 0 and wedged_after > 0 seconds")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WorkerSettings:
        """Read ``ASYNCQ_WORKER_<FIELD>`` variables (e.g. ASYNCQ_WORKER_CONCURRENCY=500); overrides win."""
        check_fields(cls, overrides)
        return from_env_fields(cls, "ASYNCQ_WORKER_", env, overrides)


@dataclass(frozen=True, slots=True)
class AppSettings:
    """What producers and workers of one App share."""

    redis_url: str = field(default_factory=lambda: os.environ.get("ASYNCQ_REDIS_URL", DEFAULT_REDIS_URL))
    #: "json" (default), "msgpack" or "pickle" (needs signing_key)
    serializer: str = "json"
    signing_key: str = ""
    default_queue: str = DEFAULT_QUEUE
    #: tries per job, the first included, unless a task says otherwise; only the task's own tries count
    #: (exceptions, timeouts), never a worker's death
    max_tries: int = 3
    #: times a job may be recovered after its worker was lost (killed, or out of Redis longer than its lease)
    #: before it is dead-lettered as a likely poison pill ("worker lost N times")
    max_recoveries: int = 10
    #: seconds a task may run unless it says otherwise (None: no limit; the lease still protects crashes)
    timeout: float | None = 300.0
    #: seconds a result is kept (0: not kept, and ``job.result()`` cannot wait for it)
    keep_result: float = 3600.0
    #: a queued payload expires this long after its run-at time (arq's expires_extra_ms)
    payload_ttl: float = 86_400.0
    #: seconds to wait for Redis to accept a connection / answer a command
    connect_timeout: float = 5.0
    command_timeout: float = 10.0
    #: Redis connections an App opens per event loop at most; more concurrent commands wait for a free one
    #: (up to command_timeout) instead of failing
    max_connections: int = 1000
    #: OpenTelemetry traces and metrics for every enqueue and every run (needs asyncq[otel]; the SDK and its
    #: exporters are yours to set up): the same as ``asyncq.integrations.opentelemetry.instrument(app)``
    tracing: bool = False
    #: the IANA time zone cron schedules are read in ("Europe/Berlin"); a schedule may name its own
    timezone: str = "UTC"
    #: put "<namespace>:" in front of every Redis key and channel, so several apps share one Redis database
    #: without seeing each other's queues; "" (default) keeps arq's exact layout, which plain arq clients read
    namespace: str = ""
    #: use the Redis Cluster layout with a plain redis://host:port URL (a redis+cluster:// URL implies it)
    cluster: bool = False
    #: shards per queue on a cluster ({"webhooks": 16}; env ASYNCQ_QUEUE_SHARDS="webhooks=16,emails=4"); 1 unless
    #: named. Each shard is one hash slot, so a queue's load spreads over the cluster's masters
    queue_shards: dict[str, int] = field(default_factory=dict)
    #: on a cluster, after each enqueue wait until this many replicas acknowledged it (0: don't wait)
    enqueue_wait_replicas: int = 0
    #: seconds that wait may take before enqueue raises asyncq.cluster.NotReplicated
    enqueue_wait_timeout: float = 1.0
    #: how a cluster announces wake-ups and results: "auto" (sharded pub/sub when every master runs Redis >= 7),
    #: "sharded" (SPUBLISH: stays on the shard's nodes) or "classic" (PUBLISH: forwarded to every node)
    cluster_pubsub: str = "auto"

    @property
    def is_cluster(self) -> bool:
        """True when this App uses the Redis Cluster layout (``redis+cluster://`` or ``cluster=True``)."""
        return self.cluster or is_cluster(self.redis_url)

    def __post_init__(self) -> None:
        check_queue_name(self.default_queue)
        check_namespace(self.namespace)
        for q, n in self.queue_shards.items():
            check_queue_name(q)
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SHARDS:
                raise ConfigurationError(f"queue_shards[{q!r}] must be an int from 1 to {MAX_SHARDS}, got {n!r}")
        if not self.is_cluster and any(n > 1 for n in self.queue_shards.values()):
            raise ConfigurationError(
                "queue_shards > 1 needs Redis Cluster (a redis+cluster:// URL or cluster=True): one Redis has one "
                "core, so splitting a queue there only costs round trips")
        if self.cluster_pubsub not in ("auto", "sharded", "classic"):
            raise ConfigurationError(
                f"cluster_pubsub must be 'auto', 'sharded' (Redis >= 7) or 'classic', got {self.cluster_pubsub!r}")
        if self.enqueue_wait_replicas < 0 or self.enqueue_wait_timeout <= 0:
            raise ConfigurationError("enqueue_wait_replicas must be >= 0 and enqueue_wait_timeout > 0 seconds")
        if self.enqueue_wait_replicas and not self.is_cluster:
            raise ConfigurationError(
                "enqueue_wait_replicas is implemented for Redis Cluster only (redis+cluster://); on one Redis or "
                "Sentinel, configure min-replicas-to-write on the master instead")
        zone(self.timezone)  # an unknown name fails here, not at the first tick
        if self.max_tries < 1:
            raise ConfigurationError(f"max_tries must be >= 1 (1 means no retry), got {self.max_tries}")
        if self.max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {self.max_connections}")
        if self.max_recoveries < 0:
            raise ConfigurationError(f"max_recoveries must be >= 0, got {self.max_recoveries}")
        if self.keep_result < 0 or self.payload_ttl <= 0:
            raise ConfigurationError("keep_result must be >= 0 and payload_ttl > 0 seconds")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> AppSettings:
        """Read ``ASYNCQ_<FIELD>`` variables (ASYNCQ_REDIS_URL, ASYNCQ_SERIALIZER, ...); overrides win."""
        check_fields(cls, overrides)
        return from_env_fields(cls, "ASYNCQ_", env, overrides)
