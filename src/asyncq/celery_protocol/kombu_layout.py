"""Celery's own Redis key names (kombu's Redis transport and Celery's Redis result backend).

These are Celery's names, not asyncq's: a stock Celery worker and Celery's ``AsyncResult`` read exactly these
keys, so they cannot follow asyncq's naming and are deliberately kept out of ``asyncq.keys`` (which spells every
key *asyncq* owns). They do not collide with asyncq's keys: arq's start with ``arq:``, asyncq's with ``asyncq:``.

- A queue ``q`` is the Redis LIST ``q`` for priorities 0-2 and ``q\\x06\\x16{3,6,9}`` for the higher buckets
  (kombu's default ``priority_steps`` [0, 3, 6, 9] and ``sep`` ``'\\x06\\x16'``). Producers ``LPUSH``, Celery's
  consumer ``BRPOP``s the lists in bucket order, so each list is FIFO. Celery priority 0 is the *highest* on
  Redis: it is the plain list, which ``BRPOP`` names first.
- A delivered message waits for its ack in the HASH ``unacked`` (tag -> ``[message, exchange, routing_key]``)
  and the ZSET ``unacked_index`` (tag -> delivery time); any consumer restores entries older than the visibility
  timeout to the front of their list (``restore_visible``).
- A result is the STRING ``celery-task-meta-<id>`` (JSON), written with ``SETEX`` plus a ``PUBLISH`` on the
  channel of the same name.
"""

from __future__ import annotations

from bisect import bisect
from typing import Final

PRIORITY_STEPS: Final = (0, 3, 6, 9)  # kombu.transport.redis.PRIORITY_STEPS
SEP: Final = "\x06\x16"  # kombu's Channel.sep
MIN_PRIORITY: Final = 0
MAX_PRIORITY: Final = 9
META_PREFIX: Final = "celery-task-meta-"  # celery.backends.base.KeyValueStoreBackend.task_keyprefix
UNACKED: Final = "unacked"  # HASH delivery tag -> JSON [message, exchange, routing key] (kombu's QoS)
UNACKED_INDEX: Final = "unacked_index"  # ZSET delivery tag -> delivery time (seconds)
UNACKED_MUTEX: Final = "unacked_mutex"  # a Celery worker's lock while it restores unacked messages
VISIBILITY_TIMEOUT: Final = 3600.0  # kombu's default: unacked this long, a message is restored


def bucket(priority: int | None) -> int:
    """kombu's ``Channel.priority``: the step a message priority falls in (None and junk count as 0)."""
    try:
        p = max(MIN_PRIORITY, min(MAX_PRIORITY, int(priority)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        p = MIN_PRIORITY
    return PRIORITY_STEPS[bisect(PRIORITY_STEPS, p) - 1]


def queue_list_key(queue: str, priority: int | None = None) -> str:
    """The LIST a message for ``queue`` with this priority is ``LPUSH``ed to (kombu's ``_q_for_pri``)."""
    step = bucket(priority)
    return f"{queue}{SEP}{step}" if step else queue


def queue_list_keys(queue: str) -> list[str]:
    """Every list of a queue in the order Celery's consumer pops them (highest priority first)."""
    return [queue_list_key(queue, step) for step in PRIORITY_STEPS]


def pidbox_channel(db: int) -> str:
    """The pub/sub channel of Celery's control broadcasts (``app.control.revoke``...) for a Redis database
    (kombu's fanout exchange ``celery.pidbox`` with its ``/{db}.`` prefix)."""
    return f"/{db}.celery.pidbox"


def meta_key(task_id: str) -> str:
    """The result key of a task, which is also the pub/sub channel its result is published on."""
    return META_PREFIX + task_id


#: prefix of a group's entry in Celery's result backend
TASKSET_PREFIX = "celery-taskset-meta-"


def chord_size_key(group_id: str) -> str:
    """Where a Celery producer stores a chord header's size (``RedisBackend.set_chord_size``)."""
    return f"{TASKSET_PREFIX}{group_id}.s"
