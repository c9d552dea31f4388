"""Where things live. Embedded defaults sit under the repository's `.data/`; production sets
the environment variables (a Postgres/GCS/BigQuery deployment changes configuration, not code)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# An SQLite file has one writer at a time, and sqlite3 waits 5 s for another writer's lock by
# default: too short on two busy cores. The anomaly tracker's file and Airflow's embedded metadata
# database (pipeline_lib/airflow_sqlite.py) wait this long instead.
SQLITE_LOCK_WAIT_S = 30


def _path(var: str, default: Path) -> Path:
    return Path(os.environ.get(var) or default)


def pipelines_dir() -> Path:
    """Folder with one sub-folder per pipeline holding its `pipeline.yaml`."""
    return _path("PIPELINES_DIR", REPO_ROOT / "pipelines")


def artifact_root() -> Path:
    return _path("PIPELINE_ARTIFACT_ROOT", REPO_ROOT / ".data" / "artifacts")


def warehouse_path() -> Path:
    """The local DuckDB warehouse (the embedded stand-in for BigQuery)."""
    return _path("PIPELINE_WAREHOUSE", REPO_ROOT / ".data" / "warehouse.duckdb")


def serving_root() -> Path:
    """Model repository in TF Serving layout: <serving_root>/<model>/<version>/."""
    return _path("PIPELINE_SERVING_ROOT", REPO_ROOT / ".data" / "serving")


def ml_python() -> Path:
    """The ML environment's interpreter, which runs every step."""
    return _path("PIPELINE_ML_PYTHON", REPO_ROOT / ".venv-ml" / "bin" / "python")


def anomaly_db_url() -> str:
    """The anomaly tracker's database (a SQLAlchemy URL, e.g. postgresql+psycopg2://...)."""
    return os.environ.get("PIPELINE_ANOMALY_DB") or f"sqlite:///{REPO_ROOT / '.data' / 'anomalies.db'}"


def runtime_dir() -> Path:
    """Where the local launcher's warm ML process listens (Unix sockets: keep the path short)."""
    return _path("PIPELINE_RUNTIME_DIR", REPO_ROOT / ".data" / "run")


def fork_server() -> bool:
    """Local steps fork from a warm ML process (pipeline_lib/fork_server.py) unless set to 0."""
    return os.environ.get("PIPELINE_FORK_SERVER", "1") != "0"


def airflow_retention_days() -> int:
    """How long Airflow's own records are kept: the maintenance DAG's `task_logs` removes older task
    logs (scripts/airflow_db_clean.sh reads the same variable for the metadata database)."""
    return int(os.environ.get("PIPELINE_AIRFLOW_RETENTION_DAYS", "30"))
