"""Enqueueing periodic tasks. Every worker runs this; the tick guard in Redis makes each tick run once.

A tick that falls while no worker runs is skipped, not caught up later: a 3 a.m. report should not fire at
9 a.m. because the workers were down overnight.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from asyncq.broker import REDIS_DOWN

if TYPE_CHECKING:
    from asyncq.app import App

log = logging.getLogger("asyncq.scheduler")


async def run_schedules(app: App, stopping: asyncio.Event) -> None:
    if not app.schedules:
        return
    start = datetime.now(tz=UTC)
    next_ticks = {s.name: s.trigger.next_after(start) for s in app.schedules}
    while not stopping.is_set():
        soonest = min(next_ticks.values())
        wait = (soonest - datetime.now(tz=UTC)).total_seconds()
        if wait > 0:
            try:
                await asyncio.wait_for(stopping.wait(), timeout=min(wait, 60))
                return
            except TimeoutError:
                continue
        for schedule in app.schedules:
            tick = next_ticks[schedule.name]
            if tick > datetime.now(tz=UTC):
                continue
            try:
                if await app.enqueue_tick(schedule, tick):
                    log.info("periodic %s: enqueued tick %s", schedule.name, tick.isoformat())
            except REDIS_DOWN as exc:
                log.warning("periodic %s: tick %s not enqueued, Redis unreachable (%s)",
                            schedule.task_name, tick.isoformat(), exc)
            except Exception:
                log.exception("periodic %s: tick %s failed to enqueue", schedule.task_name, tick.isoformat())
            next_ticks[schedule.name] = schedule.trigger.next_after(tick)
