"""@schedule compiles to a RUNNING Dagster schedule whose ticks are exactly Metaflow's (issue #5, item 5)."""

import runpy
from datetime import datetime, timezone

import pytest
from dagster import DefaultScheduleStatus
from dagster._utils.schedules import cron_string_iterator

from tests.helpers import flow_path

# Monday 2026-01-05 10:07:00 UTC
START = datetime(2026, 1, 5, 10, 7, tzinfo=timezone.utc).timestamp()

CASES = [
    ("schedule_daily_flow.py", "ScheduleDailyFlow", "0 0 * * *", "UTC",
     ["2026-01-06T00:00:00+00:00", "2026-01-07T00:00:00+00:00"]),
    ("schedule_hourly_flow.py", "ScheduleHourlyFlow", "0 * * * *", "UTC",
     ["2026-01-05T11:00:00+00:00", "2026-01-05T12:00:00+00:00"]),
    ("schedule_weekly_flow.py", "ScheduleWeeklyFlow", "0 0 * * SUN", "UTC",
     ["2026-01-11T00:00:00+00:00", "2026-01-18T00:00:00+00:00"]),
    ("schedule_cron_flow.py", "ScheduleCronFlow", "30 12 * * MON-FRI", "Europe/Paris",
     ["2026-01-05T12:30:00+01:00", "2026-01-06T12:30:00+01:00"]),
]


@pytest.mark.parametrize("fixture,job,cron,tz,ticks", CASES, ids=[c[1] for c in CASES])
def test_schedule_ticks_are_exactly_metaflows(project, fixture, job, cron, tz, ticks):
    defs_path, _ = project.create(flow_path(fixture))
    defs = runpy.run_path(defs_path)["defs"]
    schedule = defs.resolve_schedule_def("%s_schedule" % job)
    assert schedule.job_name == job
    assert schedule.cron_schedule == cron and schedule.execution_timezone == tz
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    # The same iterator the Dagster daemon uses to place a schedule's ticks.
    got = cron_string_iterator(START, schedule.cron_schedule, schedule.execution_timezone)
    assert [next(got).isoformat() for _ in ticks] == ticks


def test_schedule_with_a_required_parameter_without_default_is_rejected(project):
    _, res = project.create(flow_path("schedule_required_flow.py"), check=False)
    assert res.returncode != 0
    assert "parameter 'who' is required and has no default" in res.stderr
