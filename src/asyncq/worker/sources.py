"""Extra job sources: places a worker takes work from besides asyncq's own lanes.

A source brings jobs in from elsewhere (Celery's kombu lists: ``asyncq.compat.consumer.CeleryConsumer``) and
enqueues them on asyncq queues, which the worker then claims and runs like any job. The worker knows only this
interface; whoever builds the worker (``asyncq worker`` for ``--celery-queues``) creates the sources and passes
them in, so the core never imports the layer a source belongs to.

What the worker lends a source is ``SourceHost``: the broker, its settings and id, how many slots are free, the
stop event, how to report a Redis outage and how to turn a ``JobSpec`` into a job for ``Broker.enqueue``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from asyncq.broker import Broker, NewJob
from asyncq.settings import WorkerSettings
from asyncq.task import JobSpec


@dataclass(frozen=True, slots=True)
class SourceHost:
    """What a worker lends its job sources while it serves."""

    broker: Broker
    settings: WorkerSettings
    worker_id: str
    #: set when the worker stops claiming; a source stops taking work then
    stopping: asyncio.Event
    #: slots not taken by running jobs (``concurrency - running``)
    free_slots: Callable[[], int]
    #: report a Redis call that failed (the worker's health and outage handling)
    redis_down: Callable[[BaseException], None]
    #: a JobSpec as the job ``Broker.enqueue`` creates (the App's ids, payload and lane rules)
    new_job: Callable[[JobSpec, int], NewJob]


class JobSource(Protocol):
    """A place jobs come from besides asyncq's lanes."""

    #: for task names and logs ("celery-consumer": the task is ``asyncq-celery-consumer``)
    name: str
    #: asyncq queues this source's jobs are put on; the worker serves them after its own queues
    queues: tuple[str, ...]

    async def run(self, host: SourceHost) -> None:
        """Bring jobs in until ``host.stopping`` is set, settling what was taken before returning. The worker
        waits for it (bounded: shutdown_grace + 3 s) before it drains; it is never cancelled mid-batch."""
        ...

    def side_loops(self, host: SourceHost) -> dict[str, Coroutine[Any, Any, None]]:
        """Loops that run beside ``run`` until the worker has drained, then are cancelled (name -> loop)."""
        ...
