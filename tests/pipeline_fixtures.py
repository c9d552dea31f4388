"""Test pipelines: the real taxi_tips config with a few fields overridden, written to a tmp folder.

Shared by both test suites (plain yaml, no Airflow or TensorFlow imports)."""

from __future__ import annotations

import copy
import datetime as dt
import shutil
from pathlib import Path

import yaml

from pipeline_lib import settings

TAXI_DIR = settings.REPO_ROOT / "pipelines" / "taxi_tips"


def merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_pipeline(pipelines_dir: Path, overrides: dict | None = None, source: Path = TAXI_DIR) -> Path:
    """Copy an example pipeline (default taxi_tips; module and curated schema) into
    `pipelines_dir/<name>/` with `overrides` deep-merged into its config."""
    original = yaml.safe_load((source / "pipeline.yaml").read_text())
    raw = merge(original, overrides or {})
    target = pipelines_dir / raw["name"]
    target.mkdir(parents=True, exist_ok=True)
    module = [source / original["module"]["file"]] if original.get("module") else []
    for name in (*module, source / "schema.pbtxt"):
        shutil.copy(name, target / name.name)
    path = target / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def warehouse_copy(tmp_dir: Path) -> Path:
    """A private copy of the loaded warehouse, so a test may add rows."""
    source = settings.warehouse_path()
    if not source.exists():
        raise RuntimeError(f"no warehouse at {source}: run `make data` first")
    target = tmp_dir / "warehouse.duckdb"
    shutil.copy(source, target)
    return target


DENSE_FIRST_DAY = dt.date(2016, 1, 1)


def dense_copy(folder: Path, name: str) -> Path:
    """A copy of the warehouse with its dense daily table (`dense_table`), as `folder/<name>.duckdb`."""
    database = folder / f"{name}.duckdb"
    shutil.copy(settings.warehouse_path(), database)
    dense_table(database)
    return database


def dense_table(database: Path, table: str = "taxi_daily", rows_per_day: int = 250,
                first_day: dt.date = DENSE_FIRST_DAY) -> int:
    """The real taxi rows in time order as a dense daily table: `rows_per_day` rows a day from
    `first_day` (60 days at 250), each day's rows those of about 24 consecutive days of the sample,
    their time of day kept (their other columns as they were). Returns the number of days."""
    import duckdb

    start = int(dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC).timestamp())
    with duckdb.connect(str(database)) as con:
        con.execute(f"""CREATE OR REPLACE TABLE {table} AS SELECT * REPLACE (
                            {start} + (row_number() OVER (ORDER BY trip_start_timestamp) - 1) // {rows_per_day} * 86400
                            + trip_start_timestamp % 86400 AS trip_start_timestamp) FROM taxi_trips""")
        rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return -(-rows // rows_per_day)
