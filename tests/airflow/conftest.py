"""Airflow-environment tests: a private AIRFLOW_HOME with a migrated SQLite database, the repo's
dags/ and plugins/, and private artifact and serving roots. Set before Airflow is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="airflow-test-"))
os.environ.update({
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
})
sys.path[:0] = [str(REPO / "plugins"), str(REPO / "tests")]


@pytest.fixture(scope="session")
def airflow_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Private artifact store, model repository, warehouse copy and anomaly tracker for one test."""
    from pipeline_fixtures import warehouse_copy

    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("PIPELINE_SERVING_ROOT", str(tmp_path / "serving"))
    monkeypatch.setenv("PIPELINE_WAREHOUSE", str(warehouse_copy(tmp_path)))
    monkeypatch.setenv("PIPELINE_ANOMALY_DB", f"sqlite:///{tmp_path / 'anomalies.db'}")
    return tmp_path
