"""The one layer that talks to Redis: redis-py's asyncio client plus asyncq's Lua scripts.

Everything above (App, Job, Worker, CLI) calls these methods and never builds a key or a script call itself.
Each method is one round trip. The keys and payloads are arq's (``keys.py``, ``codec.py``), so arq's own
client (``pip install asyncq[arq]``) can enqueue to and read from the same database; arq itself is not
imported here: its newest release pins redis-py < 6, which Celery 5.7 and many applications cannot accept.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgpack
from redis import Redis as SyncRedis
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, MasterDownError, SlotNotCoveredError, TryAgainError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from asyncq import keys
from asyncq.broker_reads import BrokerReads
from asyncq.broker_reads import printable_id as printable_id  # re-exported: its home before broker_reads
from asyncq.exceptions import BrokerUnavailable
from asyncq.redis_url import async_pool, sync_pool
from asyncq.redis_url import redact as redact  # re-exported: callers import it from here
from asyncq.scripts import Scripts, script_source

#: errors that mean "Redis is not answering right now" (callers hold, back off and retry); the cluster ones are
#: what a Redis Cluster answers while a failover or a slot migration is under way
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError, TryAgainError, MasterDownError,
              SlotNotCoveredError)


class PartialWrite(RedisConnectionError):
    """A call that spans several shards (Redis Cluster: renew, finish) reached some and not others. ``results``
    holds each item's outcome in input order: its status, or the exception of its shard. A ConnectionError, so
    callers that only know "Redis is down" treat it as that; the finisher settles the items that were written."""

    def __init__(self, results: list[Any], cause: BaseException) -> None:
        super().__init__(f"some shards did not answer: {cause}")
        self.results = results


def no_retry() -> Retry:
    """No retries inside redis-py (whose default since 6.0 is three, with backoff): a script call retried after a
    lost reply could run twice (a claim would take jobs nobody runs), and every caller here already retries with
    its own backoff or reports the outage. Given explicitly so that redis-py 5 to 8 behave alike."""
    return Retry(NoBackoff(), 0)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job for ``Broker.enqueue``: its id, where it goes, when it may run, and its encoded payload."""

    job_id: str
    lane: str
    queue: str
    score: int
    ttl_ms: int
    payload: bytes
    guard_key: str = ""
    guard_tick: int = 0
    #: a job in a sub-lane (tenant or limited task, see keys.flow_suffix): its lane's ring and its flow suffix
    ring: str = ""
    flow: str = ""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job this worker now holds the lease of.

    ``job_id`` is always printable: an id that is not valid UTF-8 is shown escaped (``raw_id`` keeps its bytes
    for Redis). ``problem`` says why the job cannot run (a bad id, a key of the wrong type); such a job is
    dead-lettered, never run. ``generation`` is the retry counter after this claim (arq's job try), which
    counts recoveries too; ``job_try`` is the task's own tries.
    """

    job_id: str
    lane: str
    queue: str
    payload: bytes | None
    generation: int
    recoveries: int
    token: str | bytes
    raw_id: bytes | None = None
    problem: str = ""

    @property
    def job_try(self) -> int:
        return max(1, self.generation - self.recoveries)


@dataclass(frozen=True, slots=True)
class Lease:
    """What the renew and finish scripts need to prove a worker still owns a job."""

    job_id: str
    token: str | bytes
    lane: str
    queue: str
    generation: int = 0
    raw_id: bytes | None = None

    @property
    def key_id(self) -> str | bytes:
        """The id as Redis knows it (raw bytes for an id that is not valid UTF-8)."""
        return self.raw_id if self.raw_id is not None else self.job_id

    def args(self, k: keys.Keys = keys.DEFAULT_KEYS) -> list[Any]:
        """id, token, lane (in ``k``'s namespace), queue, generation: the per-job arguments of renew and finish."""
        return [self.key_id, self.token, k(self.lane), self.queue, self.generation]


def enqueue_args(
    jobs: Sequence[NewJob], acknowledge: tuple[str, str, Sequence[str]] | None = None, k: keys.Keys = keys.DEFAULT_KEYS
) -> list[Any]:
    """The enqueue script's arguments: the batch's metadata packed into one msgpack argument (lanes and
    queues named once), then one argument per payload. Fewer arguments is most of the producer's speed.

    ``acknowledge`` = (hash key, zset key, one member per job): each job is created only if its member is
    still in the hash, and leaves hash and zset in the same step (the Celery transport's adoption of messages
    from kombu's ``unacked``; the enqueue script returns -2 for a member already gone: kombu's keys, never
    namespaced). ``k``: the namespace's key names, applied to the jobs' lanes, guards and rings."""
    lanes: dict[str, int] = {}
    queues: dict[str, int] = {}
    rows = []
    for j in jobs:
        lane_i = lanes.setdefault(k(j.lane), len(lanes) + 1)  # Lua tables are 1-based
        queue_i = queues.setdefault(j.queue, len(queues) + 1)
        guard = k(j.guard_key) if j.guard_key else ""
        row: tuple[Any, ...] = (j.job_id, lane_i, queue_i, j.score, j.ttl_ms, guard, j.guard_tick)
        rows.append((*row, k.ring(j.lane), j.flow) if j.ring else row)
    parts: list[Any] = [list(lanes), list(queues), rows]
    if acknowledge is not None:
        parts.append([acknowledge[0], acknowledge[1], list(acknowledge[2])])
    meta = msgpack.packb(parts, use_bin_type=False)
    return [now_ms(), k(keys.JOB_PREFIX), k(keys.RESULT_PREFIX), k(keys.WAKE_PREFIX), k(keys.QUEUES_SET), meta,
            *(j.payload for j in jobs)]


class SyncBroker:
    """Enqueue from sync code (a Django view, a script, the Celery layer's ``delay()``) with a plain
    redis-py client: no event loop, no thread hop, one round trip. Thread-safe (redis-py's pool)."""

    def __init__(
        self, url: str, *, connect_timeout: float = 5.0, command_timeout: float = 10.0, namespace: str = ""
    ) -> None:
        self.names = keys.Keys.of(namespace)
        self._client = SyncRedis(connection_pool=sync_pool(  # redis:// or redis+sentinel:// (redis_url.py)
            url, socket_connect_timeout=connect_timeout, socket_timeout=command_timeout, retry=no_retry()))
        self._enqueue = self._client.register_script(script_source("enqueue"))
        self.url_for_humans = redact(url)

    def enqueue(self, jobs: Sequence[NewJob]) -> list[int]:
        try:
            out = self._enqueue(args=enqueue_args(jobs, k=self.names))
        except REDIS_DOWN as exc:
            raise BrokerUnavailable(
                f"Redis at {self.url_for_humans} is unreachable while enqueueing {len(jobs)} job(s) ({exc}); "
                "nothing was written. Check that Redis runs and ASYNCQ_REDIS_URL points at it, then try again."
            ) from exc
        return [int(x) for x in out]

    def worker_beats(self) -> list[tuple[str, float, bytes | None]]:
        """``BrokerReads.worker_beats`` for sync producers (the unknown-task check of ``enqueue_many_sync``)."""
        members = cast(Any, self._client.zrevrange(self.names(keys.WORKERS_SET), 0, -1, withscores=True))
        ids = [printable_id(m)[0] for m, _ in members]
        beats = list(cast(Any, self._client.mget([self.names(keys.worker_key(i)) for i in ids]))) if ids else []
        return [(i, score, beat) for i, (_, score), beat in zip(ids, members, beats, strict=True)]

    def close(self) -> None:
        self._client.close()


class Broker(BrokerReads):
    """redis-py's asyncio client with asyncq's scripts registered on it: the writes here, the reads in
    ``BrokerReads`` (``broker_reads.py``). Every key it sends goes through ``self.names`` (the namespace,
    ``keys.Keys``): callers pass logical names (``keys.lane_key(q)``), as in the default layout."""

    def __init__(self, *args: Any, namespace: str = "", **kwargs: Any) -> None:
        self.names = keys.Keys.of(namespace)
        super().__init__(*args, **kwargs)
        self.scripts = Scripts(self)
        self.url_for_humans = "redis"

    @classmethod
    def connect(
        cls, url: str, *, connect_timeout: float = 5.0, command_timeout: float = 10.0, max_connections: int = 1000,
        namespace: str = "",
    ) -> Broker:
        # A blocking pool with an explicit cap: redis-py 5's asyncio pool was unbounded, redis-py 8's refuses a
        # 101st connection (MaxConnectionsError), which a worker running hundreds of tasks that use Redis reaches.
        # Past the cap a command waits for a free connection (up to command_timeout), it does not fail.
        # redis+sentinel:// URLs get redis-py's Sentinel pool with the same cap (redis_url.py): a connection
        # asks the Sentinels for the master when it opens, so the client follows a failover.
        pool = async_pool(
            url,
            max_connections=max_connections,
            timeout=command_timeout,
            socket_connect_timeout=connect_timeout,
            socket_timeout=command_timeout,
            health_check_interval=30,
            retry=no_retry(),
        )
        broker = cls(connection_pool=pool, namespace=namespace)
        broker.url_for_humans = redact(url)
        return broker

    #: True on the cluster layout (broker_cluster.py): script calls then declare keys of their shard in KEYS, which
    #: is how Redis Cluster routes them; on one Redis they declare none (arq's scripts' calling convention)
    declares_keys = False

    def _declare(self, *logical: str) -> list[str]:
        """The KEYS of a script call: none on one Redis; on a cluster these keys of this shard (the first routes)."""
        return [self.names(key) for key in logical] if self.declares_keys else []

    async def refresh_layout(self) -> None:
        """Re-read what the key layout depends on: nothing on one Redis; a cluster's shard counts."""

    def shard_count(self, queue: str) -> int:
        """How many shards ``queue`` has: 1 on one Redis (broker_cluster.py: the cluster's count)."""
        return 1

    def names_for(self, job_id: str) -> keys.Keys:
        """The key names of the keys that belong with a job (its result, its Celery state): ``self.names`` on one
        Redis; on a cluster those of the job's shard, so a job's keys share its slot (broker_cluster.py)."""
        return self.names

    # --- pub/sub channels (one per shard on a cluster: broker_cluster.py overrides these) ------------------
    #: True when the scripts announce with SPUBLISH (Redis Cluster >= 7): subscribe with the methods below
    sharded_pubsub = False

    async def subscribe(self, pubsub: Any, *channels: str) -> None:
        """Subscribe ``pubsub`` (from ``self.pubsub()``) to channels, the way this layout publishes them."""
        await pubsub.subscribe(*channels)

    async def unsubscribe(self, pubsub: Any, *channels: str) -> None:
        await pubsub.unsubscribe(*channels)

    async def reset_pubsub(self) -> None:
        """After a pub/sub connection failed: nothing to do on one Redis (a cluster opens a fresh client)."""

    async def next_message(self, pubsub: Any, timeout: float) -> dict[str, Any] | None:
        """The next pub/sub message (type "message" for a published one) within ``timeout`` s, or None."""
        msg: dict[str, Any] | None = await pubsub.get_message(timeout=timeout)
        return msg

    def wake_channels(self, queues: Sequence[str]) -> list[str]:
        """The channels that announce new jobs in ``queues``."""
        return [self.names(keys.wake_channel(q)) for q in queues]

    def abort_channels(self, queues: Sequence[str]) -> list[str]:
        """The channels on which aborts of jobs of ``queues`` are announced."""
        return [self.names(keys.ABORT_CHANNEL)]

    def done_channel(self, job_id: str) -> str:
        """The channel on which a job's result is announced."""
        return self.names(keys.done_channel(job_id))

    def unavailable(self, exc: BaseException, doing: str, *, nothing_written: bool = False) -> BrokerUnavailable:
        written = " nothing was written." if nothing_written else ""
        return BrokerUnavailable(
            f"Redis at {self.url_for_humans} is unreachable while {doing} ({exc});{written} "
            "Check that Redis runs and ASYNCQ_REDIS_URL points at it, then try again."
        )

    # --- producer side -------------------------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[int]:
        """Enqueue a batch atomically in one round trip; one status per job (1 new, 0 duplicate, -1 guarded)."""
        try:
            out = await self.scripts.enqueue(
                keys=self._declare(*dict.fromkeys(j.lane for j in jobs)), args=enqueue_args(jobs, k=self.names))
        except REDIS_DOWN as exc:
            raise self.unavailable(exc, f"enqueueing {len(jobs)} job(s)", nothing_written=True) from exc
        return [int(x) for x in out]

    async def abort(self, job_id: str, lane: str, aborted_result: bytes, keep_ms: int) -> int:
        k = self.names
        return int(
            await self.scripts.abort(
                keys=self._declare(keys.job_key(job_id), lane),
                args=[
                    now_ms(), k(keys.IN_PROGRESS_PREFIX), k(keys.JOB_PREFIX), k(keys.RETRY_PREFIX),
                    k(keys.RESULT_PREFIX), k(keys.ABORT_SET), k(keys.ABORT_CHANNEL), k(keys.DONE_PREFIX), job_id,
                    k(lane), aborted_result, keep_ms, k(keys.RECOVERIES), k(keys.claimed_key(keys.queue_of_lane(lane))),
                ]
            )
        )

    # --- worker side ---------------------------------------------------------------------------------------
    async def claim(
        self,
        lanes: Sequence[str],
        lane_queues: Sequence[str],
        want: int,
        lease_ms: int,
        worker_id: str,
        *,
        reconnect_until_ms: int = 0,
        limits: bytes = b"\x80",
    ) -> tuple[list[Claimed], int, dict[str, str]]:
        """Claim up to ``want`` ready jobs. Also returns when the next scheduled job is due (-1: none) and the
        keys the script had to skip because they hold foreign data (key -> Redis error). ``limits`` is the
        worker's packed task limits (``asyncq.flow.pack_limits``; empty by default)."""
        now = now_ms()
        k = self.names
        args: list[Any] = [
            now, want, lease_ms, worker_id,
            k(keys.IN_PROGRESS_PREFIX), k(keys.JOB_PREFIX), k(keys.RETRY_PREFIX), k(keys.RUNNING_PREFIX),
            k(keys.PAUSED_SET), k(keys.CLAIMED_PREFIX), k(keys.RECOVERIES), k(keys.RECONNECT_UNTIL), reconnect_until_ms,
            k(keys.FAIR_PREFIX), k(keys.TENANT_WEIGHT_PREFIX), k(keys.RATE_PREFIX), k(keys.INFLIGHT_PREFIX), limits,
            *lane_queues,
        ]
        out = await self.scripts.claim(keys=[k(lane) for lane in lanes], args=args)
        next_due = int(out[0])
        raw_broken = out[1]
        broken = {  # logical key names, as the caller passed them
            k.strip(printable_id(raw_broken[i])[0]): printable_id(raw_broken[i + 1])[0]
            for i in range(0, len(raw_broken), 2)
        }
        claimed = []
        prefix = f"{worker_id}:{now}:"
        for i in range(2, len(out), 7):
            lane_index, raw_id, payload, generation, recoveries, problem, flow = out[i : i + 7]
            jid, raw = printable_id(raw_id)
            why = printable_id(problem)[0] if problem else ""
            if raw is not None and not why:
                why = "its id is not valid UTF-8"
            lane_idx = int(lane_index) - 1
            claimed.append(
                Claimed(
                    job_id=jid,
                    lane=lanes[lane_idx] + (flow.decode() if isinstance(flow, bytes) else flow),
                    queue=lane_queues[lane_idx],
                    payload=payload,  # None: expired (b"" is a payload, an empty one)
                    generation=int(generation),
                    recoveries=int(recoveries),
                    token=prefix + jid if raw is None else prefix.encode() + raw,  # as claim.lua builds it
                    raw_id=raw,
                    problem=why,
                )
            )
        return claimed, next_due, broken

    def take_claim_outage(self) -> BaseException | None:
        """The Redis error of the last claim if it failed part-way yet returned jobs (Redis Cluster: a master down
        after other shards answered), else None; the worker treats it as an outage. Cleared when read."""
        return None

    async def renew(self, leases: Sequence[Lease], lease_ms: int) -> list[int]:
        k = self.names
        args: list[Any] = [
            now_ms(), lease_ms, k(keys.IN_PROGRESS_PREFIX), k(keys.RUNNING_PREFIX), k(keys.ABORT_SET),
            k(keys.RETRY_PREFIX), k(keys.CLAIMED_PREFIX), len(leases),
        ]
        for lease in leases:
            args += lease.args(k)
        routed = self._declare(*dict.fromkeys(keys.running_key(lease.queue) for lease in leases))
        return [int(x) for x in await self.scripts.renew(keys=routed, args=args)]

    async def finish(self, done: Sequence[tuple[Lease, bytes, int]]) -> list[int]:
        """Release finished jobs and store their results: ``(lease, result bytes, keep ms)`` each."""
        k = self.names
        args: list[Any] = [
            now_ms(), k(keys.IN_PROGRESS_PREFIX), k(keys.JOB_PREFIX), k(keys.RETRY_PREFIX), k(keys.RESULT_PREFIX),
            k(keys.RUNNING_PREFIX), k(keys.ABORT_SET), k(keys.DONE_PREFIX), k(keys.RECENT_JOBS), keys.RECENT_JOBS_MAX,
            k(keys.CLAIMED_PREFIX), k(keys.RECOVERIES), len(done),
        ]
        for lease, result, keep_ms in done:
            args += [*lease.args(k), result, keep_ms]
        routed = self._declare(*dict.fromkeys(keys.running_key(lease.queue) for lease, _, _ in done))
        return [int(x) for x in await self.scripts.finish(keys=routed, args=args)]

    async def requeue(self, lease: Lease, run_at_ms: int, *, give_back_try: bool) -> int:
        k = self.names
        return int(
            await self.scripts.requeue(
                keys=self._declare(keys.running_key(lease.queue), lease.lane),
                args=[
                    now_ms(), k(keys.IN_PROGRESS_PREFIX), k(keys.RETRY_PREFIX), k(keys.RUNNING_PREFIX),
                    k(keys.WAKE_PREFIX), lease.key_id, lease.token, k(lease.lane), lease.queue, run_at_ms,
                    1 if give_back_try else 0, k(keys.CLAIMED_PREFIX), lease.generation,
                ]
            )
        )

    async def dead_letter(
        self, lease: Lease, meta_json: bytes, result: bytes, keep_ms: int, max_size: int
    ) -> int:
        k = self.names
        return int(
            await self.scripts.dead_letter(
                keys=self._declare(keys.running_key(lease.queue), keys.DLQ_INDEX),
                args=[
                    now_ms(), k(keys.IN_PROGRESS_PREFIX), k(keys.JOB_PREFIX), k(keys.RETRY_PREFIX),
                    k(keys.RESULT_PREFIX), k(keys.RUNNING_PREFIX), k(keys.ABORT_SET), k(keys.DONE_PREFIX),
                    k(keys.DLQ_INDEX), k(keys.DLQ_PAYLOADS), k(keys.DLQ_META), k(keys.UNKNOWN_SINCE), lease.key_id,
                    lease.token, k(lease.lane), lease.queue, meta_json, result, keep_ms, max_size,
                    k(keys.RECENT_JOBS), keys.RECENT_JOBS_MAX, k(keys.CLAIMED_PREFIX), k(keys.RECOVERIES),
                    lease.generation, lease.job_id,
                ]
            )
        )

    async def unknown_since(self, job_id: str) -> int:
        """When a worker first met this job without knowing its task (ms); records now if it is the first."""
        now = now_ms()
        async with self.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.names(keys.UNKNOWN_SINCE), job_id, str(now))
            pipe.hget(self.names(keys.UNKNOWN_SINCE), job_id)
            _, first = await pipe.execute()
        return int(first or now)

    # --- queue control ------------------------------------------------------------------------------------
    async def pause(self, queue: str) -> None:
        """Stop every worker claiming from ``queue``; its jobs stay queued; running jobs go on."""
        await cast(Any, self.sadd(self.names(keys.PAUSED_SET), keys.check_queue_name(queue)))

    async def resume(self, queue: str) -> None:
        async with self.pipeline(transaction=True) as pipe:
            pipe.srem(self.names(keys.PAUSED_SET), queue)
            pipe.publish(self.names(keys.wake_channel(queue)), now_ms())
            await pipe.execute()

    # --- workers and stats ---------------------------------------------------------------------------------
    async def heartbeat(self, worker_id: str, beat: bytes, interval: float, health_queue: str, health: str) -> int:
        """Write a worker's heartbeat (kept 3 intervals), list it in the worker set (entries silent for 10
        intervals are dropped), write arq's health line of its first queue; returns that queue's arq-layout
        length for the next health line. One round trip."""
        now, k = now_ms(), self.names
        async with self.pipeline(transaction=False) as pipe:
            pipe.set(k(keys.worker_key(worker_id)), beat, px=int(interval * 3000))
            pipe.zadd(k(keys.WORKERS_SET), {worker_id: now})
            pipe.zremrangebyscore(k(keys.WORKERS_SET), "-inf", now - int(interval * 10_000))
            pipe.set(k(keys.health_key(health_queue)), health, px=int((interval + 1) * 1000))
            pipe.zcard(k(keys.queue_key(health_queue)))
            *_, queued = await pipe.execute()
        return int(queued)

    async def sign_off(self, worker_id: str) -> None:
        """A stopping worker leaves the worker list at once (not when its heartbeat expires)."""
        async with self.pipeline(transaction=False) as pipe:
            pipe.zrem(self.names(keys.WORKERS_SET), worker_id)
            pipe.delete(self.names(keys.worker_key(worker_id)))
            await pipe.execute()

    async def add_stats(self, totals: Mapping[str, Mapping[str, int]], minutes: Mapping[str, Mapping[str, int]],
                        minute: int) -> None:
        """Add counters: ``totals`` per queue (kept), ``minutes`` per queue for ``minute`` (kept
        ``STATS_MINUTE_TTL``). One round trip."""
        async with self.pipeline(transaction=False) as pipe:
            for queue, fields in totals.items():
                for name, n in fields.items():
                    pipe.hincrby(self.names(keys.stats_totals_key(queue)), name, n)
            for queue, fields in minutes.items():
                key = self.names(keys.stats_minute_key(queue, minute))
                for name, n in fields.items():
                    pipe.hincrby(key, name, n)
                pipe.expire(key, keys.STATS_MINUTE_TTL)
            await pipe.execute()

    # --- dead letters ----------------------------------------------------------------------------------------
    async def dlq_retry(self, job_id: str, lane: str, queue: str, ttl_ms: int) -> int:
        k = self.names
        return int(
            await self.scripts.dlq_retry(
                keys=self._declare(keys.DLQ_INDEX, lane),
                args=[
                    now_ms(), k(keys.JOB_PREFIX), k(keys.RETRY_PREFIX), k(keys.RESULT_PREFIX), k(keys.DLQ_INDEX),
                    k(keys.DLQ_PAYLOADS), k(keys.DLQ_META), k(keys.WAKE_PREFIX), job_id, k(lane), queue, ttl_ms,
                    k(keys.RECOVERIES), k.ring(lane) if lane != keys.base_lane(lane) else "",
                    lane[len(keys.base_lane(lane)):],
                ]
            )
        )

    async def dlq_push_to_list(self, dlq_id: str, list_key: str) -> bool:
        """Retry a dead letter that came from a list (a Celery message, ``kind: celery``): LPUSH its payload back
        onto ``list_key`` (the far end, like a new message; a kombu list, not namespaced) and remove the dead
        letter, atomically."""
        payloads, meta, index = self.names(keys.DLQ_PAYLOADS), self.names(keys.DLQ_META), self.names(keys.DLQ_INDEX)
        async with self.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(payloads)
                    message = await cast(Any, pipe.hget(payloads, dlq_id))
                    if message is None or not list_key:
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.lpush(list_key, message)
                    pipe.hdel(payloads, dlq_id)
                    pipe.hdel(meta, dlq_id)
                    pipe.zrem(index, dlq_id)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue

    async def dlq_purge(self, job_ids: Sequence[str] | None = None) -> int:
        """Delete some dead letters, or all of them when ``job_ids`` is None."""
        index, payloads, meta = self.names(keys.DLQ_INDEX), self.names(keys.DLQ_PAYLOADS), self.names(keys.DLQ_META)
        if job_ids is None:
            async with self.pipeline(transaction=True) as pipe:
                pipe.zcard(index)
                pipe.delete(index, payloads, meta)
                count, _ = await pipe.execute()
            return int(count)
        if not job_ids:
            return 0
        async with self.pipeline(transaction=True) as pipe:
            pipe.zrem(index, *job_ids)
            pipe.hdel(payloads, *job_ids)
            pipe.hdel(meta, *job_ids)
            removed, _, _ = await pipe.execute()
        return int(removed)


    # --- operator commands (asyncq purge) ------------------------------------------------------------------
    async def purge_ready(self, queue: str, batch: int = 1000) -> int:
        """Delete ``queue``'s ready jobs (due now, held by no worker) in every lane; delayed and running jobs
        stay. Batches of ``batch`` ids per script call, so a long queue never blocks Redis for long. Returns
        the number deleted."""
        queue = keys.check_queue_name(queue)
        now, removed, k = now_ms(), 0, self.names
        for lane in await self.lanes_and_flows(queue):
            held = 0
            while True:
                gone, skipped, scanned = await self.scripts.purge(keys=self._declare(lane), args=[
                    now, k(lane), k(keys.IN_PROGRESS_PREFIX), k(keys.JOB_PREFIX), k(keys.RETRY_PREFIX),
                    k(keys.RECOVERIES), k(keys.claimed_key(queue)), k(keys.running_key(queue)),
                    k(keys.UNKNOWN_SINCE), held, batch,
                ])
                removed, held = removed + int(gone), held + int(skipped)
                if int(scanned) < batch:
                    break
        return removed

    # --- flow control (asyncq.flow) ------------------------------------------------------------------------
    async def set_tenant_weight(self, queue: str, tenant: str, weight: float) -> None:
        """A tenant's weight in the round-robin of ``queue``'s lanes (1 is the default and is not stored)."""
        key = self.names(keys.tenant_weight_key(queue))
        if weight == 1:
            await cast(Any, self.hdel(key, tenant))
        else:
            await cast(Any, self.hset(key, tenant, repr(weight)))

    async def tenant_weights(self, queue: str) -> dict[str, float]:
        raw = await cast(Any, self.hgetall(self.names(keys.tenant_weight_key(queue))))
        return {k.decode(): float(v) for k, v in raw.items()}

    async def flows(self, queue: str) -> list[tuple[str, str, int, int]]:
        """Every flow with queued jobs in ``queue``: (lane, flow suffix, ready now, waiting) per sub-lane, the
        lane itself included when its ring lists it. Ready-but-refused jobs (a limit) count as ready."""
        now, k = now_ms(), self.names
        out = []
        for lane in keys.lanes_by_priority(queue):
            suffixes = [s.decode() for s in await cast(Any, self.zrange(k.ring(lane), 0, -1))]
            if not suffixes:
                continue
            async with self.pipeline(transaction=False) as pipe:
                for s in suffixes:
                    pipe.zcount(k(lane + s), "-inf", now)
                    pipe.zcard(k(lane + s))
                counts = await pipe.execute()
            for n, s in enumerate(suffixes):
                ready, total = int(counts[2 * n]), int(counts[2 * n + 1])
                out.append((lane, s, ready, total - ready))
        return out

    async def lanes_and_flows(self, queue: str) -> list[str]:
        """Every lane of ``queue``, each followed by its flows' sub-lanes (tenants, limited tasks): what
        ``asyncq purge`` empties."""
        out = []
        for lane in keys.lanes_by_priority(queue):
            out.append(lane)
            out += [lane + f.decode() for f in await cast(Any, self.zrange(self.names.ring(lane), 0, -1)) if f]
        return out

