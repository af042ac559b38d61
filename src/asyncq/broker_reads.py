"""The Broker's reads: every Redis read of asyncq's layout that the client side, the dashboard, the CLI and the
Celery layer make, as named methods (``Broker`` inherits them; ``broker.py`` keeps the writes and the scripts).

Why a seam for reads too: a later transport change (Sentinel, Cluster, a key layout change) then touches these
two modules only, and the cost of each read (its round trips) is stated once, here, next to the command.
Nothing here changes state. Each method is one round trip unless its docstring says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis as AsyncRedis

from asyncq import keys


def printable_id(raw: bytes) -> tuple[str, bytes | None]:
    """A job id read from Redis as text, and its raw bytes when they are not valid UTF-8 (else None)."""
    try:
        return raw.decode(), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), raw


#: a ready lane's (member, score) pairs
Scored = list[tuple[bytes, float]]


class BrokerReads(AsyncRedis):
    """Named reads of asyncq's Redis layout (``asyncq.keys``). Callers name lanes logically (``keys.lane_key``);
    every key goes through ``self.names``, the namespace (``keys.Keys``, set by ``Broker``)."""

    names: keys.Keys = keys.DEFAULT_KEYS

    # --- queues and lanes --------------------------------------------------------------------------------
    async def queue_names(self) -> list[str]:
        """Every queue that ever had a job enqueued (``asyncq:queues``), sorted."""
        members: set[bytes] = await cast(Any, self.smembers(self.names(keys.QUEUES_SET)))
        return sorted(printable_id(m)[0] for m in members)

    async def paused(self) -> set[str]:
        members: set[bytes] = await cast(Any, self.smembers(self.names(keys.PAUSED_SET)))
        return {printable_id(m)[0] for m in members}

    async def queue_snapshot(
        self, queues: Sequence[str], now: int, probe: int
    ) -> tuple[list[tuple[int, int, int, Scored]], list[bytes]]:
        """One consistent snapshot (MULTI, one round trip) of each queue, summed over its lanes: (ready now,
        due later, live leases, up to ``probe`` oldest ready candidates per lane), and every dead letter's
        metadata (HVALS: O(dead letters)). Tenants' and limited tasks' sub-lanes count with their lane."""
        lanes_of = await self.queue_lanes(queues)
        async with self.pipeline(transaction=True) as pipe:
            for q, lanes in zip(queues, lanes_of, strict=True):
                for lane in map(self.names, lanes):
                    pipe.zcount(lane, "-inf", now)
                    pipe.zcount(lane, f"({now}", "+inf")
                    pipe.zrangebyscore(lane, "-inf", now, start=0, num=probe, withscores=True)
                pipe.zcount(self.names(keys.running_key(q)), f"({now}", "+inf")
            pipe.hvals(self.names(keys.DLQ_META))
            out = await pipe.execute()
        rows, at = [], 0
        for lanes in lanes_of:
            per_queue = len(lanes) * 3 + 1
            chunk, at = out[at : at + per_queue], at + per_queue
            candidates = sorted((c for lane in chunk[2:-1:3] for c in lane), key=lambda c: c[1])
            rows.append((sum(int(x) for x in chunk[0:-1:3]), sum(int(x) for x in chunk[1:-1:3]), int(chunk[-1]),
                         candidates))
        return rows, list(out[-1])

    async def queue_lanes(self, queues: Sequence[str]) -> list[list[str]]:
        """Each queue's lanes, highest priority first, each followed by its flows' sub-lanes (its fair ring's
        members: tenants, limited tasks). One round trip."""
        async with self.pipeline(transaction=False) as pipe:
            for q in queues:
                for lane in keys.lanes_by_priority(q):
                    pipe.zrange(self.names.ring(lane), 0, -1)
            rings = await pipe.execute()
        out, i = [], 0
        for q in queues:
            lanes: list[str] = []
            for lane in keys.lanes_by_priority(q):
                lanes += [lane] + [lane + m.decode() for m in rings[i] if m]
                i += 1
            out.append(lanes)
        return out

    async def lease_ends(self, queue_ids: Sequence[tuple[str, Sequence[str]]]) -> list[list[float | None]]:
        """For (queue, ids) pairs, each id's lease end in the queue's running set (None: not running)."""
        async with self.pipeline(transaction=False) as pipe:
            for q, ids in queue_ids:
                pipe.zmscore(self.names(keys.running_key(q)), list(ids))
            out: list[list[float | None]] = await pipe.execute()
        return out

    async def lane_heads(self, lanes: Sequence[str], limit: int) -> list[Scored]:
        """The first ``limit`` (id, score) pairs of each lane, in lane order."""
        async with self.pipeline(transaction=False) as pipe:
            for lane in lanes:
                pipe.zrange(self.names(lane), 0, limit - 1, withscores=True)
            out: list[Scored] = await pipe.execute()
        return out

    async def lane_later(self, lane: str, now: int) -> Scored:
        """The (id, score) pairs of a lane due after ``now`` (scheduled jobs, and running ones: a running job's
        score is its lease end)."""
        return cast(Scored, await cast(Any, self.zrangebyscore(self.names(lane), f"({now}", "+inf", withscores=True)))

    async def ready_count(self, lanes: Sequence[str], now: int) -> int:
        """Jobs ready to run now in these lanes."""
        async with self.pipeline(transaction=False) as pipe:
            for lane in lanes:
                pipe.zcount(self.names(lane), "-inf", now)
            counts = await pipe.execute()
        return int(sum(counts))

    async def lane_score(self, lane: str, job_id: str) -> float | None:
        """The job's score in a lane (its run-at time, or its lease end while running); None: not there."""
        score: float | None = await self.zscore(self.names(lane), job_id)
        return score

    async def running_ids(self, queue: str, now: int) -> list[str]:
        """Ids holding a live lease in ``queue``."""
        raw: list[bytes] = await cast(Any, self.zrangebyscore(self.names(keys.running_key(queue)), now, "+inf"))
        return [printable_id(r)[0] for r in raw]

    async def task_limit_state(self, task: str) -> tuple[int, float]:
        """A limited task's (jobs holding a concurrency slot, GCRA theoretical arrival time in ms; 0: none)."""
        async with self.pipeline(transaction=False) as pipe:
            pipe.scard(self.names(keys.INFLIGHT_PREFIX + task))
            pipe.get(self.names(keys.RATE_PREFIX + task))
            in_flight, tat = await pipe.execute()
        return int(in_flight), float(tat or 0)

    # --- one job -----------------------------------------------------------------------------------------
    async def job_payload(self, job_id: str) -> bytes | None:
        raw: bytes | None = await cast(Any, self.get(self.names(keys.job_key(job_id))))
        return raw

    async def lease_of(self, job_id: str) -> bytes | None:
        """The in-progress key's value: ``<worker>:<claimed ms>:<id>`` (``b"1"`` from a plain arq worker)."""
        raw: bytes | None = await cast(Any, self.get(self.names(keys.in_progress_key(job_id))))
        return raw

    async def is_running(self, job_id: str) -> bool:
        return bool(await self.exists(self.names(keys.in_progress_key(job_id))))

    async def is_queued(self, job_id: str) -> bool:
        """Whether the job's payload is still there (queued, scheduled or running)."""
        return bool(await self.exists(self.names(keys.job_key(job_id))))

    async def job_snapshot(self, job_id: str) -> tuple[bytes | None, ...]:
        """(result, lease, payload, tries, dead-letter metadata, recoveries) of one job, in one round trip."""
        async with self.pipeline(transaction=False) as pipe:
            pipe.get(self.names(keys.result_key(job_id)))
            pipe.get(self.names(keys.in_progress_key(job_id)))
            pipe.get(self.names(keys.job_key(job_id)))
            pipe.get(self.names(keys.retry_key(job_id)))
            pipe.hget(self.names(keys.DLQ_META), job_id)
            pipe.hget(self.names(keys.RECOVERIES), job_id)
            return tuple(await pipe.execute())

    async def job_rows(self, job_ids: Sequence[str]) -> list[tuple[bytes | None, bytes | None, bytes | None]]:
        """(payload, lease, tries) of each job, in one round trip."""
        async with self.pipeline(transaction=False) as pipe:
            for jid in job_ids:
                pipe.get(self.names(keys.job_key(jid)))
                pipe.get(self.names(keys.in_progress_key(jid)))
                pipe.get(self.names(keys.retry_key(jid)))
            raw = await pipe.execute()
        return [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]

    async def result_of(self, job_id: str) -> bytes | None:
        raw: bytes | None = await cast(Any, self.get(self.names(keys.result_key(job_id))))
        return raw

    async def results_of(self, job_ids: Sequence[str]) -> list[bytes | None]:
        if not job_ids:
            return []
        return list(await cast(Any, self.mget([self.names(keys.result_key(i)) for i in job_ids])))

    async def result_or_alive(self, job_id: str) -> tuple[bytes | None, bool]:
        """The result if written, and whether the job still exists (queued, scheduled or running)."""
        async with self.pipeline(transaction=False) as pipe:
            pipe.get(self.names(keys.result_key(job_id)))
            pipe.exists(self.names(keys.job_key(job_id)), self.names(keys.in_progress_key(job_id)))
            raw, alive = await pipe.execute()
        return raw, bool(alive)

    async def recent_job_ids(self, count: int) -> list[str]:
        """Ids of the most recently finished jobs (succeeded, failed, dead-lettered), newest first."""
        raw = await cast(Any, self.lrange(self.names(keys.RECENT_JOBS), 0, max(0, count - 1)))
        return [printable_id(r)[0] for r in raw]

    # --- workers, cron, stats ----------------------------------------------------------------------------
    async def worker_beats(self) -> list[tuple[str, float, bytes | None]]:
        """(worker id, last beat ms, heartbeat JSON or None once expired), newest beat first (two round trips)."""
        members: Scored = await cast(Any, self.zrevrange(self.names(keys.WORKERS_SET), 0, -1, withscores=True))
        ids = [printable_id(m)[0] for m, _ in members]
        names = [self.names(keys.worker_key(i)) for i in ids]
        beats: list[bytes | None] = list(await cast(Any, self.mget(names))) if ids else []
        return [(i, score, beat) for i, (_, score), beat in zip(ids, members, beats, strict=True)]

    async def cron_lasts(self, names: Sequence[str]) -> list[bytes | None]:
        """When each periodic entry last fired (ms as text), None if never."""
        if not names:
            return []
        return list(await cast(Any, self.mget([self.names(keys.cron_last_key(n)) for n in names])))

    async def stats_minutes(self, queues: Sequence[str], minutes: Sequence[int]) -> list[dict[bytes, bytes]]:
        """Each queue's per-minute counters for each minute (queue-major order), in one round trip."""
        async with self.pipeline(transaction=False) as pipe:
            for q in queues:
                for m in minutes:
                    pipe.hgetall(self.names(keys.stats_minute_key(q, m)))
            out: list[dict[bytes, bytes]] = await pipe.execute()
        return out

    async def stats_totals(self, queues: Sequence[str]) -> list[dict[bytes, bytes]]:
        async with self.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.hgetall(self.names(keys.stats_totals_key(q)))
            out: list[dict[bytes, bytes]] = await pipe.execute()
        return out

    # --- dead letters ------------------------------------------------------------------------------------
    async def dlq_count(self) -> int:
        return int(await self.zcard(self.names(keys.DLQ_INDEX)))

    async def dlq_ids(self, offset: int = 0, count: int = 100) -> list[str]:
        """Dead-letter ids, newest first."""
        raw: list[bytes] = await cast(Any, self.zrevrange(self.names(keys.DLQ_INDEX), offset, offset + count - 1))
        return [printable_id(r)[0] for r in raw]

    async def dlq_meta(self, job_ids: Sequence[str]) -> list[bytes | None]:
        if not job_ids:
            return []
        return list(await cast(Any, self.hmget(self.names(keys.DLQ_META), list(job_ids))))

    async def dlq_payloads(self, job_ids: Sequence[str]) -> list[bytes | None]:
        if not job_ids:
            return []
        return list(await cast(Any, self.hmget(self.names(keys.DLQ_PAYLOADS), list(job_ids))))
