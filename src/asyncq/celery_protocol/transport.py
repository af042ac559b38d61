"""Celery's queues on the asyncq Broker: the round trips of the ``--celery-queues`` consumer, and the
publishing of Celery messages onto kombu's lists (``asyncq_router`` sends a call to a Celery worker).

Each method is one script call over kombu's lists and its ``unacked`` / ``unacked_index`` pair
(``kombu_layout``), with asyncq's dead-letter keys (``asyncq.keys``). They live here, not in ``asyncq.broker``,
so the core Broker knows nothing of Celery's layout; the scripts themselves are asyncq's (``lua/celery_*.lua``,
registered on every Broker with the others).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis import Redis as SyncRedis

from asyncq import keys
from asyncq.broker import Broker, NewJob, enqueue_args, now_ms, printable_id
from asyncq.celery_protocol import kombu_layout

#: what to do with a claimed message: (action, tag, message, list key, dead-letter id, dead-letter meta JSON);
#: action ``back`` / ``front`` (onto that list) or ``dead`` (to asyncq's dead-letter store)
Settle = tuple[str, str, bytes, str, str, bytes]


class CeleryTransport:
    """kombu's Redis queues, read and acknowledged through one asyncq Broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def claim(self, lists: Sequence[tuple[str, str]], want: int) -> list[tuple[str, bytes, str]]:
        """Take up to ``want`` messages off kombu lists ``(list key, queue)`` into ``unacked``; returns
        ``(tag, message, queue)``, where an empty tag means the element was dead-lettered (message = its id)."""
        now = time.time()
        flat = [x for pair in lists for x in pair]
        out = await self.broker.scripts.celery_claim(args=[
            repr(now), int(now * 1000), want, kombu_layout.UNACKED, kombu_layout.UNACKED_INDEX,
            self.broker.names(keys.DLQ_INDEX), self.broker.names(keys.DLQ_PAYLOADS),
            self.broker.names(keys.DLQ_META), *flat,
        ])
        return [(printable_id(out[i])[0], out[i + 1], printable_id(out[i + 2])[0]) for i in range(0, len(out), 3)]

    async def adopt(self, jobs: Sequence[NewJob], tags: Sequence[str]) -> list[int]:
        """Enqueue the jobs that Celery messages became and acknowledge the messages, atomically; one status per
        job as ``Broker.enqueue``, plus -2: the message had been restored meanwhile (nothing enqueued)."""
        out = await self.broker.scripts.enqueue(
            args=enqueue_args(jobs, (kombu_layout.UNACKED, kombu_layout.UNACKED_INDEX, tags), self.broker.names))
        return [int(x) for x in out]

    async def settle(self, actions: Sequence[Settle]) -> list[int]:
        """Put claimed Celery messages back or dead-letter them (see ``Settle``); 0 for a message no longer in
        ``unacked``."""
        if not actions:
            return []
        flat = [x for a in actions for x in a]
        out = await self.broker.scripts.celery_settle(args=[
            now_ms(), kombu_layout.UNACKED, kombu_layout.UNACKED_INDEX, self.broker.names(keys.DLQ_INDEX),
            self.broker.names(keys.DLQ_PAYLOADS), self.broker.names(keys.DLQ_META), *flat,
        ])
        return [int(x) for x in out]

    async def restore(self, queues: Sequence[str], visibility_timeout: float, limit: int = 500) -> int:
        """Restore messages of ``queues`` left in ``unacked`` longer than the visibility timeout; -1 when a
        Celery worker is restoring right now."""
        cutoff = time.time() - visibility_timeout
        return int(await self.broker.scripts.celery_restore(args=[
            repr(cutoff), kombu_layout.UNACKED, kombu_layout.UNACKED_INDEX, kombu_layout.UNACKED_MUTEX,
            kombu_layout.SEP, limit, *queues,
        ]))


async def publish_messages(broker: Broker, messages: Sequence[tuple[str, bytes]]) -> None:
    """LPUSH Celery messages onto their kombu lists ((list key, message) each), in one round trip, as
    ``Task.apply_async`` publishes them."""
    async with broker.pipeline(transaction=False) as pipe:
        for key, message in messages:
            pipe.lpush(key, message)
        await pipe.execute()


def publish_message_sync(client: SyncRedis, key: str, message: bytes) -> None:
    """One Celery message onto its kombu list, from sync code (``send_task``)."""
    client.lpush(key, message)
