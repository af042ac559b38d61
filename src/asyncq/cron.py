"""Periodic tasks: when each tick falls, for cron expressions and fixed intervals.

Tick times are a pure function of the schedule (an interval's ticks are aligned to the Unix epoch), so every
worker computes the same ticks and the Redis guard in the enqueue script lets exactly one of them enqueue each.

A cron expression is read in its time zone (``App(timezone=...)`` or ``periodic(timezone=...)``, an IANA name,
UTC by default) and each tick is one instant, so daylight saving time never doubles or drops a run:

* a wall time the clocks skip (02:30 when they go from 02:00 to 03:00) runs once that day, one hour later by the
  wall clock (the same instant 02:30 would be without the change: 03:30 summer time);
* a wall time that happens twice (the hour repeated when clocks go back) runs at its first occurrence only,
  unless the hour field of the expression is a ``*`` (``*/15 * * * *``, ``0 * * * *``): those run in both
  hours, as they run in every hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from asyncq.exceptions import ConfigurationError


class Trigger(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...

    def describe(self) -> str: ...


def zone(name: str) -> tzinfo:
    """The IANA time zone ``name`` ("Europe/Berlin", "UTC"), or ConfigurationError saying what to give. UTC
    needs no zone database (slim container images may have none)."""
    if name in ("UTC", "Etc/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York' "
            "(install the tzdata package where the system has no zone database)"
        ) from exc


#: how far, in wall-clock time, a DST change can move an instant (generous: no zone shifts more than 2 h)
_SHIFT = timedelta(hours=3)


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """A cron expression read in ``timezone``; ``next_after`` returns UTC instants."""

    expression: str
    timezone: str = "UTC"

    def next_after(self, moment: datetime) -> datetime:
        tz = zone(self.timezone)
        moment = moment.astimezone(UTC)
        plain: datetime = croniter(self.expression, moment.astimezone(tz).replace(tzinfo=None)).get_next(datetime)
        nxt = plain.replace(tzinfo=tz).astimezone(UTC)
        if nxt > moment and (moment - _SHIFT).astimezone(tz).utcoffset() == (nxt + _SHIFT).astimezone(tz).utcoffset():
            return nxt  # no offset change near: the next wall time is the next instant (the usual case)
        # walk the expression's wall times from a little before ``moment`` (a DST change moves instants by up to
        # ``_SHIFT``) and keep the earliest instant after it
        walls = croniter(self.expression, moment.astimezone(tz).replace(tzinfo=None) - _SHIFT)
        best: datetime | None = None
        while True:
            wall: datetime = walls.get_next(datetime)
            if best is not None and wall > best.astimezone(tz).replace(tzinfo=None) + _SHIFT:
                return best
            for instant in self._instants(wall, tz):
                if instant > moment and (best is None or instant < best):
                    best = instant

    def _instants(self, wall: datetime, tz: tzinfo) -> list[datetime]:
        """The instants (UTC) a wall time stands for: one, none made two (see the module docstring)."""
        first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if first == second or first.astimezone(tz).replace(tzinfo=None) != wall:
            return [first]  # an ordinary wall time, or one the clocks skip (fold=0: one hour later by the clock)
        return [first, second] if self._hourly() else [first]  # a repeated wall time

    def _hourly(self) -> bool:
        return "*" in self.expression.split()[1]

    def describe(self) -> str:
        return f"cron {self.expression} ({self.timezone})"


@dataclass(frozen=True, slots=True)
class IntervalTrigger:
    seconds: float

    def next_after(self, moment: datetime) -> datetime:
        ts = moment.timestamp()
        n = math.floor(ts / self.seconds) + 1
        return datetime.fromtimestamp(n * self.seconds, tz=UTC)

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


def parse_schedule(*, cron: str | None = None, every: float | timedelta | None = None,
                   timezone: str = "UTC") -> Trigger:
    """A trigger for ``cron`` (read in ``timezone``) or ``every`` seconds (epoch-aligned: no time zone)."""
    if (cron is None) == (every is None):
        raise ConfigurationError("periodic tasks take exactly one of cron='*/5 * * * *' or every=<seconds>")
    if cron is not None:
        if not isinstance(cron, str) or not croniter.is_valid(cron) or len(cron.split()) != 5:
            raise ConfigurationError(
                f"invalid cron expression {cron!r}: use five fields 'minute hour day month weekday', "
                "e.g. '*/5 * * * *'"
            )
        zone(timezone)
        return CronTrigger(cron, timezone)
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
