"""`make airflow` for real: the four components on a free port of 127.0.0.1 with a private
AIRFLOW_HOME; a daily taxi_tips triggered over the REST API (JWT login, validated params), then a
7-day backfill (`airflow backfill create`) run by the scheduler: one run, one new span and one
blessing per date, model versions increasing with the date; a date re-run replaces its run's
artifacts, keeps every span as it was and pushes no second version. Stopped at the end, nothing
left running."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import urllib.error
from pathlib import Path

import pytest
from conftest import REPO
from local_airflow import RUN_TIMEOUT_S, Api, finished, local_airflow
from pipeline_fixtures import warehouse_copy, write_pipeline

from pipeline_lib import serving

FIRST = dt.date(2016, 12, 1)
DATES = [FIRST + dt.timedelta(days=i) for i in range(7)]
# small windows and short training: each run takes ~1-2 minutes here, almost all of it imports
SMALL = {"schedule": "@daily", "start_date": FIRST.isoformat(), "end_date": DATES[-1].isoformat(),
         "source": {"window_days": 90}, "training": {"steps": 300},
         "evaluation": {"thresholds": {"AUC": {"lower_bound": 0.5}, "BinaryAccuracy": {"lower_bound": 0.5}}}}


@contextlib.contextmanager
def running_airflow(root: Path, first_dag: str, extra_env: dict | None = None):
    """`make airflow` with a private AIRFLOW_HOME under `root`, pipelines from `root/pipelines`;
    yields (api, env) once `first_dag` is parsed; stops it, checking that nothing is left running
    and nothing answers on its port (local_airflow)."""
    home = root / "home"
    env = {**os.environ, "PIPELINES_DIR": str(root / "pipelines"),
           "PIPELINE_ARTIFACT_ROOT": str(root / "artifacts"), "PIPELINE_SERVING_ROOT": str(root / "serving"),
           "PIPELINE_WAREHOUSE": str(warehouse_copy(root)),
           "PIPELINE_RUNTIME_DIR": str(root / "run"),  # this stack's own warm ML process, stopped with it
           **(extra_env or {})}
    with local_airflow(home, env, root / "make-airflow.log") as api:
        api.wait(lambda: api.call("GET", f"/api/v2/dags/{first_dag}"), f"{first_dag} to be parsed", 120)
        yield api, {**env, "AIRFLOW_HOME": str(home)}


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    root = tmp_path_factory.mktemp("airflow-local")
    write_pipeline(root / "pipelines", SMALL)
    with running_airflow(root, "taxi_tips") as (api, env):
        yield api, root, env


def task_states(api: Api, run_id: str, dag_id: str = "taxi_tips") -> dict[str, str]:
    tis = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {t["task_id"]: t["state"] for t in tis}


def test_rest_trigger_with_params_runs_taxi_tips_to_success(airflow):
    api, root, _ = airflow
    with pytest.raises(urllib.error.HTTPError) as refused:
        api.call("POST", "/api/v2/dags/taxi_tips/dagRuns", {"logical_date": f"{FIRST}T00:00:00Z",
                                                            "conf": {"window_days": 0}})
    assert refused.value.code == 400
    assert "0 is less than the minimum of 1" in refused.value.read().decode()

    api.call("PATCH", "/api/v2/dags/taxi_tips", {"is_paused": False})
    run = api.call("POST", "/api/v2/dags/taxi_tips/dagRuns",
                   {"logical_date": f"{FIRST}T00:00:00Z", "conf": {"window_days": 60}})
    done = api.wait(lambda: finished(api, run["dag_run_id"]), "the triggered run")
    assert done["state"] == "success", task_states(api, run["dag_run_id"])
    assert set(task_states(api, run["dag_run_id"]).values()) <= {"success", "skipped"}
    ingest = json.loads((root / "artifacts" / "taxi_tips" / "runs" / str(FIRST) / "ingest" / "result.json").read_text())
    assert ingest["window"]["start"] == f"{FIRST - dt.timedelta(days=60)}T00:00:00+00:00"


def backfill(env: dict, start: dt.date, end: dt.date, *options: str) -> None:
    # each day a forced retrain: every candidate that meets the value thresholds is pushed
    proc = subprocess.run([str(REPO / ".venv-airflow" / "bin" / "airflow"), "backfill", "create", "--dag-id", "taxi_tips",
                           "--from-date", str(start), "--to-date", str(end), "--max-active-runs", "1",
                           "--dag-run-conf", json.dumps({"skip_change_threshold": True}), *options],
                          env=env, cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def results(env: dict, step: str) -> dict[dt.date, dict | None]:
    """Each date's result of `step` (its result.json), None where it did not run."""
    root = Path(env["PIPELINE_ARTIFACT_ROOT"]) / "taxi_tips" / "runs"
    return {d: json.loads(f.read_text()) if (f := root / str(d) / step / "result.json").exists() else None for d in DATES}


def test_airflows_metadata_database_is_cleaned_beside_it(airflow):
    """`make airflow` runs `airflow db clean` at start and daily (scripts/airflow_db_clean.sh)."""
    api, root, _ = airflow
    log = root / "home" / "logs" / "components" / "db-clean.log"
    text = api.wait(lambda: log.is_file() and "Checking table dag_run" in log.read_text() and log.read_text(),
                    "the first airflow db clean", 120)
    assert "airflow db clean --clean-before-timestamp" in text and "failed" not in text


def test_a_seven_day_backfill_runs_each_date_once_with_increasing_versions(airflow):
    api, root, env = airflow
    backfill(env, DATES[0], DATES[-1])

    def all_done():
        runs = {r["logical_date"][:10]: r for r in api.runs()}
        return runs if len(runs) == len(DATES) and all(r["state"] in ("success", "failed") for r in runs.values()) else None

    runs = api.wait(all_done, "the backfill", RUN_TIMEOUT_S * len(DATES))
    assert sorted(runs) == [str(d) for d in DATES]
    failed = {d: task_states(api, r["dag_run_id"]) for d, r in runs.items() if r["state"] != "success"}
    assert not failed, failed
    assert [r["run_type"] for d, r in sorted(runs.items())][1:] == ["backfill"] * (len(DATES) - 1)

    ingested = results(env, "ingest")
    # the first backfilled date also ingests the 29 days its 90-day window holds beyond the 60 of the triggered run
    assert len(ingested[DATES[1]]["ingested"]) == 29 + 1
    assert [ingested[d]["ingested"] for d in DATES[2:]] == [[str(d - dt.timedelta(days=1))] for d in DATES[2:]], \
        "each later date ingests its own new day, in date order"
    blessings = {d: sorted(Path(r["blessing"]).parent.glob("blessing*.json")) for d, r in results(env, "evaluate").items()}
    pushes = results(env, "push")
    assert all(len(files) == 1 for files in blessings.values()), blessings
    # the triggered run (DATES[0]) pushed version 1; each backfilled date pushes the next, in date order
    assert [(d, p["pushed"], p["version"]) for d, p in sorted(pushes.items())] == [
        (d, True, i + 1) for i, d in enumerate(DATES)], pushes
    assert serving.versions(root / "serving" / "taxi_tips") == list(range(1, len(DATES) + 1))


def test_re_running_a_date_replaces_its_artifacts_and_pushes_no_second_version(airflow):
    api, root, env = airflow
    day = DATES[3]
    before = {step: results(env, step)[day] for step in ("ingest", "push")}
    kept = {e["span"]: e["ingest_id"] for e in before["ingest"]["spans"]}
    ingested_at = (Path(before["ingest"]["examples"]) / "result.json").stat().st_mtime
    # one backfill per DAG at a time: the scheduler marks the last one complete (every 30 s) first
    api.wait(lambda: all(b["completed_at"] for b in api.call("GET", "/api/v2/backfills?dag_id=taxi_tips")["backfills"]),
             "the 7-day backfill to be marked complete", 120)
    backfill(env, day, day, "--reprocess-behavior", "completed")  # clears the date's run: it runs again

    def rerun_done():
        run = next(r for r in api.runs() if r["logical_date"][:10] == str(day))
        again = (Path(before["ingest"]["examples"]) / "result.json").stat().st_mtime > ingested_at
        return run if again and run["state"] in ("success", "failed") else None

    run = api.wait(rerun_done, f"the re-run of {day}")
    assert run["state"] == "success", task_states(api, run["dag_run_id"])
    assert task_states(api, run["dag_run_id"])["push"] == "skipped"
    after = results(env, "push")[day]
    assert (after["pushed"], after["version"]) == (False, before["push"]["version"])
    assert after["reason"] == f"span {day - dt.timedelta(days=1)} already pushed as version {before['push']['version']}"
    again = results(env, "ingest")[day]
    assert again["ingested"] == [] and {e["span"]: e["ingest_id"] for e in again["spans"]} == kept, "the same spans"
    assert serving.versions(root / "serving" / "taxi_tips") == list(range(1, len(DATES) + 1))
