"""Daily spans over weeks of runs, on the real taxi rows made dense (pipeline_fixtures.dense_table:
250 rows a day): each span ingested, validated and analyzed once; clean consecutive days block
nothing; a bad day inside a long window is filed and blocks; a date run again rebuilds its own span
only; a span the source changed is ingested and checked again; the analyzer cache gives the window
path's transform graph."""

from __future__ import annotations

import datetime as dt
import filecmp
import json
import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import run_step
from pipeline_fixtures import DENSE_FIRST_DAY, dense_copy

from pipeline_lib import analyzer_cache, spans

WINDOW = 28
FIRST_RUN = DENSE_FIRST_DAY + dt.timedelta(days=WINDOW + 1)  # its window: 28 full days of the table
BAD = FIRST_RUN  # the day the second run adds


def daily(make_config, name: str, database: Path):
    return make_config({"schedule": "@daily", "start_date": str(DENSE_FIRST_DAY),
                        "source": {"table": "taxi_daily", "database": str(database), "window_days": WINDOW}}, name=name)


def run_day(config, day: dt.date, steps=("ingest", "validate")) -> dict:
    out = {"ingest": run_step(config, "ingest", span=day, span_date=day)}
    if "validate" in steps:
        out["validate"] = run_step(config, "validate", span=day, examples=out["ingest"]["examples"])
    if "transform" in steps:
        out["transform"] = run_step(config, "transform", span=day, examples=out["ingest"]["examples"],
                                    schema=out["validate"]["schema"])
    return out


def blocking(result: dict) -> list[tuple[str, str]]:
    return [(a["feature"], a["kind"]) for a in result["anomalies"] if a["severity"] == "blocking"]


@pytest.fixture(scope="module")
def history(make_config, tmp_path_factory):
    """A first run over 28 dense days (validated, analyzed), for the bad days to follow."""
    folder = tmp_path_factory.mktemp("dense")
    config = daily(make_config, "dense_history", dense_copy(folder, "history"))
    return config, run_day(config, FIRST_RUN, ("ingest", "validate", "transform")), folder


def test_clean_consecutive_days_give_no_blocking_finding(make_config, tmp_path):
    config = daily(make_config, "dense_clean", dense_copy(tmp_path, "clean"))
    first = run_day(config, FIRST_RUN)
    assert len(first["ingest"]["ingested"]) == WINDOW and blocking(first["validate"]) == []
    warnings = 0
    for day in range(1, 22):  # 21 daily runs, each a new span against the 7 before it
        result = run_day(config, FIRST_RUN + dt.timedelta(days=day))
        assert result["ingest"]["ingested"] == [result["ingest"]["span"]], "a run ingests only its new day"
        assert result["validate"]["computed"] == result["validate"]["checked"] == [result["ingest"]["span"]]
        assert blocking(result["validate"]) == [], (day, result["validate"]["anomalies"])
        warnings += len(result["validate"]["anomalies"])
    assert warnings <= 3, "clean days warn rarely"


FAULTS = {  # name -> (SQL on the bad day's rows, what must block)
    "label collapse": ("UPDATE taxi_daily SET tips = 0 WHERE {day}", ("big_tipper", "LABEL_SINGLE_CLASS")),
    "feature mostly missing": ("UPDATE taxi_daily SET trip_miles = NULL WHERE {day} AND hash(trip_start_timestamp, fare) % 10 < 6",
                               ("trip_miles", "FEATURE_TYPE_LOW_FRACTION_PRESENT")),
    "fare x8 inside the schema's range": ("UPDATE taxi_daily SET fare = least(fare * 8, 999) WHERE {day}", ("fare", "DRIFT")),
    "a third of the day loaded twice": (("INSERT INTO taxi_daily SELECT * FROM taxi_daily WHERE {day} "
                                        "AND hash(trip_start_timestamp, fare) % 3 = 0"), ("(data)", "DUPLICATE_ROWS")),
    "a third of the day's rows": ("DELETE FROM taxi_daily WHERE {day} AND hash(trip_start_timestamp, fare) % 3 <> 0",
                                  ("(data)", "VOLUME_DROP")),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_bad_day_inside_a_long_window_is_filed_and_blocks(history, make_config, fault):
    """The next day's run after 28 clean days adds the bad day: its checks find the fault, blocking.
    The same fault spread over the window is what the window's checks could not see."""
    sql, expected = FAULTS[fault]
    base, _first, folder = history
    database = folder / f"{fault.replace(' ', '_')}.duckdb"
    shutil.copy(base.source.database_path(), database)
    start = int(dt.datetime.combine(BAD, dt.time(), tzinfo=dt.UTC).timestamp())
    with duckdb.connect(str(database)) as con:
        con.execute(sql.format(day=f"trip_start_timestamp >= {start} AND trip_start_timestamp < {start + 86400}"))
    config = daily(make_config, "dense_" + re.sub(r"\W+", "_", fault)[:24], database)
    shutil.copytree(spans.root(base.name), spans.root(config.name))  # the history, as the first run left it
    steps = ("ingest", "validate", "transform") if expected[1].startswith("LABEL") else ("ingest", "validate")
    result = run_day(config, BAD + dt.timedelta(days=1), steps)
    assert result["ingest"]["ingested"] == [BAD.isoformat()], "only the bad day is new"
    found = blocking(result["validate"]) + blocking(result.get("transform", {"anomalies": []}))
    assert expected in found, result
    finding = next(a for a in result["validate"]["anomalies"] + result.get("transform", {}).get("anomalies", [])
                   if (a["feature"], a["kind"]) == expected)
    assert finding["spans"] == [BAD.isoformat()] and finding["description"].startswith(f"span {BAD}")


def test_re_running_a_date_rebuilds_its_own_span_only(history):
    config, first, _ = history
    kept = {e["span"]: e["ingest_id"] for e in first["ingest"]["spans"]}
    again = run_step(config, "ingest", span=FIRST_RUN, span_date=FIRST_RUN)
    assert again["ingested"] == [] and {e["span"]: e["ingest_id"] for e in again["spans"]} == kept
    rebuilt = run_step(config, "ingest", span=FIRST_RUN, span_date=FIRST_RUN, reingest=True)
    newest = first["ingest"]["span"]
    assert rebuilt["ingested"] == rebuilt["changed"] == [newest]
    assert {e["span"]: e["ingest_id"] for e in rebuilt["spans"] if e["span"] != newest} == \
        {s: i for s, i in kept.items() if s != newest}
    validated = run_step(config, "validate", span=FIRST_RUN, examples=rebuilt["examples"])
    assert validated["computed"] == validated["checked"] == [newest] and blocking(validated) == []


def test_a_span_the_source_changed_is_ingested_and_checked_again(make_config, tmp_path):
    database = dense_copy(tmp_path, "changed")
    config = daily(make_config, "dense_changed", database)
    first = run_day(config, FIRST_RUN)
    old = first["ingest"]["spans"][10]
    start = int(dt.datetime.fromisoformat(old["span"]).replace(tzinfo=dt.UTC).timestamp())
    with duckdb.connect(str(database)) as con:  # a late correction of one old row
        con.execute(f"UPDATE taxi_daily SET fare = fare + 1 WHERE trip_start_timestamp = "
                    f"(SELECT min(trip_start_timestamp) FROM taxi_daily WHERE trip_start_timestamp >= {start})")
    second = run_day(config, FIRST_RUN + dt.timedelta(days=1))
    assert second["ingest"]["changed"] == [old["span"]]
    assert second["ingest"]["ingested"] == [old["span"], second["ingest"]["span"]]
    assert second["validate"]["checked"] == [old["span"], second["ingest"]["span"]], "a changed span: every check"


def test_the_analyzer_cache_reads_the_new_day_and_gives_the_window_paths_graph(history, make_config, monkeypatch):
    """Daily runs read the new span (and, in the first window, what remains of a first-run unit
    the window's start has entered) and merge the cached rest; the graph equals the one analyzing
    the window as one dataset (tf.Transform's path without a cache): the same vocabularies and
    bucket boundaries, z-scores to float rounding."""
    import tensorflow_transform as tft

    config, first, _ = history
    assert first["transform"]["analysis"]["read_spans"] == WINDOW and first["transform"]["analysis"]["read_units"] == 4
    reads = []
    for day in range(1, 4):
        date = FIRST_RUN + dt.timedelta(days=day)
        result = run_day(config, date, ("ingest", "validate", "transform"))["transform"]
        reads.append(result["analysis"]["read_spans"])
        assert result["analysis"]["read_spans"] + result["analysis"]["cached_spans"] == WINDOW
    assert max(reads) <= WINDOW // (analyzer_cache.MAX_NEW_UNITS - 1) + 1 and reads[-1] == 1, reads

    monkeypatch.setattr(analyzer_cache, "MAX_NEW_UNITS", 1)
    whole = daily(make_config, "dense_whole", config.source.database_path())  # its own spans, no cache
    window = run_day(whole, date, ("ingest", "validate", "transform"))["transform"]
    assert window["analysis"] == {"cached_units": 0, "cached_spans": 0, "read_units": 1, "read_spans": WINDOW,
                                  "read_rows": window["rows"]["train"]}
    cached, plain = (Path(r["transform_graph"]) / "transform_fn" / "assets" for r in (result, window))
    assert sorted(p.name for p in cached.iterdir()) == sorted(p.name for p in plain.iterdir())
    assert all(filecmp.cmp(cached / f.name, plain / f.name, shallow=False) for f in plain.iterdir()), "vocabularies"
    from pipeline_lib import transformed

    outputs = []
    for graph in (result["transform_graph"], window["transform_graph"]):
        apply = transformed.transform(tft.TFTransformOutput(graph))
        batch = next(iter(transformed.records(spans.files(result["spans"][-3:], "train"), 1000)))
        outputs.append({k: v.numpy() for k, v in apply(batch).items()})
    for key in outputs[1]:
        np.testing.assert_allclose(outputs[0][key], outputs[1][key], rtol=1e-5, atol=1e-5, err_msg=key)
    assert json.loads(Path(result["examples"], "result.json").read_text())["excluded"] == []
