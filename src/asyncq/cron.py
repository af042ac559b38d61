"""Periodic tasks: when each tick falls, for cron expressions and fixed intervals.

Tick times are a pure function of the schedule (an interval's ticks are aligned to the Unix epoch), so every
worker computes the same ticks and the Redis guard in the enqueue script lets exactly one of them enqueue each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from croniter import croniter

from asyncq.exceptions import ConfigurationError


class Trigger(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CronTrigger:
    expression: str

    def next_after(self, moment: datetime) -> datetime:
        nxt: datetime = croniter(self.expression, moment.astimezone(UTC)).get_next(datetime)
        return nxt.astimezone(UTC)

    def describe(self) -> str:
        return f"cron {self.expression} (UTC)"


@dataclass(frozen=True, slots=True)
class IntervalTrigger:
    seconds: float

    def next_after(self, moment: datetime) -> datetime:
        ts = moment.timestamp()
        n = math.floor(ts / self.seconds) + 1
        return datetime.fromtimestamp(n * self.seconds, tz=UTC)

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


def parse_schedule(*, cron: str | None = None, every: float | timedelta | None = None) -> Trigger:
    if (cron is None) == (every is None):
        raise ConfigurationError("periodic tasks take exactly one of cron='*/5 * * * *' or every=<seconds>")
    if cron is not None:
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise ConfigurationError(
                f"invalid cron expression {cron!r}: use five fields 'minute hour day month weekday', "
                "e.g. '*/5 * * * *'"
            )
        return CronTrigger(cron)
    seconds = every.total_seconds() if isinstance(every, timedelta) else every
    if not isinstance(seconds, int | float) or seconds < 0.1:
        raise ConfigurationError(f"every= must be at least 0.1 seconds, got {every!r}")
    return IntervalTrigger(float(seconds))


@dataclass(frozen=True, slots=True)
class Schedule:
    """One periodic entry: which task, when, with which arguments. ``name`` identifies the entry (several
    entries may run one task with different arguments); it defaults to the task's name."""

    task_name: str
    trigger: Trigger
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    entry_name: str | None = None
    queue: str | None = None

    @property
    def name(self) -> str:
        return self.entry_name or self.task_name
