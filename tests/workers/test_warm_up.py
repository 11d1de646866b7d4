"""A worker loads what its jobs need before it takes the first one, so that the first customer's ticket does
not wait for it; and it starts all the same when the database cannot tell it what to load."""

from __future__ import annotations

import logging
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from centrala.core import clock
from centrala.core.db import get_sessionmaker
from centrala.tickets import models, sla
from centrala.tickets.models import BusinessCalendarRow
from centrala.workers import jobs

NEW_YEAR_2025 = date(2025, 1, 1)


def test_a_worker_loads_every_business_calendar_and_this_years_holidays_before_its_first_job(
    committed_db, monkeypatch
):
    monkeypatch.setattr(clock, "now", lambda: datetime(2025, 3, 3, 9, 0, tzinfo=ZoneInfo("Europe/Prague")))
    with get_sessionmaker().begin() as session:
        session.add(
            BusinessCalendarRow(
                name="Prague office",
                timezone="Europe/Prague",
                weekly_hours={str(day): [["09:00", "17:00"]] for day in range(5)},
                holidays_country="CZ",
                extra_holidays=[],
                updated_at=clock.now(),
            )
        )
    models._calendar_value.cache_clear()
    sla._holiday_dates.cache_clear()

    jobs.warm_up()

    # What the first ticket's clocks then ask costs no loading: both caches answer.
    calendars, holidays = models._calendar_value.cache_info(), sla._holiday_dates.cache_info()
    with get_sessionmaker()() as session:
        row = session.scalars(select(BusinessCalendarRow)).one()
        assert row.to_calendar().is_holiday(NEW_YEAR_2025)
    assert models._calendar_value.cache_info().misses == calendars.misses
    assert sla._holiday_dates.cache_info().misses == holidays.misses
    assert sla._holiday_dates.cache_info().hits == holidays.hits + 1


def test_a_worker_whose_database_is_not_set_up_yet_still_starts_and_says_so(tmp_path, monkeypatch, caplog):
    empty = create_engine(f"sqlite:///{tmp_path / 'not-migrated.db'}")
    monkeypatch.setattr(jobs, "get_read_sessionmaker", lambda: sessionmaker(bind=empty))
    with caplog.at_level(logging.WARNING, logger=jobs.__name__):
        jobs.warm_up()
    assert "could not load the business calendars" in caplog.text
    empty.dispose()
