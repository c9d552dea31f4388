"""dags/ parses fast, without TensorFlow, into the expected DAGs; a bad config is an import error
that names the field."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

from pipeline_lib.artifacts import STEPS

# the anomaly gates: between validate and transform, and (the label) between transform and train
TASKS = ["wait_for_data", *STEPS[:2], "file_anomalies", "wait_for_anomalies", STEPS[2],
         "file_transform_anomalies", "wait_for_transform_anomalies", *STEPS[3:]]

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
# Airflow's own parse time per file (dag_processing.last_duration), without Airflow's import
seconds = sum(s.duration.total_seconds() for s in bag.dagbag_stats)
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


def test_dags_parse_fast_without_tensorflow_into_the_pipeline_dags():
    parsed = parse_dags()
    assert parsed["errors"] == {}
    assert parsed["dags"] == {"taxi_tips": TASKS}
    assert parsed["schedules"] == {"taxi_tips": "@daily"}
    assert parsed["tensorflow"] is False
    assert parsed["seconds"] < 2.0, f"parsing dags/ took {parsed['seconds']:.2f} s"


def test_each_task_depends_on_the_one_before_and_nothing_else():
    from pipeline_ops.dag_factory import build_dag

    dag = build_dag(REPO / "pipelines" / "taxi_tips" / "pipeline.yaml")
    for before, after in zip(TASKS, TASKS[1:]):
        assert dag.get_task(after).upstream_task_ids == {before}
    assert dag.get_task(TASKS[0]).upstream_task_ids == set()
    sensor = dag.get_task("wait_for_anomalies")
    assert sensor.mode == "reschedule" and sensor.timeout == 86400 and sensor.poke_interval == 300
    assert dag.max_active_runs == 1 and not dag.catchup


def test_a_bad_config_is_an_import_error_naming_the_field(tmp_path):
    from pipeline_fixtures import write_pipeline

    write_pipeline(tmp_path, {"source": {"window_days": -3}})
    parsed = parse_dags({"PIPELINES_DIR": str(tmp_path)})
    assert parsed["dags"] == {}
    (error,) = parsed["errors"].values()
    assert "field 'source.window_days': Input should be greater than 0" in error
