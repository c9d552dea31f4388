"""How validation does on real taxi spans: the drift of clean spans (the noise the levels must clear)
and what each fault on a new day inside a long window is caught as.

    .venv-ml/bin/python bench/validation_trial.py

Clean: a first run of taxi_tips over the sample's 209 weekly spans, and of a daily pipeline over the
sample made dense (tests/pipeline_fixtures.dense_table, 250 rows a day, 28 days) followed by 30
daily runs; every span's drift against the 7 before it, per feature: the largest statistic among
the significant ones (p < 0.001, what a finding needs) and overall. Faults: each applied to the new
day of the dense pipeline's second run (the history copied from one first run), through the real
ingest, validate and transform steps; the findings, their levels and severities.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import duckdb
from pipeline_fixtures import DENSE_FIRST_DAY, dense_table, write_pipeline

WINDOW = 28
FIRST_RUN = DENSE_FIRST_DAY + dt.timedelta(days=WINDOW + 1)
FAULTS = {  # name -> SQL on the new day's rows ({day}: its bounds)
    "clean day": None,
    "label collapse (every tip 0)": "UPDATE taxi_daily SET tips = 0 WHERE {day}",
    "60% of trip_miles missing": "UPDATE taxi_daily SET trip_miles = NULL WHERE {day} AND hash(trip_start_timestamp, fare) % 10 < 6",
    "fare x8, inside the schema's range": "UPDATE taxi_daily SET fare = least(fare * 8, 999) WHERE {day}",
    "fare x8 + 40": "UPDATE taxi_daily SET fare = least(fare * 8 + 40, 999) WHERE {day}",
    "trip_miles in km": "UPDATE taxi_daily SET trip_miles = trip_miles * 1.609 WHERE {day}",
    "payment_type collapsed to Cash": "UPDATE taxi_daily SET payment_type = 'Cash' WHERE {day}",
    "a third of the day loaded twice": "INSERT INTO taxi_daily SELECT * FROM taxi_daily WHERE {day} AND hash(trip_start_timestamp, fare) % 3 = 0",
    "a third of the day's rows": "DELETE FROM taxi_daily WHERE {day} AND hash(trip_start_timestamp, fare) % 3 <> 0",
    "the day loaded twice": "INSERT INTO taxi_daily SELECT * FROM taxi_daily WHERE {day}",
    "no rows that day": "DELETE FROM taxi_daily WHERE {day}",
}


def run(config, day: dt.date, steps=("ingest", "validate")) -> dict:
    from pipeline_lib import artifacts
    from pipeline_lib.steps import ingest, transform, validate

    out = {"ingest": ingest.run(config, artifacts.step_dir(config.name, day, "ingest"), day)}
    out["validate"] = validate.run(config, artifacts.step_dir(config.name, day, "validate"), out["ingest"]["examples"])
    if "transform" in steps:
        out["transform"] = transform.run(config, artifacts.step_dir(config.name, day, "transform"),
                                         out["ingest"]["examples"], out["validate"]["schema"])
    return out


def clean_drift(config, entries: list[dict]) -> dict[str, list]:
    """feature -> [(statistic, p-value)] of each span against the 7 before it."""
    from pipeline_lib.steps import validate

    kept = [validate.kept_statistics(e) for e in entries]
    features = validate.compared_features(config, validate.load_schema(config.schema_path()))
    out: dict[str, list] = {}
    for i, stats in enumerate(kept):
        before = [s for s in kept[max(0, i - config.validation.reference_spans):i] if s is not None]
        if stats is None or not before:
            continue
        for m in validate.measure_changes(config, features, stats, before, "", "DRIFT"):
            out.setdefault(m["feature"], []).append((m["change"]["statistic"], m["change"]["p_value"]))
    return out


def print_clean(name: str, drift: dict[str, list]) -> None:
    measured = sum(len(v) for v in drift.values())
    significant = {f: max((s for s, p in v if p < 0.001), default=None) for f, v in drift.items()}
    print(f"\n{name}: {measured} span-feature measurements, {sum(p < 0.001 for v in drift.values() for _, p in v)} significant")
    print(f"  {'feature':<24} {'largest significant':>20} {'largest':>8}")
    for feature, values in sorted(drift.items(), key=lambda kv: -max(s for s, _ in kv[1])):
        top = significant[feature]
        print(f"  {feature:<24} {'-' if top is None else f'{top:.3f}':>20} {max(s for s, _ in values):>8.3f}")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="validation-trial-"))
    os.environ["PIPELINE_ARTIFACT_ROOT"] = str(root / "artifacts")
    from pipeline_lib import settings, spans
    from pipeline_lib.config import load_config

    database = root / "warehouse.duckdb"
    shutil.copy(settings.warehouse_path(), database)
    dense_table(database)
    weekly = load_config(write_pipeline(root / "pipelines", {"name": "weekly", "source": {"database": str(database)}}))
    print_clean("taxi_tips, 209 weekly spans of the sample", clean_drift(weekly, run(weekly, dt.date(2017, 1, 1))["ingest"]["spans"]))

    def daily(name: str, db: Path):
        return load_config(write_pipeline(root / "pipelines", {
            "name": name, "schedule": "@daily", "start_date": str(DENSE_FIRST_DAY),
            "source": {"table": "taxi_daily", "database": str(db), "window_days": WINDOW}}))

    clean = daily("dense", database)
    run(clean, FIRST_RUN)
    findings = 0
    for day in range(1, 31):
        findings += len(run(clean, FIRST_RUN + dt.timedelta(days=day))["validate"]["anomalies"])
    last = spans.window(clean, FIRST_RUN + dt.timedelta(days=30), 58)
    print_clean("dense daily spans, 58 days", clean_drift(clean, [spans.record(clean.name, s.name) for s in last]))
    print(f"  30 clean daily runs: {findings} findings")

    start = int(dt.datetime.combine(FIRST_RUN, dt.time(), tzinfo=dt.UTC).timestamp())
    bounds = f"trip_start_timestamp >= {start} AND trip_start_timestamp < {start + 86400}"
    history = daily("history", database)
    run(history, FIRST_RUN, ("ingest", "validate", "transform"))
    print(f"\nfaults on the new day ({FIRST_RUN}) after {WINDOW} clean days:")
    for i, (name, sql) in enumerate(FAULTS.items()):
        db = root / f"fault{i}.duckdb"
        shutil.copy(database, db)
        if sql:
            with duckdb.connect(str(db)) as con:
                con.execute(sql.format(day=bounds))
        config = daily(f"fault{i}", db)
        shutil.copytree(spans.root(history.name), spans.root(config.name))
        result = run(config, FIRST_RUN + dt.timedelta(days=1), ("ingest", "validate", "transform"))
        found = result["validate"]["anomalies"] + result["transform"]["anomalies"]
        verdict = "BLOCKS" if any(f["severity"] == "blocking" for f in found) else "passes"
        print(f"  {name:<36} {verdict}: " + ("; ".join(
            f"{f['severity']} {f['feature']} {f['kind']}" + (f" {f['statistic']:.3f}" if f.get("statistic") else "")
            for f in found) or "nothing found"))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
