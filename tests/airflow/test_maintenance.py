"""The maintenance DAG for real (`dag.test()`): each pipeline's retention with the runs in flight
that Airflow's database holds kept whole, a broken pipeline config failing only its own part, the
freshness deadline's one alert through a real SMTP server and webhook endpoint, old task logs.

Artifacts here are small stand-ins in the store's layout (tests/ml/test_retention.py runs
retention over a real season of runs); what they hold is what retention and the run report read."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
from conftest import ALERTS, REPO
from pipeline_fixtures import write_pipeline

from pipeline_lib import artifacts, retention, serving, spans
from pipeline_lib.config import load_config

TODAY = dt.date(2016, 12, 20)
RUNS = [TODAY - dt.timedelta(days=i) for i in range(8, -1, -1)]  # nine daily runs, the last TODAY
SEASON = {"schedule": "@daily", "start_date": "2016-12-01", "source": {"window_days": 3},
          "retention": {"margin_days": 1, "full_runs": 2, "versions": 1}, "alerts": {**ALERTS, "no_push_days": 2}}


def maintenance_dag():
    spec = importlib.util.spec_from_file_location("platform_maintenance", REPO / "dags" / "platform_maintenance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_maintenance(day: dt.date) -> dict[str, str]:
    dag_run = maintenance_dag().test(logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)


def season(config, pushed_until: dt.date) -> None:
    """Spans of every run's window, each run's records and heavy outputs, and a version per run up
    to `pushed_until`; later runs' pushes refused by the gate."""
    for day in RUNS:
        for span in spans.window(config, day):
            write(spans.folder(config.name, span.name) / spans.RECORD, {"span": span.name})
            write(spans.folder(config.name, span.name) / "train" / "data.tfrecord", "x" * 1000)
        write(artifacts.step_dir(config.name, day, "train") / "model" / "saved_model.pb", "m" * 5000)
        write(artifacts.step_dir(config.name, day, "train") / artifacts.RESULT_FILENAME, {"steps": 10})
        pushed = day <= pushed_until
        if pushed:
            record = {"span": spans.newest(config, day).name, "run_id": f"scheduled__{day}"}
            serving.publish(artifacts.step_dir(config.name, day, "train") / "model", config.serving.model_dir(), record)
        write(artifacts.step_dir(config.name, day, "push") / artifacts.RESULT_FILENAME,
              {"pushed": pushed, "version": serving.latest_version(config.serving.model_dir()),
               "reason": "blessed" if pushed else f"not blessed: auc = 0.61 fails lower bound 0.7 ({day})"})


@pytest.fixture
def pipelines(isolated, airflow_db):
    good = load_config(write_pipeline(isolated / "pipelines", {"name": "alpha", **SEASON}), check_schema=False)
    broken = isolated / "pipelines" / "broken" / "pipeline.yaml"
    write(broken, "name: broken\nschedule: '@daily'\n")  # no source, features, ...
    return good


def add_dag_run(dag_id: str, day: dt.date, state: str) -> None:
    """A DAG run of `dag_id` in Airflow's database, as the scheduler would have it."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    logical = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    with create_session() as session:
        session.add(DagRun(dag_id=dag_id, run_id=f"backfill__{day}", logical_date=logical, run_after=logical,
                           state=state, run_type="backfill"))


def test_retention_keeps_the_runs_in_flight_and_a_broken_config_fails_only_its_own_part(pipelines):
    config = pipelines
    season(config, pushed_until=TODAY)
    in_flight = RUNS[1]  # a re-run of an old date, running while maintenance runs
    add_dag_run(config.name, in_flight, "running")
    add_dag_run(config.name, RUNS[2], "success")

    states = run_maintenance(TODAY)
    # the broken config fails the two per-pipeline tasks, after alpha's part was done
    assert states == {"retention": "failed", "deadline": "failed", "task_logs": "success"}
    kept_spans = {p.name for p in spans.root(config.name).iterdir()}
    reach = {s.name for s in spans.window(config, TODAY, 3 + 1)}
    assert kept_spans == reach | {s.name for s in spans.window(config, in_flight)}
    for day in RUNS:
        whole = day in (in_flight, *RUNS[-2:])
        assert (artifacts.step_dir(config.name, day, "train") / "model").exists() == whole, day
        assert (artifacts.step_dir(config.name, day, "push") / artifacts.RESULT_FILENAME).exists()
    assert serving.versions(config.serving.model_dir()) == [8, 9]
    assert [r["version"] for r in retention.retired_records(config.serving.model_dir())] == list(range(7, 0, -1))

    # the Models page lists the removed versions' records, with nothing to roll back to
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from conftest import airflow_token
    from fastapi.testclient import TestClient

    purge_cached_app()
    client = TestClient(create_app(), base_url="http://127.0.0.1")
    client.cookies.set("_token", airflow_token("admin"))
    page = client.get("/pipeline-pages/models", params={"pipeline": "alpha"}).text
    assert page.count("removed by retention") == 7 and f"scheduled__{RUNS[0]}" in page
    assert "Roll back to v8" in page and "Roll back to v7" not in page


def test_the_deadline_alerts_once_through_the_pipelines_channels_naming_why(pipelines, alert_connections):
    config = pipelines
    season(config, pushed_until=RUNS[4])  # the last four runs refused by the gate
    states = run_maintenance(TODAY)
    assert states["deadline"] == "failed"  # the broken config; alpha's alert went out first
    ((_, slack),), (email,) = alert_connections["slack"], alert_connections["email"]
    subject = "[alpha] no model pushed for 4 days (deadline 2 days)"
    assert email["Subject"] == subject and subject in slack["text"]
    (html,) = [p.get_payload(decode=True).decode() for p in email.walk() if p.get_content_type() == "text/html"]
    assert "<p>why, run by run:</p>" in html
    for day in RUNS[5:]:
        assert f"{day}: NOT PUSHED (the quality gate refused it; serving stays at version 5): not blessed: auc = 0.61 " \
               f"fails lower bound 0.7 ({day})" in slack["text"]
    assert "/pipeline-pages/models?pipeline=alpha" in slack["text"]

    run_maintenance(TODAY + dt.timedelta(days=1))  # still late: nothing new is sent
    assert len(alert_connections["slack"]) == 1 and len(alert_connections["email"]) == 1


def test_task_logs_older_than_the_retention_go_with_their_empty_folders(tmp_path):
    from pipeline_ops import maintenance

    old, new = tmp_path / "dag_id=a" / "run_id=1" / "old.log", tmp_path / "dag_id=a" / "run_id=2" / "new.log"
    for path in (old, new):
        write(path, "log line\n" * 100)
    month_ago = time.time() - 31 * 86_400
    os.utime(old, (month_ago, month_ago))
    result = maintenance.clean_task_logs(30, tmp_path)
    assert (result["files_removed"], result["bytes_freed"]) == (1, 900)
    assert not old.parent.exists() and new.exists()
