"""`accept`: the data changed and that is fine. The implied schema change is made to the pipeline's
schema file by pipeline_lib.schema_changes in the ML environment (where the schema protos live),
then the record is marked accepted with the diff and who accepted it."""

from __future__ import annotations

import json
import os
import subprocess

from pipeline_lib import settings
from pipeline_lib.anomalies.models import OPEN
from pipeline_lib.anomalies.tracker import Tracker, TrackerError
from pipeline_lib.config import PipelineConfig, discover, load_config


def config_named(pipeline: str) -> PipelineConfig:
    for path in discover():
        config = load_config(path)
        if config.name == pipeline:
            return config
    raise TrackerError(f"no pipeline config named {pipeline!r} under {settings.pipelines_dir()}")


def accept(tracker: Tracker, anomaly_id: int, who: str, note: str | None = None) -> dict:
    """Apply the schema change, then record the acceptance; returns the record and the diff."""
    record = tracker.get(anomaly_id)
    if record["status"] not in OPEN:
        raise TrackerError(f"anomaly #{anomaly_id} is {record['status']}; only open or acknowledged ones can be accepted")
    if not who:
        raise TrackerError("say who accepts it (--by / the logged-in user)")
    config = config_named(record["pipeline"])
    cmd = [str(settings.ml_python()), "-m", "pipeline_lib.schema_changes", "--schema", str(config.schema_path()),
           "--feature", record["feature"], "--kind", record["kind"]]
    statistics = record["runs"][-1]["statistics"] if record["runs"] else None
    if statistics:
        cmd += ["--statistics", statistics]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the Airflow env's paths stay here
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    try:
        change = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise TrackerError(f"schema change failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}") from None
    if "error" in change:
        raise TrackerError(f"cannot accept anomaly #{anomaly_id}: {change['error']}")
    return {**tracker.accept(anomaly_id, who, change["diff"], note), "diff": change["diff"]}
