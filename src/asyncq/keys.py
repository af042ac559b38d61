"""Every Redis key asyncq reads or writes, built in this one module.

arq's keys (``arq:queue``, ``arq:job:<id>``, ``arq:in-progress:<id>``, ``arq:retry:<id>``, ``arq:result:<id>``,
``arq:abort``) keep arq's names and meaning, so arq producers, arq's ``Job`` and arq tooling still work.
What arq lacks lives under the ``asyncq:`` prefix. ARCHITECTURE.md has the table with types and TTLs.

Queue names map to arq queue keys: the queue ``default`` *is* arq's ``arq:queue``; any other queue ``q`` is
``arq:queue:q``. A priority other than the default adds a lane: ``arq:queue:q#p7``. Queue names may not contain
``:`` or ``#`` so that these keys can never collide.

Lua scripts get key *prefixes* (below) for per-job keys, because a batch script touches keys whose ids it only
learns while running. On one Redis (arq's layout) that is all. On Redis Cluster (``redis+cluster://``) the same
logical names are stored under a hash tag (see "cluster layout" at the end): every key of one queue shard shares
the tag ``{<queue>:<shard>}``, so each script runs in one slot and the prefixes it gets build keys of that slot.

Namespaces (``App(namespace="billing")``, ``ASYNCQ_NAMESPACE``): the names above are the *logical* layout, used
everywhere above the Broker. The Broker (the one Redis seam) sends each name through its ``Keys`` object, which
puts ``<namespace>:`` in front of every key and pub/sub channel (``billing:arq:queue``, ``billing:asyncq:dlq``).
The default namespace is empty and changes nothing: arq's exact layout. Values stored in Redis (a dead letter's
lane, a ring's flow suffixes) stay logical, so they mean the same in every namespace.
"""

from __future__ import annotations

import binascii
import itertools
import re
from dataclasses import dataclass
from functools import cache
from typing import Final

from asyncq.exceptions import ConfigurationError

# --- arq's own keys (arq/constants.py) -------------------------------------------------------------------
ARQ_QUEUE: Final = "arq:queue"
JOB_PREFIX: Final = "arq:job:"
IN_PROGRESS_PREFIX: Final = "arq:in-progress:"
RESULT_PREFIX: Final = "arq:result:"
RETRY_PREFIX: Final = "arq:retry:"
ABORT_SET: Final = "arq:abort"
HEALTH_SUFFIX: Final = ":health-check"

# --- asyncq's additions -------------------------------------------------------------------------------------
RUNNING_PREFIX: Final = "asyncq:running:"  # ZSET per queue: job id -> lease expiry (ms)
CLAIMED_PREFIX: Final = "asyncq:claimed:"  # HASH per queue: claimed, unsettled job id -> "<due ms>|<lane>"
RECOVERIES: Final = "asyncq:recoveries"  # HASH: job id -> times it was recovered after its worker was lost
RECONNECT_UNTIL: Final = "asyncq:reconnect-until"  # STRING: ms until which no lapsed lease is recovered
DLQ_INDEX: Final = "asyncq:dlq"  # ZSET: job id -> dead-lettered at (ms)
DLQ_PAYLOADS: Final = "asyncq:dlq:payload"  # HASH: job id -> the job's payload bytes, as enqueued
DLQ_META: Final = "asyncq:dlq:meta"  # HASH: job id -> JSON (queue, lane, reason, error, traceback, ...)
UNKNOWN_SINCE: Final = "asyncq:unknown-since"  # HASH: job id -> ms when a worker first lacked its task
CRON_LAST_PREFIX: Final = "asyncq:cron:"  # STRING per periodic task: the last tick enqueued (ms)
WORKER_PREFIX: Final = "asyncq:worker:"  # STRING per worker: JSON heartbeat, short TTL
WORKERS_SET: Final = "asyncq:workers"  # ZSET: worker id -> last heartbeat (ms)
QUEUES_SET: Final = "asyncq:queues"  # SET: every queue name ever enqueued to (for `asyncq queues`)
PAUSED_SET: Final = "asyncq:paused"  # SET: queues no worker claims from until resumed
RECENT_JOBS: Final = "asyncq:recent"  # LIST: ids of recently finished jobs, newest first, capped (dashboard)
RECENT_JOBS_MAX: Final = 2000  # entries kept in RECENT_JOBS
STATS_TOTALS_PREFIX: Final = "asyncq:stats:total:"  # HASH per queue: cumulative counters and histograms
STATS_MINUTE_PREFIX: Final = "asyncq:stats:minute:"  # HASH per queue and minute: counters, wait histogram
STATS_MINUTE_TTL: Final = 7200  # seconds a per-minute stats hash is kept (the charts show one hour)

# --- the Celery compatibility layer (asyncq.compat) ------------------------------------------------------
CELERY_STATE_PREFIX: Final = "asyncq:celery:state:"  # STRING per job: a state set by update_state (JSON)
CELERY_REVOKED: Final = "asyncq:celery:revoked"  # ZSET: revoked task id -> ms (persistent revokes)
CELERY_CHORD_PREFIX: Final = "asyncq:celery:chord:"  # HASH per chord: header index -> result; "<key>:fired" guard,
#   "<key>:size" (a header given as a generator: its size once known), "<key>:grown" (members add_to_chord added)
CELERY_GROUP_PREFIX: Final = "asyncq:celery:group:"  # STRING per saved GroupResult: JSON list of ids
CELERY_RETRIES_PREFIX: Final = "asyncq:celery:retries:"  # STRING per job: self.retry() calls so far (1 day)
ROUTER_RULES: Final = "asyncq:router:rules"  # HASH: task name or glob -> celery | asyncq | N% (compat/router.py)

# --- pub/sub channels ---------------------------------------------------------------------------------------
WAKE_PREFIX: Final = "asyncq:wake:"  # one per queue: a job became available
DONE_PREFIX: Final = "asyncq:done:"  # one per job: its result was written
ABORT_CHANNEL: Final = "asyncq:abort"  # a job id to cancel wherever it runs

DEFAULT_QUEUE: Final = "default"
MIN_PRIORITY: Final = 0
MAX_PRIORITY: Final = 9
DEFAULT_PRIORITY: Final = 5

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def check_queue_name(name: str) -> str:
    """Return ``name`` if it is a valid queue name, else raise with what is allowed."""
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise ConfigurationError(
            f"invalid queue name {name!r}: use 1-100 letters, digits, '_', '.' or '-' (no ':' or '#')"
        )
    return name


def check_priority(priority: int) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool) or not (
        MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise ConfigurationError(
            f"invalid priority {priority!r}: use an int from {MIN_PRIORITY} (lowest) to {MAX_PRIORITY} "
            f"(highest); the default is {DEFAULT_PRIORITY}"
        )
    return priority


def queue_key(queue: str) -> str:
    """The arq ZSET of a queue's default-priority lane."""
    return ARQ_QUEUE if queue == DEFAULT_QUEUE else f"{ARQ_QUEUE}:{queue}"


def lane_key(queue: str, priority: int = DEFAULT_PRIORITY) -> str:
    """The ZSET (job id -> run-at ms) holding one queue's jobs of one priority."""
    base = queue_key(queue)
    return base if priority == DEFAULT_PRIORITY else f"{base}#p{priority}"


def lanes_by_priority(queue: str) -> list[str]:
    """Every lane of a queue, highest priority first: the order the claim script walks them."""
    return [lane_key(queue, p) for p in range(MAX_PRIORITY, MIN_PRIORITY - 1, -1)]


def queue_of_lane(lane: str) -> str:
    """Invert ``lane_key``: ``arq:queue:emails#p7`` -> ``emails``; an unknown key is its own queue."""
    base = lane.split("#", 1)[0]
    if base == ARQ_QUEUE:
        return DEFAULT_QUEUE
    if base.startswith(ARQ_QUEUE + ":"):
        return base[len(ARQ_QUEUE) + 1 :]
    return base


def job_key(job_id: str) -> str:
    return JOB_PREFIX + job_id


def result_key(job_id: str) -> str:
    return RESULT_PREFIX + job_id


def in_progress_key(job_id: str) -> str:
    return IN_PROGRESS_PREFIX + job_id


def retry_key(job_id: str) -> str:
    return RETRY_PREFIX + job_id


def running_key(queue: str) -> str:
    return RUNNING_PREFIX + queue


def claimed_key(queue: str) -> str:
    return CLAIMED_PREFIX + queue


def wake_channel(queue: str) -> str:
    return WAKE_PREFIX + queue


def done_channel(job_id: str) -> str:
    return DONE_PREFIX + job_id


def cron_last_key(name: str) -> str:
    return CRON_LAST_PREFIX + name


def stats_totals_key(queue: str) -> str:
    """Cumulative counters of one queue since the stats began (fields ``metric|task``, see ``asyncq.stats``)."""
    return STATS_TOTALS_PREFIX + queue


def stats_minute_key(queue: str, minute: int) -> str:
    """One queue's counters for one minute (``minute`` = Unix time // 60), kept ``STATS_MINUTE_TTL``."""
    return f"{STATS_MINUTE_PREFIX}{queue}:{minute}"


def worker_key(worker_id: str) -> str:
    return WORKER_PREFIX + worker_id


def health_key(queue: str) -> str:
    """arq's health-check key, so ``arq --check`` style tooling still reads something."""
    return queue_key(queue) + HEALTH_SUFFIX


# --- flow control: tenants, fair share, rate limits, concurrency caps (asyncq.flow, lua/claim.lua) ---------
# A job with a tenant, or of a task with a global limit, sits in a sub-lane of its lane: the lane's key plus a
# flow suffix (``#t:<tenant>`` then ``#f:<task>``). The lane's ring lists its flows with their pass (weighted
# round-robin); the base lane itself is the default tenant's flow ''. ARCHITECTURE.md has the memory per tenant.
FAIR_PREFIX: Final = "asyncq:fair:"  # ZSET per lane: flow suffix -> pass (lowest claims next)
TENANT_WEIGHT_PREFIX: Final = "asyncq:tenant-weight:"  # HASH per queue: tenant -> weight (default 1)
RATE_PREFIX: Final = "asyncq:rate:"  # STRING per task (or task#t:tenant): GCRA theoretical arrival time (ms)
INFLIGHT_PREFIX: Final = "asyncq:inflight:"  # SET per task (or task#t:tenant): job ids holding a slot
DEFAULT_TENANT: Final = "default"

_TENANT_NAME = re.compile(r"^[A-Za-z0-9_.:@\-]{1,200}$")


def check_tenant(name: str) -> str:
    """Return ``name`` if it is a valid tenant key, else raise with what is allowed."""
    if not isinstance(name, str) or not _TENANT_NAME.match(name):
        raise ConfigurationError(
            f"invalid tenant {name!r}: use 1-200 letters, digits, '_', '.', ':', '@' or '-' (no '#' or spaces)"
        )
    return name


def flow_suffix(tenant: str | None, limited_task: str | None) -> str:
    """The sub-lane suffix of a job: '' for the default tenant's unlimited jobs (the lane itself)."""
    out = "" if tenant is None or tenant == DEFAULT_TENANT else f"#t:{tenant}"
    return out if limited_task is None else f"{out}#f:{limited_task}"


def base_lane(lane: str) -> str:
    """The lane a sub-lane belongs to: ``arq:queue:q#p7#t:acme`` -> ``arq:queue:q#p7``."""
    for mark in ("#t:", "#f:"):
        lane = lane.split(mark, 1)[0]
    return lane


def tenant_of_suffix(suffix: str) -> str:
    """The tenant of a flow suffix (``DEFAULT_TENANT`` when it names none)."""
    if suffix.startswith("#t:"):
        return suffix[3:].split("#", 1)[0]
    return DEFAULT_TENANT


def fair_key(lane: str) -> str:
    return FAIR_PREFIX + base_lane(lane)


def tenant_weight_key(queue: str) -> str:
    return TENANT_WEIGHT_PREFIX + queue


# --- namespaces -------------------------------------------------------------------------------------------
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def check_namespace(name: str) -> str:
    """Return ``name`` if it is a valid namespace ('' is the default: no prefix), else raise with what is allowed.

    ':' would make a namespace's keys look like another's (``a:b`` + ``arq:queue`` vs ``a`` + ``b:arq:queue``),
    '#' is the lane separator, braces would make Redis Cluster hash tags, spaces break redis-cli and logs."""
    if name == "":
        return name
    if not isinstance(name, str) or not _NAMESPACE.match(name):
        raise ConfigurationError(
            f"invalid namespace {name!r}: use 1-64 letters, digits, '_', '.' or '-' (no ':', '#', '{{', '}}' or "
            "spaces), or '' for none (arq's layout)"
        )
    return name


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names of one namespace: ``keys(logical)`` is the key Redis stores (``<namespace>:`` + logical).

    Held by the Broker, which applies it to every key, key prefix and channel it sends (script arguments
    included), so nothing above the Broker knows about namespaces. The default (``Keys()``) is arq's layout."""

    namespace: str = ""
    prefix: str = ""

    @classmethod
    def of(cls, namespace: str | None) -> Keys:
        ns = check_namespace(namespace or "")
        return cls(ns, f"{ns}:" if ns else "")

    def __call__(self, key: str) -> str:
        return self.prefix + key if self.prefix else key

    def ring(self, lane: str) -> str:
        """A lane's fair-share ring as claim.lua builds it: the ring prefix then the (namespaced) base lane."""
        return self(FAIR_PREFIX) + self(base_lane(lane))

    def strip(self, key: str) -> str:
        """The logical name of a key of this namespace (the inverse of ``__call__``)."""
        return key[len(self.prefix):] if self.prefix and key.startswith(self.prefix) else key


#: arq's layout, unprefixed
DEFAULT_KEYS: Final = Keys()


# --- cluster layout (Redis Cluster; asyncq.cluster, broker_cluster.py) -------------------------------------
# Every key of one queue shard is "<namespace:>{<queue>:<shard>}:" + its logical name, so a shard's keys hash to one
# slot and every script runs there. Keys shared by all queues (workers, stats, the queue list) take one global
# tag. Job ids carry their shard ("{<queue>:<shard>}<hex>") so a job's keys are found without a lookup. Not
# arq's layout: arq cannot read a cluster deployment.
GLOBAL_TAG: Final = "{asyncq}"
#: ZSET (global tag): queue -> the largest shard count producers used (ZADD GT: it never shrinks, so lowering
#: queue_shards never strands jobs on the shards above the new count; workers read it)
SHARDS_REGISTRY: Final = "asyncq:shard-counts"
MAX_SHARDS: Final = 1024

_TAGGED_ID = re.compile(r"^\{([A-Za-z0-9_.\-]{1,100}):([0-9]{1,4})(?::[0-9a-z]{1,8})?\}")
_SLOTS = 16384
_GOLDEN = 0.6180339887498949
_NEAR = 64  # slots


def _slot(tag_body: str) -> int:
    """Redis Cluster's slot of a hash tag's content (CRC16/XMODEM mod 16384, as CLUSTER KEYSLOT)."""
    return binascii.crc_hqx(tag_body.encode(), 0) % _SLOTS


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


@cache
def shard_tag(queue: str, shard: int) -> str:
    """The hash tag of one queue shard: ``{webhooks:0}``, then ``{webhooks:<s>:<j>}`` for s >= 1.

    Why the ``<j>``: CRC16 is linear, so ``{q:0}`` and ``{q:1}`` would land in slots that differ in low bits only
    (on 2 masters, shards 0 and 1 of every queue would share a master). Shard s aims at the slot shard 0's slot
    plus s golden-ratio steps around the slot ring (evenly spread for every N, and a shard keeps its tag when N
    grows), and ``j`` is the first suffix (base 36) whose slot is within 64 slots of that target (about 128
    CRCs, once per shard per process)."""
    if shard == 0:
        return f"{{{queue}:0}}"
    target = (_slot(f"{queue}:0") + round(shard * _GOLDEN * _SLOTS)) % _SLOTS
    for j in itertools.count():
        body = f"{queue}:{shard}:{_base36(j)}"
        gap = abs(_slot(body) - target)
        if min(gap, _SLOTS - gap) <= _NEAR:
            return f"{{{body}}}"
    raise AssertionError("unreachable")  # pragma: no cover


def tagged_id(queue: str, shard: int, raw: str) -> str:
    """A cluster job id: the shard's tag, then ``raw`` (a uuid hex, or the id the caller gave)."""
    return shard_tag(queue, shard) + raw


def shard_of(job_id: str) -> tuple[str, int] | None:
    """The (queue, shard) a cluster job id names in its tag (``{q:s}`` or ``{q:s:j}``); None for an id without
    one (a standalone id)."""
    m = _TAGGED_ID.match(job_id)
    return (m.group(1), int(m.group(2))) if m else None


def shard_keys(namespace: str, queue: str, shard: int) -> Keys:
    """The key names of one queue shard on the cluster layout."""
    ns = check_namespace(namespace or "")
    tag = shard_tag(check_queue_name(queue), shard)
    return Keys(ns, f"{ns}:{tag}:" if ns else f"{tag}:")


def global_keys(namespace: str) -> Keys:
    """The key names shared by every queue on the cluster layout (workers, stats, queue list): one slot."""
    ns = check_namespace(namespace or "")
    return Keys(ns, f"{ns}:{GLOBAL_TAG}:" if ns else f"{GLOBAL_TAG}:")
