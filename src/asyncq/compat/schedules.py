"""Celery's schedule objects for ``beat_schedule`` / ``add_periodic_task``, turned into asyncq triggers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asyncq.compat.exceptions import ImproperlyConfigured
from asyncq.cron import Trigger, parse_schedule


@dataclass(frozen=True)
class crontab:
    """``crontab(minute='*', hour='*', day_of_week='*', day_of_month='*', month_of_year='*')``; Sunday is 0.
    Evaluated in UTC."""

    minute: str | int = "*"
    hour: str | int = "*"
    day_of_week: str | int = "*"
    day_of_month: str | int = "*"
    month_of_year: str | int = "*"

    def expression(self) -> str:
        return f"{self.minute} {self.hour} {self.day_of_month} {self.month_of_year} {self.day_of_week}"


@dataclass(frozen=True)
class schedule:
    """``schedule(run_every=timedelta(...) | seconds)``."""

    run_every: float | timedelta


def to_trigger(value: Any) -> Trigger:
    """crontab, schedule, timedelta or a number of seconds -> an asyncq trigger."""
    if isinstance(value, crontab):
        return parse_schedule(cron=value.expression())
    if isinstance(value, schedule):
        value = value.run_every
    if isinstance(value, timedelta | int | float) and not isinstance(value, bool):
        return parse_schedule(every=value)
    raise ImproperlyConfigured(
        f"unsupported schedule {value!r}: use crontab(...), schedule(run_every=...), a timedelta or seconds "
        "(solar schedules are not supported)"
    )
