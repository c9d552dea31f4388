"""Benchmark the taxi_tips pipeline: each step's wall time, rows/s and peak RSS (run through the
same launcher as the operators), then the whole DAG through `airflow dags test`, and the
orchestration overhead (DAG wall time minus the steps' own wall time).

    .venv-airflow/bin/python bench/pipeline_bench.py --rows 15002 150000 --json .data/bench.json

Sizes above the sample's 15,002 rows are drawn from it by a seeded resampler: whole rows with
replacement, chosen by a hash of the row number and the seed (so each column's distribution is
kept and the draw repeats), each copy's timestamp moved by under an hour so copies stay distinct.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from pipeline_fixtures import write_pipeline  # noqa: E402

from pipeline_lib import artifacts, settings  # noqa: E402
from pipeline_lib.config import load_config  # noqa: E402
from pipeline_lib.launchers import LocalLauncher  # noqa: E402

SPAN = dt.date(2017, 1, 1)
SAMPLE_ROWS = 15_002


def resample(source: Path, target: Path, rows: int, seed: int = 42) -> None:
    with duckdb.connect(str(target)) as con:
        con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        if rows <= SAMPLE_ROWS:
            con.execute(f"CREATE TABLE taxi_trips AS SELECT * FROM src.taxi_trips LIMIT {rows}")
            return
        con.execute(f"""
            CREATE TABLE taxi_trips AS
            WITH numbered AS (SELECT *, row_number() OVER () - 1 AS n FROM src.taxi_trips),
                 draws AS (SELECT (hash(i + {seed}) % {SAMPLE_ROWS})::BIGINT AS n, i FROM range({rows}) r(i))
            SELECT numbered.* EXCLUDE (n) REPLACE (
                       CASE WHEN draws.i < {SAMPLE_ROWS} THEN trip_start_timestamp
                            ELSE trip_start_timestamp + (hash(draws.i) % 3600)::BIGINT END AS trip_start_timestamp)
            FROM draws JOIN numbered USING (n)""")


def run_step(step: str, args: dict) -> tuple[dict, float, float]:
    """Run one step as the operators do; return (result, wall seconds, peak RSS in MiB)."""
    launcher = LocalLauncher()
    result = launcher.run(step, args, log=lambda line: None)
    return result, launcher.last_seconds, launcher.last_peak_rss_mib


def bench_steps(config_path: Path, name: str) -> dict:
    out, figures = {}, {}
    for step in artifacts.STEPS:
        args = {"config": str(config_path), "output_dir": str(artifacts.step_dir(name, SPAN, step)),
                **artifacts.inputs_from(step, out), **artifacts.run_args(step, SPAN, "bench")}
        out[step], wall, rss = run_step(step, args)
        figures[step] = {"seconds": round(wall, 2), "peak_rss_mib": round(rss)}
    rows = sum(out["ingest"]["rows"].values())
    for step in ("ingest", "validate", "transform"):
        figures[step]["rows_per_s"] = round(rows / figures[step]["seconds"])
    figures["evaluate"]["rows_per_s"] = round(out["ingest"]["rows"]["eval"] / figures["evaluate"]["seconds"])
    floors = {"arrow_pass": round(arrow_floor(load_config(config_path), SPAN), 2),
              "keras_evaluate": out["train"]["seconds"]["evaluate"]}
    return {"rows": rows, "steps": figures, "floors_seconds": floors,
            "train_seconds": out["train"]["seconds"], "serving_latency_ms": out["infra_validate"]["latency_ms"]}


def arrow_floor(config, span: dt.date) -> float:
    """The floor under validate and transform: one pyarrow pass over the same window's rows, read
    from the warehouse, with the per-column statistics TFDV computes (counts, missing, min/max/mean/
    std, distinct values of strings)."""
    end = int(dt.datetime.combine(span, dt.time(), tzinfo=dt.timezone.utc).timestamp())
    src = config.source
    start = time.perf_counter()
    with duckdb.connect(str(src.database_path()), read_only=True) as con:
        table = con.sql(f'SELECT {", ".join(config.raw_columns())} FROM {src.table} WHERE {src.timestamp_column} '
                        f'>= ? AND {src.timestamp_column} < ?', params=[end - src.window_days * 86400, end]).to_arrow_table()
    for name in table.column_names:
        column = table[name]
        column.null_count
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            pc.min_max(column), pc.mean(column), pc.stddev(column), pc.quantile(column, q=[0.1 * i for i in range(11)])
        else:
            pc.value_counts(column)
    return time.perf_counter() - start


def bench_dag(pipelines_dir: Path) -> float:
    env = {**os.environ, "PIPELINES_DIR": str(pipelines_dir), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins")}
    start = time.perf_counter()
    proc = subprocess.run([str(REPO / ".venv-airflow" / "bin" / "airflow"), "dags", "test", "taxi_tips",
                           SPAN.isoformat()], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the DAG run failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def bench_size(rows: int, work: Path, steps: int) -> dict:
    work.mkdir(parents=True)
    warehouse = work / "warehouse.duckdb"
    resample(settings.REPO_ROOT / ".data" / "warehouse.duckdb", warehouse, rows)
    os.environ.update({"PIPELINE_WAREHOUSE": str(warehouse), "PIPELINE_ARTIFACT_ROOT": str(work / "artifacts"),
                       "PIPELINE_SERVING_ROOT": str(work / "serving"), "AIRFLOW_HOME": str(work / "airflow")})
    config = write_pipeline(work / "pipelines", {"training": {"steps": steps}})
    report = bench_steps(config, yaml.safe_load(config.read_text())["name"])
    subprocess.run([str(REPO / ".venv-airflow" / "bin" / "airflow"), "db", "migrate"], check=True, capture_output=True)
    os.environ["PIPELINE_SERVING_ROOT"] = str(work / "serving-dag")  # the DAG's first model, like the steps'
    report["dag_seconds"] = round(bench_dag(work / "pipelines"), 2)
    step_total = sum(s["seconds"] for s in report["steps"].values())
    report["orchestration_overhead_seconds"] = round(report["dag_seconds"] - step_total, 2)
    return report


def print_table(reports: list[dict]) -> None:
    print(f"{'rows':>9} {'step':<14} {'seconds':>8} {'rows/s':>9} {'peak RSS MiB':>13}")
    for r in reports:
        for step, f in r["steps"].items():
            print(f"{r['rows']:>9,} {step:<14} {f['seconds']:>8.2f} {f.get('rows_per_s', ''):>9} {f['peak_rss_mib']:>13}")
        print(f"{r['rows']:>9,} {'DAG':<14} {r['dag_seconds']:>8.2f}   (orchestration overhead "
              f"{r['orchestration_overhead_seconds']:.2f} s)")
        floors, train = r["floors_seconds"], r["train_seconds"]
        print(f"{'':>9} floors: one pyarrow pass {floors['arrow_pass']:.2f} s (validate, transform); "
              f"Keras model.evaluate {floors['keras_evaluate']:.2f} s (evaluate); train fit {train['fit']:.2f} s, "
              f"export {train['export']:.2f} s")
        print(f"{'':>9} serving latency (in process, CPU): " + "; ".join(
            f"{kind} p50 {v['p50']:.2f} ms p99 {v['p99']:.2f} ms" for kind, v in r["serving_latency_ms"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[SAMPLE_ROWS])
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        reports = [bench_size(rows, Path(tmp) / str(rows), args.train_steps) for rows in args.rows]
    print_table(reports)
    if args.json:
        args.json.write_text(json.dumps({"measured": dt.datetime.now(dt.timezone.utc).isoformat(),
                                         "cpus": os.cpu_count(), "runs": reports}, indent=2))


if __name__ == "__main__":
    main()
