"""`python -m pipeline_lib.warehouse load`: CSV and Parquet files of real taxi rows into a DuckDB
warehouse, replaced or appended, in one transaction."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest
from pipeline_fixtures import warehouse_copy

from pipeline_lib.warehouse import LoadError, load

EXPORT = ("SELECT * REPLACE (strftime(to_timestamp(trip_start_timestamp), '%Y-%m-%d %H:%M:%S') AS trip_start_timestamp) "
          "FROM taxi_trips WHERE trip_start_timestamp {} ORDER BY trip_start_timestamp")
CUT = 1420070400  # 2015-01-01


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Real taxi rows before 2015 as CSV and from 2015 on as Parquet, timestamps as ISO strings."""
    tmp = tmp_path_factory.mktemp("load")
    with duckdb.connect(str(warehouse_copy(tmp)), read_only=True) as con:
        con.execute(f"COPY ({EXPORT.format(f'< {CUT}')}) TO '{tmp / 'early.csv'}' (HEADER)")
        con.execute(f"COPY ({EXPORT.format(f'>= {CUT}')}) TO '{tmp / 'late.parquet'}' (FORMAT parquet)")
        counts = con.execute(f"SELECT count(*) FILTER (trip_start_timestamp < {CUT}), count(*) FROM taxi_trips").fetchone()
    return tmp, counts


def _types(db, table):
    with duckdb.connect(str(db), read_only=True) as con:
        return dict(con.execute(f"SELECT column_name, data_type FROM information_schema.columns "
                                f"WHERE table_name = '{table}'").fetchall())


def test_csv_then_parquet_appended_holds_every_row_with_inferred_types(files, tmp_path):
    folder, (early, total) = files
    db = tmp_path / "w.duckdb"
    assert load(folder / "early.csv", "trips", database=db, timestamp_column="trip_start_timestamp") == early
    types = _types(db, "trips")
    assert types["trip_start_timestamp"] == "TIMESTAMP"
    assert types["fare"] == "DOUBLE" and types["payment_type"] == "VARCHAR" and types["trip_start_hour"] == "BIGINT"
    assert load(folder / "late.parquet", "trips", database=db, timestamp_column="trip_start_timestamp",
                append=True) == total
    with duckdb.connect(str(db), read_only=True) as con:
        first, last = con.execute("SELECT min(trip_start_timestamp), max(trip_start_timestamp) FROM trips").fetchone()
    assert (first.year, last.year) == (2013, 2016)


def test_replace_swaps_the_table_and_keeps_the_others(files, tmp_path):
    folder, (early, total) = files
    db = tmp_path / "w.duckdb"
    load(folder / "early.csv", "trips", database=db, timestamp_column="trip_start_timestamp")
    load(folder / "early.csv", "other", database=db, timestamp_column="trip_start_timestamp")
    assert load(folder / "late.parquet", "trips", database=db, timestamp_column="trip_start_timestamp") == total - early
    assert load(folder / "early.csv", "other", database=db, timestamp_column="trip_start_timestamp", append=True) == 2 * early


def test_epoch_seconds_become_timestamps(tmp_path):
    csv = tmp_path / "e.csv"
    csv.write_text("ts,x\n1420070400,1.5\n1420074000,2.5\n")
    db = tmp_path / "w.duckdb"
    load(csv, "t", database=db, timestamp_column="ts", timestamp_unit="epoch_seconds")
    with duckdb.connect(str(db), read_only=True) as con:
        assert [str(r[0]) for r in con.execute("SELECT ts FROM t ORDER BY ts").fetchall()] == \
            ["2015-01-01 00:00:00", "2015-01-01 01:00:00"]


def test_a_bad_append_leaves_the_table_as_it_was(files, tmp_path):
    folder, (early, _) = files
    db = tmp_path / "w.duckdb"
    load(folder / "early.csv", "trips", database=db, timestamp_column="trip_start_timestamp")
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("trip_start_timestamp,fare\n2016-01-01 00:00:00,3.0\n")
    with pytest.raises(LoadError, match=r"missing \[.*'company'"):
        load(narrow, "trips", database=db, timestamp_column="trip_start_timestamp", append=True)
    broken = tmp_path / "broken.csv"  # a type the column cannot hold, on the last row
    broken.write_text((folder / "early.csv").read_text().rstrip("\n").rsplit("\n", 1)[0] + "\n"
                      + ",".join(["x"] * len(_types(db, "trips"))) + "\n")
    with pytest.raises(duckdb.Error):
        load(broken, "trips", database=db, timestamp_column="trip_start_timestamp", append=True)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM trips").fetchone()[0] == early


def test_the_command_names_what_is_wrong(files, tmp_path):
    folder, _ = files
    run = subprocess.run([sys.executable, "-m", "pipeline_lib.warehouse", "load", str(folder / "early.csv"),
                          "--table", "trips", "--timestamp-column", "pickup_time", "--database", str(tmp_path / "w.duckdb")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert "'pickup_time' is not a column of the file" in run.stderr and "trip_start_timestamp" in run.stderr
    assert not (tmp_path / "w.duckdb").exists()
    ok = subprocess.run([sys.executable, "-m", "pipeline_lib.warehouse", "load", str(folder / "late.parquet"),
                         "--table", "trips", "--timestamp-column", "trip_start_timestamp", "--database",
                         str(tmp_path / "w.duckdb")], capture_output=True, text=True, check=True)
    assert "table trips now holds" in ok.stdout
