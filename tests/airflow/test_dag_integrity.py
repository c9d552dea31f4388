"""dags/ parses fast, without TensorFlow, into the expected DAGs; a bad config is an import error
that names the field."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from pipeline_lib.artifacts import STEPS

# the anomaly gates: between validate and transform, and (the label) between transform and train
TASKS = ["wait_for_data", *STEPS[:2], "file_anomalies", "wait_for_anomalies", STEPS[2],
         "file_transform_anomalies", "wait_for_transform_anomalies", *STEPS[3:]]

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
# Airflow's own parse time per file (dag_processing.last_duration), without Airflow's import:
# the slowest file (the first pays for importing the platform's operators)
seconds = max(s.duration.total_seconds() for s in bag.dagbag_stats)
print(json.dumps({"seconds": seconds, "errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "dags": {d.dag_id: [t.task_id for t in d.topological_sort()] for d in bag.dags.values()},
                  "schedules": {d.dag_id: d.schedule for d in bag.dags.values()},
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def parse_dags(env_overrides: dict | None = None) -> dict:
    import os

    env = {**os.environ, **(env_overrides or {})}
    proc = subprocess.run([sys.executable, "-c", PARSE, str(REPO / "dags")], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


EXAMPLES = ["taxi_fare", "taxi_tips", "taxi_trip_length"]
MAINTENANCE = {"platform_maintenance": ["retention", "deadline", "task_logs"]}


def test_dags_parse_fast_without_tensorflow_into_the_pipeline_dags():
    parsed = parse_dags()
    assert parsed["errors"] == {}
    assert parsed["dags"] == {**{name: TASKS for name in EXAMPLES}, **MAINTENANCE}
    assert parsed["schedules"] == {**{name: "@weekly" for name in EXAMPLES}, "platform_maintenance": "@daily"}, \
        "the sample is sparse: a span is a week"
    assert parsed["tensorflow"] is False
    assert parsed["seconds"] < 2.0, f"parsing a file of dags/ took {parsed['seconds']:.2f} s"


def test_each_task_depends_on_the_one_before_and_nothing_else():
    from pipeline_ops.dag_factory import build_dag

    dag = build_dag(REPO / "pipelines" / "taxi_tips" / "pipeline.yaml")
    for before, after in itertools.pairwise(TASKS):
        assert dag.get_task(after).upstream_task_ids == {before}
    assert dag.get_task(TASKS[0]).upstream_task_ids == set()
    sensor = dag.get_task("wait_for_anomalies")
    assert sensor.mode == "reschedule" and sensor.timeout == 86400 and sensor.poke_interval == 300
    assert dag.max_active_runs == 1 and not dag.catchup


def _break(folder, how: str) -> str:
    """Break one pipeline's folder; returns what the import error must say."""
    config = folder / "pipeline.yaml"
    if how == "config":
        config.write_text(config.read_text().replace("window_days: 1461", "window_days: -3"))
        return f"{config}: invalid pipeline config\n  field 'source.window_days': Input should be greater than 0"
    if how == "module":
        (folder / "taxi_trip_length.py").unlink()
        return f"field 'module.file': no such file {folder / 'taxi_trip_length.py'}"
    schema = folder / "schema.pbtxt"
    schema.write_text(schema.read_text().replace('name: "trip_miles"', 'name: "trip_mile"'))
    return f"field 'label.raw_columns': 'trip_miles' has no feature in the schema {schema}"


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("how", ["config", "module", "schema"])
def test_a_broken_pipeline_is_its_own_import_error_and_the_others_still_parse(tmp_path, how):
    """taxi_trip_length broken (config, module file or schema), taxi_tips and a pipeline without a
    DAG file of its own (built by dags/ml_pipelines.py) intact: `airflow dags list-import-errors`
    names dags/taxi_trip_length.py with the file and field, and both others parse."""
    import shutil

    from pipeline_fixtures import write_pipeline

    write_pipeline(tmp_path)
    write_pipeline(tmp_path, {"name": "taxi_other"})
    shutil.copytree(REPO / "pipelines" / "taxi_trip_length", tmp_path / "taxi_trip_length")
    message = _break(tmp_path / "taxi_trip_length", how)
    env = {"PIPELINES_DIR": str(tmp_path)}
    parsed = parse_dags(env)
    assert sorted(parsed["dags"]) == ["platform_maintenance", "taxi_other", "taxi_tips"]
    listed = subprocess.run([str(REPO / ".venv-airflow" / "bin" / "airflow"), "dags", "list-import-errors", "--local",
                             "-o", "json"], env={**os.environ, **env}, capture_output=True, text=True, check=False)
    assert listed.returncode == 1, "it exits 1 when there are import errors"
    (error,) = json.loads(listed.stdout.strip().splitlines()[-1])
    assert error["filepath"].endswith("dags/taxi_trip_length.py")
    assert message in error["error"]


@pytest.mark.usefixtures("airflow_db")
def test_a_logical_date_before_start_date_fails_the_run_saying_why(isolated):
    """Airflow creates no task for a date before the tasks' start_date (the run would end
    "success" having done nothing): the first task runs and fails it, naming the dates."""
    from pipeline_fixtures import write_pipeline
    from pipeline_ops.dag_factory import build_dag

    config_path = write_pipeline(isolated / "pipelines")  # start_date 2017-01-01
    run = build_dag(config_path).test(logical_date=dt.datetime(2016, 12, 1, tzinfo=dt.UTC))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert states == {task: "failed" if task == "wait_for_data" else "upstream_failed" for task in TASKS}
    assert not (isolated / "artifacts" / "taxi_tips").exists(), "no step ran"


def test_the_refusal_names_the_dates_and_the_config():
    from pipeline_ops.dag_factory import build_dag

    path = REPO / "pipelines" / "taxi_tips" / "pipeline.yaml"
    refuse = build_dag(path).get_task("wait_for_data")._pre_execute_hook
    with pytest.raises(Exception, match=rf"logical date 2016-12-01 is outside this pipeline's start_date 2017-01-01 \({path}\)"):
        refuse({"logical_date": dt.datetime(2016, 12, 1, tzinfo=dt.UTC)})
    refuse({"logical_date": dt.datetime(2017, 1, 1, tzinfo=dt.UTC)})  # on start_date: runs
