"""Redis Cluster for users: which shard a job goes to, and how to read a cluster job id.

Choose the cluster layout with a ``redis+cluster://host:port[,host:port...]`` URL (or ``App(cluster=True)`` with a
plain one) and split busy queues with ``App(queue_shards={"webhooks": 16})``. Each shard of a queue is one hash
slot (keys under ``{<queue>:<shard>}``, see ``asyncq.keys``), so a queue's load spreads over the cluster's masters
while each job's keys stay in one slot for the atomic Lua steps. ``broker_cluster.py`` does the routing.

Where a job goes (``place``), first rule that applies:

1. an id that already names a shard of its queue (``{webhooks:3}...``) keeps it;
2. a periodic task's tick: crc32(schedule guard) % N, so its once-per-tick guard is always on the same shard;
3. a tenant: crc32(tenant) % N, so one tenant's jobs share a shard and its order, fair share and tenant limits
   hold there (a given id with the same tenant always lands on the same shard, so dedupe by id still holds;
   the same id under another tenant may land elsewhere);
4. a given id (``job_id=`` or a ``unique`` task): crc32(id) % N, so the same id lands on the same shard and
   dedupe by id still holds;
5. else round-robin per producer process.

Ordering: priorities, delays and per-tenant fair share hold within a shard. Workers visit a queue's shards from
a rotating start, so across shards order is only roughly by priority and due time.
"""

from __future__ import annotations

import itertools
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence

from asyncq.exceptions import BrokerUnavailable
from asyncq.keys import global_keys, shard_keys, shard_of, shard_tag, tagged_id

__all__ = [
    "NotReplicated", "Placer", "claim_order", "global_keys", "shard_for", "shard_keys", "shard_of", "shard_tag",
    "tagged_id",
]


class NotReplicated(BrokerUnavailable):
    """``enqueue_wait_replicas`` were not reached within ``enqueue_wait_timeout``: the jobs ARE written on their
    master, but a failover of that master right now could lose them (Redis replicates asynchronously).
    ``job_ids``: the jobs of that write (enqueue them again with the same ``job_id=`` to be sure: dedupe)."""

    def __init__(self, message: str, job_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.job_ids = list(job_ids)


def claim_order(queues: Sequence[str], counts: Mapping[str, int], turn: int) -> list[tuple[str, int]]:
    """The (queue, shard) pairs one claim visits, in order: each queue's shards starting ``turn`` shards in,
    so successive claims (turn + 1, turn + 2, ...) put every shard first in turn and none starves."""
    out = []
    for q in queues:
        n = max(1, counts.get(q, 1))
        out += [(q, (turn + step) % n) for step in range(n)]
    return out


def shard_for(value: str, shards: int) -> int:
    """The shard a string (an id, a tenant, a schedule) maps to: crc32 % shards, stable across processes."""
    return zlib.crc32(value.encode("utf-8", "surrogatepass")) % shards if shards > 1 else 0


class Placer:
    """Picks the shard of each new job on the cluster layout (the rules in the module docstring)."""

    def __init__(self) -> None:
        self._turns: defaultdict[str, itertools.count[int]] = defaultdict(itertools.count)

    def place(
        self, queue: str, shards: int, job_id: str, *, given: bool, tenant: str | None = None, pin: str = ""
    ) -> str:
        """The cluster job id for ``job_id`` (a fresh uuid hex unless ``given``) in ``queue`` with ``shards``."""
        where = shard_of(job_id)
        if where is not None and where[0] == queue and where[1] < shards:
            return job_id
        if pin:
            shard = shard_for(pin, shards)
        elif tenant is not None:
            shard = shard_for(tenant, shards)
        elif given:
            shard = shard_for(job_id, shards)
        else:
            shard = next(self._turns[queue]) % shards
        return tagged_id(queue, shard, job_id)
