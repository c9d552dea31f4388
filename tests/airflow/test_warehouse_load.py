"""`python -m pipeline_lib.warehouse load`: CSV and Parquet files of real taxi rows into a DuckDB
warehouse, replaced or appended, in one transaction; a CSV's words for a missing value."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest
from pipeline_fixtures import warehouse_copy

from pipeline_lib.warehouse import MISSING_MARKERS, LoadError, load

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
    loaded = load(folder / "early.csv", "trips", database=db, timestamp_column="trip_start_timestamp")
    assert loaded.rows == early and loaded.nulled == [] and loaded.warnings == []
    types = _types(db, "trips")
    assert {c: kind for c, (kind, _) in loaded.columns.items()} == types
    assert types["trip_start_timestamp"] == "TIMESTAMP"
    assert types["fare"] == "DOUBLE" and types["payment_type"] == "VARCHAR" and types["trip_start_hour"] == "BIGINT"
    assert load(folder / "late.parquet", "trips", database=db, timestamp_column="trip_start_timestamp",
                append=True).rows == total
    with duckdb.connect(str(db), read_only=True) as con:
        first, last = con.execute("SELECT min(trip_start_timestamp), max(trip_start_timestamp) FROM trips").fetchone()
    assert (first.year, last.year) == (2013, 2016)


def test_replace_swaps_the_table_and_keeps_the_others(files, tmp_path):
    folder, (early, total) = files
    db = tmp_path / "w.duckdb"
    load(folder / "early.csv", "trips", database=db, timestamp_column="trip_start_timestamp")
    load(folder / "early.csv", "other", database=db, timestamp_column="trip_start_timestamp")
    assert load(folder / "late.parquet", "trips", database=db, timestamp_column="trip_start_timestamp").rows == total - early
    assert load(folder / "early.csv", "other", database=db, timestamp_column="trip_start_timestamp",
                append=True).rows == 2 * early


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


PENGUINS = """species,island,bill_length_mm,body_mass_g,sex,year,measured
Adelie,Torgersen,39.1,3750,male,2007,2007-11-11
Adelie,Torgersen,NA,NA,NA,2007,NA
Gentoo,Biscoe,46.1,4500,female,2008,2008-11-09
Chinstrap,Dream,N/A,,female,2009,2009-11-21
"""


def _penguins(tmp_path, **kwargs):
    """A few rows as the Palmer penguins CSV writes them: NA (and here N/A, an empty cell) for missing."""
    csv = tmp_path / "penguins.csv"
    csv.write_text(PENGUINS)
    db = tmp_path / "w.duckdb"
    loaded = load(csv, "penguins", database=db, timestamp_column="year", timestamp_unit="epoch_seconds", **kwargs)
    with duckdb.connect(str(db), read_only=True) as con:
        return loaded, con.execute("SELECT * FROM penguins ORDER BY species, bill_length_mm").fetchall()


def test_missing_value_words_are_null_where_the_column_is_otherwise_numbers_or_dates(tmp_path):
    loaded, rows = _penguins(tmp_path)
    kinds = {c: kind for c, (kind, _) in loaded.columns.items()}
    assert kinds["bill_length_mm"] == "DOUBLE" and kinds["body_mass_g"] == "BIGINT" and kinds["measured"] == "DATE"
    assert {c: n for c, (_, n) in loaded.columns.items()} == {
        "species": 0, "island": 0, "bill_length_mm": 2, "body_mass_g": 2, "sex": 0, "year": 0, "measured": 1}
    assert loaded.nulled == ["bill_length_mm", "body_mass_g", "measured"] and loaded.markers == list(MISSING_MARKERS)
    # sex is text anyway: its NA could be a value (a country code would be), so it stays, with a warning
    assert [r[4] for r in rows] == ["male", "NA", "female", "female"]
    assert loaded.warnings == [("column 'sex' keeps 1 cell(s) ['NA'] as text, its other values being text too "
                               "(they may be values, e.g. a code): if they mean missing, load with --null NA")]


def test_null_words_given_are_null_in_every_column_and_a_column_text_only_because_of_others_is_named(tmp_path):
    loaded, rows = _penguins(tmp_path, nulls=["NA"])
    assert [r[4] for r in rows] == ["male", None, "female", "female"]
    kinds = {c: kind for c, (kind, _) in loaded.columns.items()}
    assert kinds["body_mass_g"] == "BIGINT" and kinds["measured"] == "DATE" and kinds["bill_length_mm"] == "VARCHAR"
    assert loaded.warnings == [("column 'bill_length_mm' is text (VARCHAR) only because of 1 cell(s) ['N/A']: "
                               "load with --null N/A to read them as missing and the column as numbers")]
    loaded, rows = _penguins(tmp_path, nulls=["NA", "N/A"])
    assert loaded.columns["bill_length_mm"] == ("DOUBLE", 2) and loaded.warnings == []


def test_the_command_prints_each_columns_type_and_warns(tmp_path):
    csv = tmp_path / "penguins.csv"
    csv.write_text(PENGUINS)
    run = subprocess.run([sys.executable, "-m", "pipeline_lib.warehouse", "load", str(csv), "--table", "penguins",
                          "--timestamp-column", "year", "--timestamp-unit", "epoch_seconds",
                          "--database", str(tmp_path / "w.duckdb")], capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert lines[0].startswith("table penguins now holds 4 rows")
    assert lines[1].split() == ["column", "type", "nulls"]
    assert lines[4].split() == ["bill_length_mm", "DOUBLE", "2"] and lines[6].split() == ["sex", "VARCHAR", "0"]
    assert "read as missing: NA, N/A" in run.stdout and "in bill_length_mm, body_mass_g, measured" in run.stdout
    assert lines[-1].startswith("warning: column 'sex' keeps 1 cell(s) ['NA'] as text")
