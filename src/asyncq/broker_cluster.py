"""The Broker on Redis Cluster: the same methods, routed to the shard (hash slot) that holds each job.

Layout (``keys.shard_keys``): every key of one queue shard lives under the hash tag ``{<queue>:<shard>}``, so a
shard is one slot and every Lua script of a shard runs in that slot with the prefixes it always got. A
``ShardBroker`` is a ``Broker`` whose ``names`` are one shard's: the standalone code of enqueue, claim, renew,
finish, requeue, dead-letter, abort and the dead-letter queue runs on it unchanged. Its commands go to redis-py's
asyncio ``RedisCluster`` (which follows MOVED/ASK and failovers); its script calls declare keys of the shard in
KEYS, which is how the cluster client picks the node.

``ClusterBroker`` (what ``App.broker()`` returns on a cluster) keeps the global keys (workers, stats, the queue
list, the shard registry) under ``{asyncq}`` and routes everything else: a job id names its shard
(``{webhooks:3}<hex>``), so per-job calls go straight to one shard; per-queue reads fan out over the queue's
shards and merge; a claim walks the shards of the worker's queues from a rotating start, so no shard starves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode as SyncClusterNode
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException

from asyncq import keys
from asyncq.broker import (
    REDIS_DOWN,
    Broker,
    Claimed,
    Lease,
    NewJob,
    PartialWrite,
    SyncBroker,
    enqueue_args,
    no_retry,
    now_ms,
)
from asyncq.broker_reads import Scored, printable_id
from asyncq.cluster import NotReplicated, claim_order
from asyncq.exceptions import BrokerUnavailable, ConfigurationError
from asyncq.redis_url import cluster_url, redact
from asyncq.scripts import Scripts, script_source

T = TypeVar("T")
log = logging.getLogger("asyncq.cluster")

#: seconds between reads of the shard registry (a producer may use more shards than this process was told)
REFRESH_SHARDS = 1.0
#: seconds between non-blocking reads of the sharded pub/sub connections (the wake-up latency it adds)
SHARD_POLL = 0.02
#: pub/sub clients replaced after failures that are kept open (a subscriber may still read through one)
RETIRED_MAX = 4


def open_cluster(
    url: str, *, connect_timeout: float, command_timeout: float, max_connections: int
) -> RedisCluster:
    """redis-py's asyncio cluster client for a ``redis+cluster://`` URL (or a plain one with ``cluster=True``).

    No retries inside redis-py, as on one Redis (``broker.no_retry``): a script retried after a lost reply could
    run twice. A connection error still makes the client reload the slot map before its next command, so the
    callers' own retry (with backoff) reaches the new master after a failover."""
    target = cluster_url(url)
    if not hasattr(RedisCluster, "pubsub"):
        raise ConfigurationError(
            f"redis-py {redis.__version__} has no pub/sub for its asyncio cluster client, which asyncq's workers "
            "and result waits need on Redis Cluster: upgrade redis-py (asyncq's cluster layout is tested with 8.1)")
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        max_connections=max_connections,
        socket_connect_timeout=connect_timeout,
        socket_timeout=command_timeout,
        retry=AsyncRetry(NoBackoff(), 0),
    )


@dataclass
class PubSubMode:
    """How one cluster client announces (shared by a ClusterBroker and its shard views).

    Sharded pub/sub (SPUBLISH, Redis >= 7) keeps a message on its shard's master and replicas; classic PUBLISH
    is forwarded to every node of the cluster (measured: about 2 us of CPU on each node per message, so every
    node pays for the whole cluster's results). The choice is made once per client, on first use, from the
    masters' version (``ClusterBroker.detect_pubsub``); until then scripts use PUBLISH."""

    plain: Scripts
    sharded_scripts: Scripts | None = None
    sharded: bool = False
    detected: bool = False

    @property
    def scripts(self) -> Scripts:
        return self.sharded_scripts if self.sharded and self.sharded_scripts is not None else self.plain


class ShardBroker(Broker):
    """A Broker on one shard's key names (or the global ones) whose commands go through a RedisCluster client.

    It owns no connection: ``Redis.__init__`` is deliberately not called, every command goes to the shared
    cluster client through ``execute_command``, ``pipeline`` and ``pubsub``."""

    declares_keys = True

    def __init__(
        self, cluster: RedisCluster, names: keys.Keys, mode: PubSubMode | None = None, url_for_humans: str = "cluster"
    ) -> None:
        self._cluster = cluster
        self.names = names
        self.url_for_humans = url_for_humans
        self.mode = mode if mode is not None else PubSubMode(Scripts(self), Scripts(self, "SPUBLISH"))

    @property
    def scripts(self) -> Scripts:
        """The scripts of the current pub/sub mode (PUBLISH or SPUBLISH inside them)."""
        return self.mode.scripts

    @scripts.setter
    def scripts(self, value: Scripts) -> None:
        self.mode.plain = value

    @property
    def sharded_pubsub(self) -> bool:  # type: ignore[override]
        return self.mode.sharded

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self._cluster.execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        """A cluster pipeline; a transaction (MULTI) needs all its keys in one slot, which a shard's keys are.
        redis-py before 6 has no MULTI in cluster pipelines: there a snapshot read is one pipeline, not atomic."""
        try:
            return self._cluster.pipeline(transaction=transaction or None)
        except RedisClusterException:
            return self._cluster.pipeline()

    def pubsub(self, **kwargs: Any) -> Any:
        """Classic pub/sub through any node: a PUBLISH reaches every node of the cluster."""
        return self._cluster.pubsub(**kwargs)

    async def initialize(self) -> ShardBroker:
        """Load the slot map (pub/sub needs it before its first SUBSCRIBE)."""
        await self._cluster.initialize()
        return self

    def get_encoder(self) -> Any:
        return self._cluster.get_encoder()

    def __repr__(self) -> str:
        return f"<asyncq {type(self).__name__} {self.names.prefix!r} on {self.url_for_humans}>"

    def __del__(self, *args: Any) -> None:  # nothing of its own to close (Redis.__del__ looks for a connection)
        pass

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Views close nothing: the ClusterBroker that made them owns the client."""


class ClusterBroker(ShardBroker):
    """The Broker an App uses on Redis Cluster: global keys under ``{asyncq}``, the rest routed per shard."""

    def __init__(
        self,
        cluster: RedisCluster,
        *,
        namespace: str = "",
        shards: Mapping[str, int] | None = None,
        url_for_humans: str = "cluster",
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        pubsub: str = "auto",
    ) -> None:
        super().__init__(cluster, keys.global_keys(namespace), None, url_for_humans)
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        #: "auto" (sharded when every master runs Redis >= 7), "sharded" or "classic" (AppSettings.cluster_pubsub)
        self.pubsub_choice = pubsub
        #: a second client for pub/sub (see ``pubsub``), opened on first ``initialize``
        self._open_listener: Callable[[], RedisCluster] | None = None
        self._listener_client: RedisCluster | None = None
        self._retired: list[RedisCluster] = []
        #: queues paused in the global list (read with the shard counts): a shard first used after the pause
        #: has no pause of its own, so claims skip the whole queue
        self._paused: set[str] = set()
        self._warned_sharded = False
        self._claim_outage: BaseException | None = None
        #: shard prefix -> monotonic time its last renew/finish/claim failed for lack of Redis (see ``claim``)
        self._failed_at: dict[str, float] = {}
        self.namespace = namespace
        self._configured = dict(shards or {})
        self._counts = dict(self._configured)
        self._views: dict[tuple[str, int], ShardBroker] = {}
        self._registered: set[tuple[str, int]] = set()
        self._refreshed = float("-inf")
        self._turn = 0
        #: for ids without a shard tag (not made on the cluster layout): reads find nothing, writes do nothing
        self._untagged = ShardBroker(cluster, keys.global_keys(namespace), self.mode, url_for_humans)

    @classmethod
    def connect(
        cls, url: str, *, connect_timeout: float = 5.0, command_timeout: float = 10.0, max_connections: int = 1000,
        namespace: str = "", shards: Mapping[str, int] | None = None, wait_replicas: int = 0,
        wait_timeout: float = 1.0, pubsub: str = "auto",
    ) -> ClusterBroker:
        def opener() -> RedisCluster:
            return open_cluster(url, connect_timeout=connect_timeout, command_timeout=command_timeout,
                                max_connections=max_connections)

        broker = cls(opener(), namespace=namespace, shards=shards, url_for_humans=redact(url),
                     wait_replicas=wait_replicas, wait_timeout=wait_timeout, pubsub=pubsub)
        broker._open_listener = opener
        return broker

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        for client in [*self._retired, *([self._listener_client] if self._listener_client is not None else [])]:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._retired, self._listener_client = [], None
        await self._cluster.aclose()

    def pubsub(self, **kwargs: Any) -> Any:
        """Pub/sub on a client of its own when ``connect`` made this broker (opened by ``initialize``), so that
        ``reset_pubsub`` can replace it, slot map included, after a failover."""
        return (self._listener_client or self._cluster).pubsub(**kwargs)

    async def reset_pubsub(self) -> None:
        """After a pub/sub connection failed: drop the pub/sub client; the next ``initialize`` opens a new one
        that reads the slot map afresh. Without this, sharded subscriptions kept pointing at a dead master and
        the listener kept reporting an outage after the failover was over (tests/test_cluster_failover.py:
        completions paused 13-15 s instead of 4). The old client is not closed here: another subscriber (a
        worker's listener and a result waiter share it) may still be reading through it; retired clients are
        closed with the broker, or once more than RETIRED_MAX outages have passed since."""
        client, self._listener_client = self._listener_client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        while len(self._retired) > RETIRED_MAX:
            with contextlib.suppress(Exception):
                await self._retired.pop(0).aclose()

    # --- shards --------------------------------------------------------------------------------------------
    def shard_count(self, queue: str) -> int:
        """How many shards ``queue`` has: the App's ``queue_shards``, raised to what producers recorded."""
        return self._counts.get(queue, 1)

    def shard(self, queue: str, shard: int) -> ShardBroker:
        """The Broker view of one queue shard (cached; shares this client and its scripts)."""
        view = self._views.get((queue, shard))
        if view is None:
            view = self._views[(queue, shard)] = ShardBroker(
                self._cluster, keys.shard_keys(self.namespace, queue, shard), self.mode, self.url_for_humans)
        return view

    def shards_of(self, queue: str) -> list[ShardBroker]:
        return [self.shard(queue, s) for s in range(self.shard_count(queue))]

    def of_job(self, job_id: str) -> ShardBroker:
        """The shard a job id names (``{queue:shard}<hex>``); ids without a tag go to an empty global view."""
        where = keys.shard_of(job_id)
        return self._untagged if where is None else self.shard(*where)

    def names_for(self, job_id: str) -> keys.Keys:
        return self.of_job(job_id).names

    async def refresh_layout(self) -> None:
        await self.refresh_shards()

    async def initialize(self) -> ClusterBroker:
        await self._cluster.initialize()
        await self.detect_pubsub()
        if self._listener_client is None and self._open_listener is not None:
            self._listener_client = self._open_listener()
        if self._listener_client is not None:
            await self._listener_client.initialize()
        return self

    async def detect_pubsub(self) -> None:
        """Sharded pub/sub when every master runs Redis (or Valkey) >= 7, classic PUBLISH otherwise; once."""
        if self.mode.detected:
            return
        if self.pubsub_choice != "auto":
            self.mode.sharded, self.mode.detected = self.pubsub_choice == "sharded", True
            return
        infos = await self._cluster.info("server", target_nodes=RedisCluster.PRIMARIES)
        versions = [str(i.get("redis_version", "0")) for i in (infos.values() if "redis_version" not in infos
                                                                  else [infos])]
        self.mode.sharded = bool(versions) and all(int(v.split(".")[0]) >= 7 for v in versions)
        self.mode.detected = True

    # --- pub/sub through a ClusterPubSub (sharded: SSUBSCRIBE on each shard's master) ---------------------
    async def subscribe(self, pubsub: Any, *channels: str) -> None:
        if self.mode.sharded and not hasattr(pubsub, "ssubscribe"):
            if not self._warned_sharded:
                self._warned_sharded = True
                log.warning("this redis-py (%s) cannot subscribe to sharded channels (SSUBSCRIBE), which the cluster "
                            "uses: wake-ups and result notices are not received here, polling finds the jobs and "
                            "results (upgrade redis-py, or set cluster_pubsub='classic' on every App)",
                            redis.__version__)
            return
        await (pubsub.ssubscribe(*channels) if self.mode.sharded else pubsub.subscribe(*channels))

    async def unsubscribe(self, pubsub: Any, *channels: str) -> None:
        await (pubsub.sunsubscribe(*channels) if self.mode.sharded else pubsub.unsubscribe(*channels))

    async def next_message(self, pubsub: Any, timeout: float) -> dict[str, Any] | None:
        """The next message within ``timeout`` s. Sharded: redis-py reads one node per call and would wait the
        whole timeout on each in turn, so the nodes are polled without waiting, every SHARD_POLL s."""
        if not self.mode.sharded:
            return await super().next_message(pubsub, timeout)
        if not hasattr(pubsub, "get_sharded_message"):  # see subscribe: nothing to read, the callers poll
            await asyncio.sleep(timeout)
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg: dict[str, Any] | None = await pubsub.get_sharded_message(timeout=0.0)
            if msg is not None:
                return {**msg, "type": "message"} if msg.get("type") == "smessage" else msg
            left = deadline - loop.time()
            if left <= 0:
                return None
            await asyncio.sleep(min(SHARD_POLL, left))

    async def refresh_shards(self, *, force: bool = False) -> None:
        """Raise the shard counts to what producers recorded in ``asyncq:shard-counts``, and read the global list of
        paused queues (every REFRESH_SHARDS s; one round trip to the global slot)."""
        await self.detect_pubsub()
        if not force and time.monotonic() - self._refreshed < REFRESH_SHARDS:
            return
        self._refreshed = time.monotonic()
        async with self.pipeline(transaction=False) as pipe:
            pipe.zrange(self.names(keys.SHARDS_REGISTRY), 0, -1, withscores=True)
            pipe.smembers(self.names(keys.PAUSED_SET))
            raw, paused = await pipe.execute()
        self._paused = {printable_id(m)[0] for m in paused}
        for q, n in raw:
            queue, count = printable_id(q)[0], int(n)
            if 1 <= count <= keys.MAX_SHARDS:
                self._counts[queue] = max(self._configured.get(queue, 1), count)

    async def _all_shards(self) -> list[ShardBroker]:
        await self.refresh_shards()
        queues = dict.fromkeys([*await super().queue_names(), *self._configured])
        return [view for q in queues for view in self.shards_of(q)]

    async def _register(self, queue: str) -> None:
        """List the queue and its shard count globally, once per process (workers and `asyncq queues` read it)."""
        n = self.shard_count(queue)
        if (queue, n) in self._registered:
            return
        await self.detect_pubsub()
        async with self.pipeline(transaction=False) as pipe:  # two idempotent writes: no MULTI needed
            pipe.sadd(self.names(keys.QUEUES_SET), queue)
            pipe.zadd(self.names(keys.SHARDS_REGISTRY), {queue: n}, gt=True)
            await pipe.execute()
        self._registered.add((queue, n))

    # --- producer side -------------------------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[int]:
        """One script call per shard the batch touches (each atomic on its shard); statuses in input order."""
        groups: dict[ShardBroker, list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            if keys.shard_of(job.job_id) is None:
                raise ConfigurationError(
                    f"job id {job.job_id!r} has no shard tag: on Redis Cluster job ids are made by App.new_job "
                    "('{queue:shard}<id>'); build jobs through the App")
            groups[self.of_job(job.job_id)].append(i)
        for queue in dict.fromkeys(job.queue for job in jobs):
            try:
                await self._register(queue)
            except Exception as exc:
                if isinstance(exc, ConfigurationError):
                    raise
                raise self.unavailable(exc, f"enqueueing {len(jobs)} job(s)", nothing_written=True) from exc
        out = [0] * len(jobs)
        for view, idx in groups.items():
            part = [jobs[i] for i in idx]
            statuses = await (self._enqueue_replicated(view, part) if self.wait_replicas else view.enqueue(part))
            for i, status in zip(idx, statuses, strict=True):
                out[i] = status
        return out

    async def _enqueue_replicated(self, view: ShardBroker, jobs: Sequence[NewJob]) -> list[int]:
        """The enqueue script then WAIT, pipelined on one connection to the shard's master (WAIT counts the
        replicas that have this connection's writes). Fewer than ``wait_replicas`` raises NotReplicated."""
        routed = view._declare(*dict.fromkeys(j.lane for j in jobs))
        try:
            await self._cluster.initialize()
            node = self._cluster.get_node_from_key(routed[0])
            if node is None:
                raise ConnectionError(f"no master serves the slot of {routed[0]!r} right now")
            for _ in range(2):  # a second time after loading the script (a new or restarted master)
                cmds = [PipelineCommand(0, "EVALSHA", self.scripts.enqueue.sha, len(routed), *routed,
                                        *enqueue_args(jobs, k=view.names)),
                        PipelineCommand(1, "WAIT", self.wait_replicas, int(self.wait_timeout * 1000))]
                await node.execute_pipeline(cmds)
                if not isinstance(cmds[0].result, NoScriptError):
                    break
                await self._cluster.script_load(self.scripts.enqueue.script)
        except REDIS_DOWN as exc:
            raise self.unavailable(exc, f"enqueueing {len(jobs)} job(s) (maybe written: check by id)") from exc
        first, acked = cmds[0].result, cmds[1].result
        if isinstance(first, Exception):
            self._cluster._initialize = True  # a MOVED reply: reload the slot map before the next command
            raise self.unavailable(first, f"enqueueing {len(jobs)} job(s) (MOVED or refused)", nothing_written=True)
        if isinstance(acked, Exception) or int(acked) < self.wait_replicas:
            ids = [j.job_id for j in jobs]
            raise NotReplicated(
                f"{len(jobs)} job(s) ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}) were written on "
                f"{node.name} but only {acked} of {self.wait_replicas} replica(s) acknowledged them within "
                f"{self.wait_timeout} s (enqueue_wait_timeout): they may be lost if that master fails now. The "
                "exception's job_ids lists them: check them, or enqueue again with the same job_id= (dedupe).", ids)
        return [int(x) for x in first]

    async def abort(self, job_id: str, lane: str, aborted_result: bytes, keep_ms: int) -> int:
        await self.detect_pubsub()  # the abort is announced the way workers listen
        return await self.of_job(job_id).abort(job_id, lane, aborted_result, keep_ms)

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
        """Claim from the shards of the lanes' queues, one script call per shard until ``want`` jobs are held.

        Each call starts at the next shard (a per-process rotation), so every shard is visited first in turn and
        none starves. Within a shard the claim script's order holds (priorities, due times, fair share)."""
        await self.refresh_shards()
        per_queue: dict[str, tuple[list[str], list[str]]] = {}
        for lane, queue in zip(lanes, lane_queues, strict=True):
            if queue in self._paused:
                continue
            mine = per_queue.setdefault(queue, ([], []))
            mine[0].append(lane)
            mine[1].append(queue)
        self._turn += 1
        claimed: list[Claimed] = []
        next_due, broken = -1, {}
        grace = max(0, reconnect_until_ms - now_ms()) / 1000 if reconnect_until_ms else 0.0
        for queue, shard in claim_order(list(per_queue), self._counts, self._turn):
            if len(claimed) >= want:
                break
            q_lanes, q_queues = per_queue[queue]
            view = self.shard(queue, shard)
            # The reconnect window (no lapsed lease recovered until it ends) protects the leases this worker could
            # not renew during an outage. Those are on the shards whose calls failed: one master's failover must
            # not hold back lease recovery on every shard.
            failed = time.monotonic() - self._failed_at.get(view.names.prefix, float("-inf")) <= grace
            try:
                got, due, bad = await self._watched(view, view.claim(
                    q_lanes, q_queues, want - len(claimed), lease_ms, worker_id,
                    reconnect_until_ms=reconnect_until_ms if failed else 0, limits=limits))
            except REDIS_DOWN as exc:
                if not claimed:
                    raise
                # Jobs already claimed on other shards are leased to this worker: hand them over (dropping them
                # would leave them to lapse and wait for recovery) and report the outage after the claim.
                self._claim_outage = exc
                break
            claimed += got
            broken.update(bad)
            if due >= 0:
                next_due = due if next_due < 0 else min(next_due, due)
        return claimed, next_due, broken

    def take_claim_outage(self) -> BaseException | None:
        outage, self._claim_outage = self._claim_outage, None
        return outage

    async def renew(self, leases: Sequence[Lease], lease_ms: int) -> list[int]:
        """Every shard's renewal is sent, at once: one master down must not let the leases on the others lapse.
        A shard that failed raises ``PartialWrite`` after the others were renewed."""
        return await _each_shard([lease.job_id for lease in leases], leases, self.of_job,
                                 lambda view, part: self._watched(view, view.renew(part, lease_ms)))

    async def finish(self, done: Sequence[tuple[Lease, bytes, int]]) -> list[int]:
        """Like ``renew``: every shard at once; ``PartialWrite`` carries each job's status or its shard's error
        (the finisher settles the written ones and holds the others)."""
        return await _each_shard([d[0].job_id for d in done], done, self.of_job,
                                 lambda view, part: self._watched(view, view.finish(part)))

    async def _watched(self, view: ShardBroker, call: Awaitable[T]) -> T:
        """``call`` on ``view``, noting when that shard last failed (see ``claim``: the reconnect window)."""
        try:
            return await call
        except REDIS_DOWN:
            self._failed_at[view.names.prefix] = time.monotonic()
            raise

    async def requeue(self, lease: Lease, run_at_ms: int, *, give_back_try: bool) -> int:
        await self.detect_pubsub()
        return await self.of_job(lease.job_id).requeue(lease, run_at_ms, give_back_try=give_back_try)

    async def dead_letter(self, lease: Lease, meta_json: bytes, result: bytes, keep_ms: int, max_size: int) -> int:
        return await self.of_job(lease.job_id).dead_letter(lease, meta_json, result, keep_ms, max_size)

    async def unknown_since(self, job_id: str) -> int:
        return await self.of_job(job_id).unknown_since(job_id)

    async def heartbeat(self, worker_id: str, beat: bytes, interval: float, health_queue: str, health: str) -> int:
        """The global heartbeat (``Broker.heartbeat`` on ``{asyncq}``), and the health queue's length summed over
        its shards (one pipeline: the cluster client sends it to each shard's master)."""
        await super().heartbeat(worker_id, beat, interval, health_queue, health)
        async with self.pipeline(transaction=False) as pipe:
            for view in self.shards_of(health_queue):
                pipe.zcard(view.names(keys.queue_key(health_queue)))
            counts = await pipe.execute()
        return sum(int(c) for c in counts)

    # --- pub/sub -------------------------------------------------------------------------------------------
    def wake_channels(self, queues: Sequence[str]) -> list[str]:
        return [c for q in queues for view in self.shards_of(q) for c in Broker.wake_channels(view, [q])]

    def abort_channels(self, queues: Sequence[str]) -> list[str]:
        return list(dict.fromkeys(c for q in queues for view in self.shards_of(q) for c in view.abort_channels([q])))

    def done_channel(self, job_id: str) -> str:
        return self.of_job(job_id).done_channel(job_id)

    # --- queue control -------------------------------------------------------------------------------------
    async def pause(self, queue: str) -> None:
        """Paused on every shard (each claim script reads its own shard's set) and in the global list (claims
        read it too, for shards first used after the pause)."""
        await super().pause(queue)
        self._paused.add(queue)
        await self.refresh_shards()
        for view in self.shards_of(queue):
            await view.pause(queue)

    async def resume(self, queue: str) -> None:
        await cast(Any, self._cluster.srem(self.names(keys.PAUSED_SET), queue))
        self._paused.discard(queue)
        await self.refresh_shards()
        for view in self.shards_of(queue):
            await cast(Any, self._cluster.srem(view.names(keys.PAUSED_SET), queue))
            await self._cluster.execute_command(
                "SPUBLISH" if self.mode.sharded else "PUBLISH", view.names(keys.wake_channel(queue)), now_ms())

    async def set_tenant_weight(self, queue: str, tenant: str, weight: float) -> None:
        await self.refresh_shards()
        for view in self.shards_of(queue):
            await view.set_tenant_weight(queue, tenant, weight)

    async def tenant_weights(self, queue: str) -> dict[str, float]:
        return await self.shard(queue, 0).tenant_weights(queue)

    async def purge_ready(self, queue: str, batch: int = 1000) -> int:
        await self.refresh_shards(force=True)
        return sum([await view.purge_ready(queue, batch) for view in self.shards_of(queue)])

    async def flows(self, queue: str) -> list[tuple[str, str, int, int]]:
        merged: dict[tuple[str, str], list[int]] = {}
        for view in self.shards_of(queue):
            for lane, suffix, ready, waiting in await view.flows(queue):
                row = merged.setdefault((lane, suffix), [0, 0])
                row[0] += ready
                row[1] += waiting
        return [(lane, suffix, r, w) for (lane, suffix), (r, w) in merged.items()]

    async def lanes_and_flows(self, queue: str) -> list[str]:
        out: dict[str, None] = {}
        for view in self.shards_of(queue):
            out.update(dict.fromkeys(await view.lanes_and_flows(queue)))
        return list(out)

    # --- dead letters (each shard keeps its own) --------------------------------------------------------------
    async def dlq_retry(self, job_id: str, lane: str, queue: str, ttl_ms: int) -> int:
        await self.detect_pubsub()  # the wake-up is announced the way workers listen
        return await self.of_job(job_id).dlq_retry(job_id, lane, queue, ttl_ms)

    async def dlq_push_to_list(self, dlq_id: str, list_key: str) -> bool:
        raise ConfigurationError(
            "dead letters of Celery messages (kind 'celery') cannot be retried onto kombu's list on Redis Cluster: "
            "the Celery bridge runs on one Redis or Sentinel only; re-send the task with asyncq.compat instead")

    async def dlq_purge(self, job_ids: Sequence[str] | None = None) -> int:
        if job_ids is None:
            return sum([await view.dlq_purge(None) for view in await self._all_shards()])
        groups: dict[ShardBroker, list[str]] = defaultdict(list)
        for jid in job_ids:
            groups[self.of_job(jid)].append(jid)
        return sum([await view.dlq_purge(ids) for view, ids in groups.items()])

    async def dlq_count(self) -> int:
        return sum(await asyncio.gather(*(view.dlq_count() for view in await self._all_shards())))

    async def dlq_ids(self, offset: int = 0, count: int = 100) -> list[str]:
        """Newest first across every shard: each shard's newest ``offset + count``, merged by time."""
        rows: list[tuple[float, str]] = []
        async with self.pipeline(transaction=False) as pipe:  # one round trip per master
            for view in await self._all_shards():
                pipe.zrevrange(view.names(keys.DLQ_INDEX), 0, offset + count - 1, withscores=True)
            for raw in await pipe.execute():
                rows += [(score, printable_id(m)[0]) for m, score in raw]
        rows.sort(key=lambda r: -r[0])
        return [jid for _, jid in rows[offset : offset + count]]

    async def dlq_meta(self, job_ids: Sequence[str]) -> list[bytes | None]:
        return await _grouped(list(job_ids), list(job_ids), self.of_job, lambda v, ids: v.dlq_meta(ids))

    async def dlq_payloads(self, job_ids: Sequence[str]) -> list[bytes | None]:
        return await _grouped(list(job_ids), list(job_ids), self.of_job, lambda v, ids: v.dlq_payloads(ids))

    # --- reads --------------------------------------------------------------------------------------------
    async def queue_snapshot(
        self, queues: Sequence[str], now: int, probe: int
    ) -> tuple[list[tuple[int, int, int, Scored]], list[bytes]]:
        """Summed over each queue's shards (one snapshot per shard: consistent per shard, not across them)."""
        await self.refresh_shards()
        rows: list[tuple[int, int, int, Scored]] = []
        metas: list[bytes] = []
        for q in queues:
            ready = later = running = 0
            candidates: Scored = []
            snaps = await asyncio.gather(*(view.queue_snapshot([q], now, probe) for view in self.shards_of(q)))
            for (row,), dead in snaps:
                ready, later, running = ready + row[0], later + row[1], running + row[2]
                candidates += row[3]
                metas += dead
            rows.append((ready, later, running, sorted(candidates, key=lambda c: c[1])))
        return rows, metas

    async def queue_lanes(self, queues: Sequence[str]) -> list[list[str]]:
        out = []
        for q in queues:
            lanes: dict[str, None] = {}
            for view in self.shards_of(q):
                lanes.update(dict.fromkeys((await view.queue_lanes([q]))[0]))
            out.append(list(lanes))
        return out

    async def lease_ends(self, queue_ids: Sequence[tuple[str, Sequence[str]]]) -> list[list[float | None]]:
        out = []
        for q, ids in queue_ids:
            out.append(await _grouped(
                list(ids), list(ids), self.of_job, lambda v, part, q=q: _first(v.lease_ends([(q, part)]))))
        return out

    async def lane_heads(self, lanes: Sequence[str], limit: int) -> list[Scored]:
        out = []
        for lane in lanes:
            merged: Scored = []
            for view in self.shards_of(keys.queue_of_lane(lane)):
                merged += (await view.lane_heads([lane], limit))[0]
            out.append(sorted(merged, key=lambda c: c[1])[:limit])
        return out

    async def lane_later(self, lane: str, now: int) -> Scored:
        merged: Scored = []
        for view in self.shards_of(keys.queue_of_lane(lane)):
            merged += await view.lane_later(lane, now)
        return sorted(merged, key=lambda c: c[1])

    async def ready_count(self, lanes: Sequence[str], now: int) -> int:
        total = 0
        for queue in dict.fromkeys(keys.queue_of_lane(lane) for lane in lanes):
            mine = [lane for lane in lanes if keys.queue_of_lane(lane) == queue]
            total += sum([await view.ready_count(mine, now) for view in self.shards_of(queue)])
        return total

    async def lane_score(self, lane: str, job_id: str) -> float | None:
        return await self.of_job(job_id).lane_score(lane, job_id)

    async def running_ids(self, queue: str, now: int) -> list[str]:
        found = await asyncio.gather(*(view.running_ids(queue, now) for view in self.shards_of(queue)))
        return [jid for ids in found for jid in ids]

    async def task_limit_state(self, task: str) -> tuple[int, float]:
        """Summed in-flight count and the latest rate state over every shard (limits hold per shard)."""
        inflight, tat = 0, 0.0
        for n, t in await asyncio.gather(*(view.task_limit_state(task) for view in await self._all_shards())):
            inflight, tat = inflight + n, max(tat, t)
        return inflight, tat

    async def job_payload(self, job_id: str) -> bytes | None:
        return await self.of_job(job_id).job_payload(job_id)

    async def lease_of(self, job_id: str) -> bytes | None:
        return await self.of_job(job_id).lease_of(job_id)

    async def is_running(self, job_id: str) -> bool:
        return await self.of_job(job_id).is_running(job_id)

    async def is_queued(self, job_id: str) -> bool:
        return await self.of_job(job_id).is_queued(job_id)

    async def job_snapshot(self, job_id: str) -> tuple[bytes | None, ...]:
        return await self.of_job(job_id).job_snapshot(job_id)

    async def job_rows(self, job_ids: Sequence[str]) -> list[tuple[bytes | None, bytes | None, bytes | None]]:
        return await _grouped(list(job_ids), list(job_ids), self.of_job, lambda v, ids: v.job_rows(ids))

    async def result_of(self, job_id: str) -> bytes | None:
        return await self.of_job(job_id).result_of(job_id)

    async def results_of(self, job_ids: Sequence[str]) -> list[bytes | None]:
        return await _grouped(list(job_ids), list(job_ids), self.of_job, lambda v, ids: v.results_of(ids))

    async def result_or_alive(self, job_id: str) -> tuple[bytes | None, bool]:
        return await self.of_job(job_id).result_or_alive(job_id)

    async def recent_job_ids(self, count: int) -> list[str]:
        """Each shard's newest ``count``, interleaved (no order across shards is kept)."""
        per_shard = await asyncio.gather(*(view.recent_job_ids(count) for view in await self._all_shards()))
        out: list[str] = []
        for i in range(count):
            out += [ids[i] for ids in per_shard if i < len(ids)]
        return out[:count]

    async def cron_lasts(self, names: Sequence[str]) -> list[bytes | None]:
        """The last tick of each periodic task: its guard lives on the shard its ticks go to, so every shard is
        read and the latest kept."""
        views = await self._all_shards()
        async with self.pipeline(transaction=False) as pipe:  # one round trip per master
            for name in names:
                for view in views:
                    pipe.get(view.names(keys.cron_last_key(name)))
            raws: list[bytes | None] = await pipe.execute()
        out: list[bytes | None] = []
        for i in range(len(names)):
            found = [r for r in raws[i * len(views) : (i + 1) * len(views)] if r is not None]
            out.append(max(found, key=int) if found else None)
        return out


async def _first(x: Any) -> Any:
    return (await x)[0]


async def _grouped(ids: Sequence[str], items: Sequence[T], route: Any, call: Any) -> list[Any]:
    """Run ``call(view, items of that view)`` once per shard the ids route to; results back in input order
    (``call`` returns one result per item)."""
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, jid in enumerate(ids):
        groups[route(jid)].append(i)
    out: list[Any] = [None] * len(ids)
    for view, idx in groups.items():
        for i, r in zip(idx, await call(view, [items[i] for i in idx]), strict=True):
            out[i] = r
    return out


async def _each_shard(ids: Sequence[str], items: Sequence[T], route: Any, call: Any) -> list[Any]:
    """``_grouped`` with the shards' calls sent concurrently and each one's failure kept to its own items: if any
    shard lacked Redis, raise ``PartialWrite`` (a Redis ConnectionError) once all calls are done."""
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, jid in enumerate(ids):
        groups[route(jid)].append(i)
    calls = [call(view, [items[i] for i in idx]) for view, idx in groups.items()]
    out: list[Any] = [None] * len(ids)
    first: BaseException | None = None
    for idx, got in zip(groups.values(), await asyncio.gather(*calls, return_exceptions=True), strict=True):
        if isinstance(got, BaseException):
            if not isinstance(got, REDIS_DOWN):
                raise got
            first = first or got
            for i in idx:
                out[i] = got
            continue
        for i, r in zip(idx, got, strict=True):
            out[i] = r
    if first is not None:
        raise PartialWrite(out, first)
    return out


class SyncClusterBroker(SyncBroker):
    """``SyncBroker`` on Redis Cluster: enqueue from sync code, one script call per shard the batch touches."""

    def __init__(
        self, url: str, *, connect_timeout: float = 5.0, command_timeout: float = 10.0, namespace: str = "",
        shards: Mapping[str, int] | None = None, pubsub: str = "auto", wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        target = cluster_url(url)
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self.names = keys.global_keys(namespace)
        self.namespace = namespace
        self._shards = dict(shards or {})
        self._client: Any = SyncRedisCluster(
            startup_nodes=[SyncClusterNode(host, port) for host, port in target.nodes],  # type: ignore[no-untyped-call]
            username=target.username,
            password=target.password, ssl=target.ssl, socket_connect_timeout=connect_timeout,
            socket_timeout=command_timeout, retry=no_retry())
        self._enqueue: Any = None  # registered on first use, once the pub/sub mode is known
        self._pubsub_choice = pubsub
        self._registered: set[tuple[str, int]] = set()
        self.url_for_humans = redact(url)

    def enqueue(self, jobs: Sequence[NewJob]) -> list[int]:
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            where = keys.shard_of(job.job_id)
            if where is None:
                raise ConfigurationError(
                    f"job id {job.job_id!r} has no shard tag: on Redis Cluster job ids are made by App.new_job")
            groups[where].append(i)
        out = [0] * len(jobs)
        try:
            if self._enqueue is None:
                sharded = self._pubsub_choice == "sharded"
                if self._pubsub_choice == "auto":
                    infos = self._client.info("server", target_nodes=SyncRedisCluster.PRIMARIES)
                    versions = [str(i.get("redis_version", "0")) for i in (
                        infos.values() if "redis_version" not in infos else [infos])]
                    sharded = bool(versions) and all(int(v.split(".")[0]) >= 7 for v in versions)
                self._enqueue = self._client.register_script(
                    script_source("enqueue", "SPUBLISH" if sharded else "PUBLISH"))
            for queue in dict.fromkeys(job.queue for job in jobs):
                n = self._shards.get(queue, 1)
                if (queue, n) not in self._registered:
                    pipe = self._client.pipeline(transaction=False)  # two idempotent writes
                    pipe.sadd(self.names(keys.QUEUES_SET), queue)
                    pipe.zadd(self.names(keys.SHARDS_REGISTRY), {queue: n}, gt=True)
                    pipe.execute()
                    self._registered.add((queue, n))
            for (queue, shard), idx in groups.items():
                k = keys.shard_keys(self.namespace, queue, shard)
                part = [jobs[i] for i in idx]
                routed = [k(lane) for lane in dict.fromkeys(j.lane for j in part)]
                if self.wait_replicas:
                    statuses = self._enqueue_replicated(routed, enqueue_args(part, k=k), [j.job_id for j in part])
                else:
                    statuses = self._enqueue(keys=routed, args=enqueue_args(part, k=k))
                for i, status in zip(idx, statuses, strict=True):
                    out[i] = int(status)
        except BrokerUnavailable:  # NotReplicated, or a refused write: already says what happened
            raise
        except REDIS_DOWN as exc:
            raise BrokerUnavailable(
                f"Redis Cluster at {self.url_for_humans} is unreachable while enqueueing {len(jobs)} job(s) ({exc}); "
                "shards not reached were not written. Check the cluster and ASYNCQ_REDIS_URL, then try again."
            ) from exc
        return out

    def _enqueue_replicated(self, routed: list[str], args: list[Any], ids: list[str]) -> list[Any]:
        """``ClusterBroker._enqueue_replicated`` for sync code: the script and WAIT pipelined on one connection
        to the shard's master (the node's own client), NotReplicated below ``wait_replicas``."""
        node = self._client.get_node_from_key(routed[0])
        if node is None or node.redis_connection is None:
            raise RedisConnectionError(f"no master serves the slot of {routed[0]!r} right now")
        for _ in range(2):  # a second time after loading the script on a new or restarted master
            pipe = node.redis_connection.pipeline(transaction=False)
            pipe.evalsha(self._enqueue.sha, len(routed), *routed, *args)
            pipe.execute_command("WAIT", self.wait_replicas, int(self.wait_timeout * 1000))
            first, acked = pipe.execute(raise_on_error=False)
            if not isinstance(first, NoScriptError):
                break
            node.redis_connection.script_load(self._enqueue.script)
        if isinstance(first, Exception):
            self._client.nodes_manager.initialize()  # MOVED: reload the slot map before the next call
            raise BrokerUnavailable(
                f"Redis Cluster at {self.url_for_humans} refused an enqueue on {node.name} ({first}); nothing was "
                "written there. Try again.")
        if isinstance(acked, Exception) or int(acked) < self.wait_replicas:
            raise NotReplicated(
                f"{len(ids)} job(s) ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}) were written on "
                f"{node.name} but only {acked} of {self.wait_replicas} replica(s) acknowledged them within "
                f"{self.wait_timeout} s (enqueue_wait_timeout): they may be lost if that master fails now. The "
                "exception's job_ids lists them: check them, or enqueue again with the same job_id= (dedupe).", ids)
        return list(first)
