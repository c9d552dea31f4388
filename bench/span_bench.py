"""Benchmark daily runs against the window run: a first run over a window of daily spans, then the
runs of the following days, each adding one span, each an `airflow dags test` of a daily taxi_tips
in one AIRFLOW_HOME and artifact store (as a deployment runs them); and, with `--baseline TREE`,
the window run of another checkout (e.g. the code before spans: `git worktree add /tmp/before
84cd727`) on the same rows, for the last day's window, back to back on this machine.

    .venv-airflow/bin/python bench/span_bench.py --rows 150000 1500000 --days 3 --baseline /tmp/before

The rows: the taxi sample resampled to `--rows` in the window (whole rows drawn with replacement by
a seeded hash, as bench/pipeline_bench.py draws them), laid over its days in time order, the same
number each day, and as many a day for the days after it. Per run: each step's wall time, rows/s
and peak RSS (from the launcher, in the step's XCom), the DAG's wall time, what transform read and
what it took from the analyzer cache, and the model's evaluation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from pipeline_bench import isolated  # this folder's (bench/)
from pipeline_fixtures import write_pipeline

from pipeline_lib import fork_server, settings

SAMPLE_ROWS = 15_002
FIRST_DAY = dt.date(2016, 1, 1)
STEPS = ("ingest", "validate", "transform", "train", "evaluate", "infra_validate", "push")


def bench_table(target: Path, rows_per_day: int, days: int, seed: int = 42) -> None:
    """`days` days of `rows_per_day` taxi rows each (drawn from the sample with replacement by a
    seeded hash), in the sample's time order. A day holds ~100 copies of each of its sample rows:
    each copy's time of day moves by under an hour (within the day) and its trip_seconds by under
    10 by its draw, so that copies are not duplicated rows (0.1% of a day's rows are)."""
    start = int(dt.datetime.combine(FIRST_DAY, dt.time(), tzinfo=dt.UTC).timestamp())
    total = rows_per_day * days
    with duckdb.connect(str(target)) as con:
        con.execute(f"ATTACH '{settings.REPO_ROOT / '.data' / 'warehouse.duckdb'}' AS src (READ_ONLY)")
        con.execute(f"""
            CREATE TABLE taxi_trips AS
            WITH numbered AS (SELECT *, row_number() OVER (ORDER BY trip_start_timestamp) - 1 AS n FROM src.taxi_trips),
                 draws AS (SELECT i, CASE WHEN {total} <= {SAMPLE_ROWS} THEN i * {SAMPLE_ROWS} // {total}
                                          ELSE (hash(i + {seed}) % {SAMPLE_ROWS})::BIGINT END AS n FROM range({total}) r(i)),
                 ordered AS (SELECT draws.i, numbered.* EXCLUDE (n) FROM draws JOIN numbered USING (n))
            SELECT * EXCLUDE (i, r) REPLACE ({start} + r // {rows_per_day} * 86400
                                             + (trip_start_timestamp % 86400 + i % 3600) % 86400 AS trip_start_timestamp,
                                             trip_seconds + i // 3600 % 10 AS trip_seconds)
            FROM (SELECT *, row_number() OVER (ORDER BY trip_start_timestamp, i) - 1 AS r FROM ordered)""")


def environment(tree: Path, work: Path, warehouse: Path) -> dict:
    """The variables of `make` for the checkout `tree`, with this run's own AIRFLOW_HOME, artifact
    store, model repository, tracker and warm ML process; its pipeline_lib first on the path."""
    return {**isolated(dict(os.environ), work), "PYTHONPATH": str(tree),
            "AIRFLOW__CORE__DAGS_FOLDER": str(tree / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(tree / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PIPELINES_DIR": str(work / "pipelines"),
            "PIPELINE_WAREHOUSE": str(warehouse),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "pipeline_lib.airflow_sqlite.CONNECT_ARGS"
            if (tree / "pipeline_lib" / "airflow_sqlite.py").exists() else ""}


def run(env: dict, day: dt.date) -> dict:
    """One `airflow dags test` of taxi_tips for `day`: its wall time and each step's result."""
    airflow = str(REPO / ".venv-airflow" / "bin" / "airflow")
    start = time.perf_counter()
    # from the checkout's folder: the launcher drops PYTHONPATH, and `python -m` puts the working
    # folder first on the ML environment's path (where this checkout's pipeline_lib is installed)
    proc = subprocess.run([airflow, "dags", "test", "taxi_tips", day.isoformat()], env=env, cwd=env["PYTHONPATH"], check=False,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the run of {day} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        rows = db.execute("SELECT x.task_id, x.value FROM xcom x JOIN dag_run r ON x.run_id = r.run_id "
                          "WHERE x.dag_id = 'taxi_tips' AND x.key = 'return_value' AND date(r.logical_date) = ?",
                          [day.isoformat()]).fetchall()
    results = {task: json.loads(value) if isinstance(value, str) else value for task, value in rows}
    results = {task: json.loads(value) if isinstance(value, str) else value for task, value in results.items()}
    return {"day": day.isoformat(), "dag_seconds": round(seconds, 2), **figures(results)}


def figures(results: dict) -> dict:
    rows = results["ingest"]["rows"]
    steps = {}
    for step in STEPS:  # a push the quality gate refused is skipped: no result
        if step in results:
            launch = results[step]["launch"]
            steps[step] = {"seconds": launch["seconds"], "peak_rss_mib": launch["peak_rss_mib"]}
    out = {"window_rows": sum(rows.values()), "steps": steps,
           "metrics": results["evaluate"]["metrics"]["candidate"], "blessed": results["evaluate"]["blessed"],
           "evaluated_rows": results["evaluate"]["metrics"]["candidate"].get("example_count")}
    if "analysis" in results["transform"]:  # spans (this checkout); the window run reads every row
        analysis = results["transform"]["analysis"]
        out["analysis"] = analysis
        out["ingested_spans"] = len(results["ingest"]["ingested"])
        ingested = set(results["ingest"]["ingested"])  # the spans validate computes statistics of
        read = sum(sum(e["rows"].values()) for e in results["ingest"]["spans"] if e["span"] in ingested)
        steps["validate"]["rows_per_s"] = round(read / steps["validate"]["seconds"])
        steps["transform"]["rows_per_s"] = round(analysis["read_rows"] / steps["transform"]["seconds"])
    else:
        for step in ("validate", "transform"):
            steps[step]["rows_per_s"] = round(sum(rows.values()) / steps[step]["seconds"])
    return out


def bench(rows: int, window_days: int, days: int, train_steps: int, baseline: Path | None, work: Path) -> dict:
    work.mkdir(parents=True)
    warehouse = work / "warehouse.duckdb"
    bench_table(warehouse, rows // window_days, window_days + days)
    first = FIRST_DAY + dt.timedelta(days=window_days)
    overrides = {"schedule": "@daily", "start_date": FIRST_DAY.isoformat(), "end_date": (first + dt.timedelta(days=days)).isoformat(),
                 "source": {"window_days": window_days, "timestamp_unit": "epoch_seconds"},
                 "training": {"steps": train_steps}, "validation": {"wait_timeout_seconds": 30},
                 "evaluation": {"thresholds": {"AUC": {"lower_bound": 0.5}, "BinaryAccuracy": {"lower_bound": 0.5}}}}
    out = {"rows": rows, "window_days": window_days, "rows_per_day": rows // window_days, "runs": []}
    trees = {"spans": REPO, **({"window (baseline)": baseline} if baseline else {})}
    for name, tree in trees.items():
        folder = work / name.split()[0]
        write_pipeline(folder / "pipelines", overrides, source=tree / "pipelines" / "taxi_tips")
        env = environment(tree, folder, warehouse)
        subprocess.run([str(REPO / ".venv-airflow" / "bin" / "airflow"), "db", "migrate"], env=env, check=True,
                       capture_output=True)
        # the window run measured is the last day's, with the day before's model serving (as daily)
        dates = [first + dt.timedelta(days=d) for d in range(days + 1) if name == "spans" or d >= days - 1]
        try:
            for day in dates:
                out["runs"].append({"code": name, "kind": "first" if day == dates[0] else "daily", **run(env, day)})
                print_run(out["runs"][-1])
        finally:
            fork_server.stop(Path(env["PIPELINE_RUNTIME_DIR"]))
    return out


def print_run(r: dict) -> None:
    steps = "  ".join(f"{s} {f['seconds']:.1f}s/{f['peak_rss_mib']}MiB" for s, f in r["steps"].items())
    read = r.get("analysis")
    print(f"{r['code']:<18} {r['kind']:<7} {r['day']}  window {r['window_rows']:,} rows  DAG {r['dag_seconds']:.1f} s  "
          + (f"ingested {r['ingested_spans']} span(s), transform read {read['read_spans']} span(s) "
             f"({read['read_rows']:,} rows), {read['cached_spans']} cached  " if read else "")
          + f"AUC {r['metrics'].get('auc', float('nan')):.4f} on {r['evaluated_rows']:,.0f} eval rows\n    {steps}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[150_000], help="rows in the window")
    parser.add_argument("--window-days", type=int, default=30)
    parser.add_argument("--days", type=int, default=3, help="daily runs after the first")
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--baseline", type=Path, help="a checkout whose window run to measure on the same rows")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (the runs' artifacts)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="span-bench-") as tmp:
        work = args.keep or Path(tmp)
        reports = [bench(rows, args.window_days, args.days, args.train_steps, args.baseline, work / str(rows))
                   for rows in args.rows]
    if args.json:
        args.json.write_text(json.dumps({"measured": dt.datetime.now(dt.UTC).isoformat(),
                                         "cpus": os.cpu_count(), "benches": reports}, indent=2))


if __name__ == "__main__":
    main()
