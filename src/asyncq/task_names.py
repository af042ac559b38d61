"""A producer-side warning for mistyped task names: ``App.enqueue_many`` asks this watcher, once per task name
and process, whether a live worker has the name registered (workers list their task names in their heartbeats).
If live workers exist and none knows the name, it logs one warning with the closest names they know; a job for
an unknown task otherwise waits silently as "unknown task" for ``unknown_task_wait`` (10 minutes by default)
before it is dead-lettered.

When no worker is alive at all it says nothing (and asks again later): producers often start before workers,
and a rolling deploy briefly has none, so silence there is not a sign of a typo. The worker list is read at most
every ``refresh`` seconds, so an enqueue-heavy producer pays one extra read per new task name, not per job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from asyncq import admin
from asyncq.broker import REDIS_DOWN, SyncBroker
from asyncq.exceptions import AsyncqError

if TYPE_CHECKING:
    from asyncq.app import App

log = logging.getLogger("asyncq.app")


class UnknownTaskWatch:
    """Owned by one App (no global state): the names it has settled and its cached worker list."""

    def __init__(self, refresh: float = 10.0) -> None:
        self.refresh = refresh
        self._settled: set[str] = set()
        self._workers: list[admin.WorkerInfo] = []
        self._read_at = float("-inf")

    async def after_enqueue(self, app: App, names: Iterable[str]) -> None:
        """Check names not settled yet; never raises (a failed check must not fail an enqueue that worked)."""
        new = {n for n in names if n not in self._settled}
        if not new:
            return
        try:
            if time.monotonic() - self._read_at >= self.refresh:
                self._workers = await admin.list_workers(app)
                self._read_at = time.monotonic()
        except (AsyncqError, *REDIS_DOWN) as exc:
            log.debug("could not read the worker list to check task names: %s", exc)
            return
        self._warn(new)

    def after_enqueue_sync(self, broker: SyncBroker, names: Iterable[str]) -> None:
        """``after_enqueue`` for ``enqueue_many_sync`` (the Celery layer's ``delay()``, Django views)."""
        new = {n for n in names if n not in self._settled}
        if not new:
            return
        try:
            if time.monotonic() - self._read_at >= self.refresh:
                self._workers = admin.workers_of(broker.worker_beats())
                self._read_at = time.monotonic()
        except (AsyncqError, *REDIS_DOWN) as exc:
            log.debug("could not read the worker list to check task names: %s", exc)
            return
        self._warn(new)

    def _warn(self, new: set[str]) -> None:
        for name in sorted(new):
            check = admin.check_task_name(name, self._workers)
            if not check.workers:
                continue  # no live worker lists tasks: ask again later
            self._settled.add(name)
            problem = check.problem()
            if problem is not None:
                log.warning("enqueued %s", problem)
