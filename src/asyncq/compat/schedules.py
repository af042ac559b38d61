"""Celery's schedule objects for ``beat_schedule`` / ``add_periodic_task``, turned into asyncq triggers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asyncq.compat.exceptions import ImproperlyConfigured
from asyncq.cron import Trigger, parse_schedule


@dataclass(frozen=True)
class crontab:
    """``crontab(minute='*', hour='*', day_of_week='*', day_of_month='*', month_of_year='*')``; Sunday is 0.
    Evaluated in the app's ``timezone`` (see ``beat_timezone``), DST-safe."""

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


def not_celery(obj: Any, name: str) -> str:
    """The fix for an object of real Celery that reached asyncq.compat (its import was left unchanged)."""
    module = getattr(type(obj) if not isinstance(obj, type) else obj, "__module__", "") or ""
    if module == "celery" or module.startswith("celery."):
        public = {"Task": "celery", "crontab": "celery.schedules", "schedule": "celery.schedules",
                  "solar": "celery.schedules"}.get(name, module)
        target = "asyncq.compat" if public == "celery" else f"asyncq.compat.{public.removeprefix('celery.')}"
        return (f"It comes from real Celery ({module}): change `from {public} import {name}` to "
                f"`from {target} import {name}` where it is imported, or call asyncq.compat.install_as_celery() "
                "at the top of your project package so every celery import is asyncq's")
    return f"Use asyncq.compat's {name}."


def _from_celery(value: Any) -> Any:
    """Real Celery's crontab / schedule objects (an unchanged ``from celery.schedules import crontab``) are
    accepted: their fields are read into asyncq's own."""
    if type(value).__module__ != "celery.schedules":
        return value
    if type(value).__name__ == "crontab":
        return crontab(*(str(getattr(value, f"_orig_{f}")) for f in
                         ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")))
    if type(value).__name__ == "schedule":
        return schedule(value.run_every)
    return value


def beat_timezone(conf: Any) -> str:
    """The zone Celery reads crontabs in: ``timezone`` if set; else UTC with ``enable_utc`` (the default), else
    the process's local zone as ``$TZ`` names it (UTC when unset)."""
    zone: str | None = conf.get("timezone")
    if zone:
        return zone
    return "UTC" if conf.get("enable_utc", True) else os.environ.get("TZ") or "UTC"


def to_trigger(value: Any, timezone: str = "UTC") -> Trigger:
    """crontab, schedule, timedelta or a number of seconds -> an asyncq trigger (crontabs read in ``timezone``)."""
    value = _from_celery(value)
    if isinstance(value, crontab):
        return parse_schedule(cron=value.expression(), timezone=timezone)
    if isinstance(value, schedule):
        value = value.run_every
    if isinstance(value, timedelta | int | float) and not isinstance(value, bool):
        return parse_schedule(every=value)
    hint = f" {not_celery(value, type(value).__name__)}" if type(value).__module__.startswith("celery") else ""
    raise ImproperlyConfigured(
        f"unsupported schedule {value!r}: use crontab(...), schedule(run_every=...), a timedelta or seconds "
        f"(solar schedules are not supported).{hint}"
    )
