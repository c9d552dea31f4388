"""A short season of real daily runs (every step, dense taxi days, a 3-day window) with retention
after each day, as the maintenance DAG applies it: what goes and what stays, that the next day's
run still works (warm start from a kept version), that records and lineage survive, that runs in
flight keep what they read; then a day refused by the quality gate, and the next without a push,
pass the freshness deadline once, naming why."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from conftest import run_step
from pipeline_fixtures import DENSE_FIRST_DAY, dense_copy

from pipeline_lib import artifacts, deadline, report, retention, serving, spans

FIRST = DENSE_FIRST_DAY + dt.timedelta(days=10)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(3)]
REFUSED = DAYS[-1] + dt.timedelta(days=1)


def season_config(make_config, database, lower_bound: float):
    return make_config({"schedule": "@daily", "start_date": str(DENSE_FIRST_DAY),
                        "source": {"table": "taxi_daily", "database": str(database), "window_days": 3},
                        "training": {"steps": 50, "batch_size": 32},
                        "evaluation": {"thresholds": {"AUC": {"lower_bound": lower_bound}}},
                        "retention": {"margin_days": 1, "full_runs": 2, "versions": 1},
                        "serving": {"model_name": "season"},  # its own model: other tests push taxi_tips
                        "alerts": {"no_push_days": 1}}, name="season")


def run_day(config, day: dt.date) -> dict:
    out = {}
    for step in artifacts.STEPS:
        out[step] = run_step(config, step, span=day, **artifacts.inputs_from(step, out))
    return out


def span_names(config) -> list[str]:
    return sorted(p.name for p in spans.root(config.name).iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def season(make_config, tmp_path_factory):
    config = season_config(make_config, dense_copy(tmp_path_factory.mktemp("season"), "season"), 0.0)
    days, applied = {}, {}
    for day in DAYS:
        days[day] = run_day(config, day)
        if day == DAYS[-1]:  # before the last retention: what runs in flight would change
            applied["planned"] = retention.plan(config)
            applied["planned_with_flight"] = retention.plan(config, {DAYS[0]})
        applied[day] = retention.apply(config)
    return config, days, applied


def test_each_day_keeps_its_window_and_margin_of_spans(season):
    config, _, applied = season
    last = DAYS[-1]
    expected = [s.name for s in spans.window(config, last, 3 + 1)]
    assert span_names(config) == expected
    # the first run ingested its 3-day window: the two spans before `expected` went, one a day
    first_window = [s.name for s in spans.window(config, DAYS[0])]
    gone = [name for day in DAYS for name in applied[day]["spans"]]
    assert gone == [n for n in first_window if n < expected[0]]
    assert applied[last]["bytes_freed"]["spans"] > 0


def test_older_runs_keep_their_records_and_the_newest_stay_whole(season):
    config, days, applied = season
    for day in DAYS[-2:]:
        assert (artifacts.step_dir(config.name, day, "train") / "model" / "saved_model.pb").is_file()
    for day in DAYS[:-2]:
        run = artifacts.run_dir(config.name, day)
        left = [p for p in run.rglob("*") if p.is_file()]
        assert left and all(p.suffix in (".json", ".md", ".error") or p.name == retention.PRUNED for p in left), left
        assert not (run / "train" / "model").exists()
        text, failed = report.summary(config.name, day)  # the report still reads an old run
        assert not failed and f"PUSHED version {days[day]['push']['version']}" in text
    assert applied[DAYS[-1]]["bytes_freed"]["runs"] > 0


def test_serving_keeps_the_live_version_and_its_rollback_target_and_every_record(season):
    config, days, _ = season
    model_dir = config.serving.model_dir()
    pushed = [days[d]["push"]["version"] for d in DAYS]
    assert pushed == [1, 2, 3]
    assert serving.versions(model_dir) == [2, 3]
    (retired,) = retention.retired_records(model_dir)
    assert retired["version"] == 1 and retired["run_id"] == f"test-{DAYS[0]}" and retired["metrics"]
    assert retired["span"] == spans.newest(config, DAYS[0]).name
    # the run after a retention warm-started from the version that retention kept live
    assert days[DAYS[-1]]["train"]["warm_start"]["from_version"] == 2


def test_retention_is_idempotent(season):
    config, _, _ = season
    again = retention.apply(config)
    assert (again["spans"], again["runs_pruned"], again["versions"]) == ([], [], [])
    assert again["bytes_freed"]["total"] == 0


def test_a_run_in_flight_keeps_its_window_and_its_run_folder(season):
    config, _, applied = season
    planned, protected = applied["planned"], applied["planned_with_flight"]
    in_flight_window = {s.name for s in spans.window(config, DAYS[0])}
    assert {p.name for p in planned.spans} & in_flight_window  # what retention would otherwise remove
    assert not {p.name for p in protected.spans} & in_flight_window
    in_flight_run = artifacts.run_dir(config.name, DAYS[0])
    assert in_flight_run in planned.runs and in_flight_run not in protected.runs


def test_days_without_a_push_pass_the_deadline_once_naming_why(season, make_config, tmp_path):
    config, _, _ = season
    strict = season_config(make_config, config.source.database, 0.9999)  # no model reaches it
    assert not run_day(strict, REFUSED)["push"]["pushed"]
    on_time = deadline.check(strict, REFUSED)
    assert (on_time["days_without_push"], on_time["late"], on_time["alert"]) == (1, False, None)
    next_day = REFUSED + dt.timedelta(days=1)  # its run has not finished
    late = deadline.check(strict, next_day)
    assert late["late"] and late["last_push"] == {"version": 3, "on": DAYS[-1].isoformat()}
    alert = late["alert"]
    assert alert["subject"] == "[season] no model pushed for 2 days (deadline 1 days)"
    assert alert["lines"][:2] == [f"last model pushed: version 3, pushed by the run of {DAYS[-1]}", "why, run by run:"]
    (why,) = alert["lines"][2:]
    assert why.startswith(f"{REFUSED}: NOT PUSHED (the quality gate refused it; serving stays at version 3)")
    assert "fails lower bound 0.9999" in why
    deadline.mark_alerted(strict, late)
    again = deadline.check(strict, next_day + dt.timedelta(days=1))
    assert again["late"] and again["alert"] is None and again["already_alerted_on"] == str(next_day)
    assert os.path.exists(artifacts.pipeline_root("season") / deadline.STATE)
