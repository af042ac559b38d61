"""What a worker's parts share, passed to them explicitly instead of the Worker itself.

The executor (and anything else that runs or settles jobs) gets a ``WorkerState``: the App, settings and id, the
broker and finisher, hooks and counters, the ids whose outcome waits for Redis, the one thread limiter for plain
``def`` bodies, the Redis-health callbacks and the flags the lifecycle sets. The Worker builds it in ``main()``,
once the broker exists; the parts never import ``lifecycle.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from asyncq.app import App
from asyncq.broker import Broker
from asyncq.hooks import Hooks
from asyncq.settings import WorkerSettings
from asyncq.worker.finisher import Finisher


@dataclass(eq=False)
class WorkerFlags:
    """Set by the lifecycle, read by the parts."""

    #: a second SIGTERM: jobs are handed back now, and held outcomes are no longer waited for
    stopped_hard: bool = False


@dataclass(eq=False)
class WorkerState:
    app: App
    settings: WorkerSettings
    worker_id: str
    broker: Broker
    finisher: Finisher
    hooks: list[Hooks]
    #: job counters (complete, failed, retried, ...) for the heartbeat and arq's health line
    stats: Counter[str]
    #: ids of jobs whose outcome waits for Redis to answer
    holding: set[str]
    #: every plain ``def`` body of this worker runs under this limiter (``threads``), Celery-style tasks too
    limiter: anyio.CapacityLimiter
    redis_down: Callable[[BaseException], None]
    wait_for_redis: Callable[[float], Awaitable[None]]
    flags: WorkerFlags = field(default_factory=WorkerFlags)
