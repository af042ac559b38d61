"""Timezone-aware periodic tasks: cron expressions read in an IANA zone, one run per tick across daylight
saving changes. Checked by computing fire times over the transitions (Europe/Berlin: 2026-03-29 02:00 -> 03:00,
2026-10-25 03:00 -> 02:00; America/New_York), never by sleeping; plus the App and asyncq.compat wiring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from asyncq import App, ConfigurationError
from asyncq.compat import Celery
from asyncq.compat.schedules import crontab
from asyncq.cron import CronTrigger

BERLIN = ZoneInfo("Europe/Berlin")


def fires(expr: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Fire times in [start, end)."""
    trigger, out, moment = CronTrigger(expr, zone), [], start - timedelta(microseconds=1)
    while True:
        moment = trigger.next_after(moment)
        if moment >= end:
            return out
        out.append(moment)


def local(day: int, month: int) -> tuple[datetime, datetime]:
    """The UTC bounds of one Berlin calendar day."""
    begin = datetime(2026, month, day, tzinfo=BERLIN)
    return begin.astimezone(UTC), (begin + timedelta(days=1)).astimezone(UTC)


def assert_one_run_per_tick(times: list[datetime]) -> None:
    assert times == sorted(set(times)), "ticks must be distinct instants in order"


@pytest.mark.parametrize(("month", "day"), [(3, 29), (10, 25)])
def test_a_daily_time_runs_once_on_dst_days(month: int, day: int) -> None:
    for expr in ("30 2 * * *", "0 2 * * *", "0 3 * * *", "30 1 * * *"):
        runs = fires(expr, "Europe/Berlin", *local(day, month))
        assert len(runs) == 1, (expr, runs)


def test_a_skipped_wall_time_runs_one_hour_later_that_day() -> None:
    (run,) = fires("30 2 * * *", "Europe/Berlin", *local(29, 3))
    assert run.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    (run,) = fires("30 2 * * *", "Europe/Berlin", *local(28, 3))
    assert run.astimezone(BERLIN).strftime("%H:%M %Z") == "02:30 CET"


def test_a_repeated_wall_time_runs_at_its_first_occurrence() -> None:
    (run,) = fires("30 2 * * *", "Europe/Berlin", *local(25, 10))
    assert run == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, not 02:30 CET an hour later


@pytest.mark.parametrize(("month", "day", "hours"), [(3, 29, 23), (10, 25, 25), (6, 1, 24)])
def test_hourly_and_quarter_hourly_follow_real_time(month: int, day: int, hours: int) -> None:
    hourly = fires("0 * * * *", "Europe/Berlin", *local(day, month))
    assert len(hourly) == hours  # a 23-hour and a 25-hour day
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(hourly))
    quarter = fires("*/15 * * * *", "Europe/Berlin", *local(day, month))
    assert len(quarter) == hours * 4
    assert all(b - a == timedelta(minutes=15) for a, b in pairwise(quarter))
    assert_one_run_per_tick(hourly)
    assert_one_run_per_tick(quarter)


def test_a_year_of_minutes_around_both_transitions_has_distinct_ordered_ticks() -> None:
    for month, day in ((3, 29), (10, 25)):
        start, end = local(day, month)
        assert_one_run_per_tick(fires("* * * * *", "Europe/Berlin", start - timedelta(hours=2), end))


def test_weekday_schedule_in_new_york_keeps_local_time_across_dst() -> None:
    runs = fires("0 9 * * 1", "America/New_York", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 17, tzinfo=UTC))
    assert [r.strftime("%d %H:%M") for r in runs] == ["02 14:00", "09 13:00", "16 13:00"]  # EST, then EDT


def test_utc_is_the_default_and_unchanged() -> None:
    runs = fires("*/5 * * * *", "UTC", datetime(2026, 3, 1, 0, 2, tzinfo=UTC), datetime(2026, 3, 1, 0, 16, tzinfo=UTC))
    assert [r.minute for r in runs] == [5, 10, 15]


def test_app_timezone_and_per_schedule_zone() -> None:
    app = App(redis_url="redis://127.0.0.1:1/0", timezone="Europe/Berlin")

    @app.periodic(cron="0 3 * * *", name="nightly")
    async def nightly() -> None: ...

    @app.periodic(cron="0 9 * * *", timezone="America/New_York", name="morning")
    async def morning() -> None: ...

    @app.periodic(every=30, name="often")
    async def often() -> None: ...

    triggers = {s.name: s.trigger for s in app.schedules}
    assert triggers[nightly.name].describe() == "cron 0 3 * * * (Europe/Berlin)"
    assert triggers["morning"].describe() == "cron 0 9 * * * (America/New_York)"
    moment = datetime(2026, 7, 1, tzinfo=UTC)
    assert triggers[nightly.name].next_after(moment) == datetime(2026, 7, 1, 1, 0, tzinfo=UTC)
    assert App(redis_url="redis://127.0.0.1:1/0").settings.timezone == "UTC"
    with pytest.raises(ConfigurationError, match="unknown time zone 'Mars/Olympus'"):
        App(redis_url="redis://127.0.0.1:1/0", timezone="Mars/Olympus")
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        app.periodic(cron="0 3 * * *", timezone="Nowhere/Land")
    with pytest.raises(ConfigurationError, match="timezone= goes with cron="):
        app.periodic(every=10, timezone="Europe/Berlin")


def test_compat_reads_crontabs_in_celerys_timezone() -> None:
    berlin = Celery("tz", broker="redis://127.0.0.1:1/0", set_as_current=False)
    berlin.conf.timezone = "Europe/Berlin"
    berlin.conf.beat_schedule = {"nightly": {"task": "tz.nightly", "schedule": crontab(hour=3, minute=0)}}
    (schedule,) = berlin.asyncq_app.schedules
    assert schedule.trigger.describe() == "cron 0 3 * * * (Europe/Berlin)"
    assert schedule.trigger.next_after(datetime(2026, 1, 10, tzinfo=UTC)) == datetime(2026, 1, 10, 2, 0, tzinfo=UTC)

    utc = Celery("tz2", broker="redis://127.0.0.1:1/0", set_as_current=False)
    utc.conf.beat_schedule = {"nightly": {"task": "tz2.nightly", "schedule": crontab(hour=3, minute=0)}}
    (schedule,) = utc.asyncq_app.schedules
    assert schedule.trigger.describe() == "cron 0 3 * * * (UTC)"  # Celery's default: enable_utc, UTC
