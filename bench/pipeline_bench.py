"""Benchmark the taxi_tips pipeline: one `airflow dags test` run of the DAG per size, with each
step's wall time, rows/s and peak RSS (from the launcher, in the step's XCom), the DAG's wall time
and the orchestration overhead (DAG wall time minus the steps' own wall time), plus the floors
and the serving latency. With `--scheduler`, each size also runs the same DAG under `make airflow`
(scheduler, LocalExecutor, REST trigger), reported task by task next to `dags test`'s: the gap
before each task is queued, its queue wait, its run and its step's own seconds.

    .venv-airflow/bin/python bench/pipeline_bench.py --rows 15002 150000 1500000 --json .data/bench.json

Train runs one epoch over the train split (`--train-steps` sets a fixed number instead). Sizes
above the sample's 15,002 rows are drawn from it by a seeded resampler: whole rows with
replacement, chosen by a hash of the row number and the seed (so each column's distribution is
kept and the draw repeats), each copy's timestamp moved by under an hour and its trip_seconds by under 10 so
copies stay distinct (the duplicate check counts repeated rows).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sqlite3
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
from local_airflow import finished, local_airflow
from pipeline_fixtures import write_pipeline

from pipeline_lib import artifacts, fork_server, settings
from pipeline_lib.config import load_config

AIRFLOW = REPO / ".venv-airflow" / "bin" / "airflow"
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
                       -- each copy's time moved by under an hour and its trip_seconds by under 10,
                       -- so that copies are not duplicated rows
                       trip_start_timestamp + (hash(draws.i) % 3600)::BIGINT AS trip_start_timestamp,
                       trip_seconds + (hash(draws.i) // 3600 % 10)::BIGINT AS trip_seconds)
            FROM draws JOIN numbered USING (n)""")


def step_figures(results: dict, batch_size: int) -> dict:
    """Each step's wall time and peak RSS as its launcher measured them, rows/s where rows flow."""
    rows = results["ingest"]["rows"]
    flowing = {"ingest": sum(rows.values()), "validate": sum(rows.values()), "transform": sum(rows.values()),
               "evaluate": rows["eval"]}
    figures = {}
    for step in artifacts.STEPS:
        figures[step] = dict(results[step]["launch"])
        if step in flowing:
            figures[step]["rows_per_s"] = round(flowing[step] / figures[step]["seconds"])
    fit = results["train"]["seconds"]["fit"]
    figures["train"]["fit_rows_per_s"] = round(results["train"]["steps"] * batch_size / fit)
    return figures


def arrow_floor(config, span: dt.date) -> float:
    """The floor under validate and transform: one pyarrow pass over the same window's rows, read
    from the warehouse, with the per-column statistics TFDV computes (counts, missing, min/max/mean/
    std, distinct values of strings)."""
    end = int(dt.datetime.combine(span, dt.time(), tzinfo=dt.UTC).timestamp())
    src = config.source
    start = time.perf_counter()
    with duckdb.connect(str(src.database_path()), read_only=True) as con:
        table = con.sql(f'SELECT {", ".join(config.raw_columns())} FROM {src.table} WHERE {src.timestamp_column} '
                        f'>= ? AND {src.timestamp_column} < ?', params=[end - src.window_days * 86400, end]).to_arrow_table()
    for name in table.column_names:
        column = table[name]
        _ = column.null_count
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            pc.min_max(column), pc.mean(column), pc.stddev(column), pc.quantile(column, q=[0.1 * i for i in range(11)])
        else:
            pc.value_counts(column)
    return time.perf_counter() - start


def isolated(env: dict, root: Path) -> dict:
    """One run's own AIRFLOW_HOME, artifact store, model repository, anomaly tracker and warm ML
    process: each run starts cold, trains a first model and is judged alike."""
    return {**env, "AIRFLOW_HOME": str(root / "airflow"), "PIPELINE_ARTIFACT_ROOT": str(root / "artifacts"),
            "PIPELINE_SERVING_ROOT": str(root / "serving"), "PIPELINE_ANOMALY_DB": f"sqlite:///{root / 'anomalies.db'}",
            "PIPELINE_RUNTIME_DIR": str(root / "run")}


def run_dag(env: dict) -> tuple[float, dict, dict]:
    """`airflow dags test` of taxi_tips: its wall time, each step's result (XCom) and each task's
    duration (as Airflow recorded it). Its warm ML process is stopped after it."""
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True)
    start = time.perf_counter()
    proc = subprocess.run([str(AIRFLOW), "dags", "test", "taxi_tips", SPAN.isoformat()], env=env, check=False,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    fork_server.stop(Path(env["PIPELINE_RUNTIME_DIR"]))
    if proc.returncode != 0:
        raise RuntimeError(f"the DAG run failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return (seconds, *recorded(Path(env["AIRFLOW_HOME"])))


def recorded(home: Path) -> tuple[dict, dict]:
    """Each step's result (XCom) and each task's duration, from Airflow's database."""
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute("SELECT task_id, value FROM xcom WHERE dag_id = 'taxi_tips' AND key = 'return_value'")
        results = {task: json.loads(value) for task, value in rows}
        durations = {task: seconds or 0.0 for task, seconds in  # a skipped task has no duration
                     db.execute("SELECT task_id, duration FROM task_instance WHERE dag_id = 'taxi_tips'")}
    results = {task: json.loads(value) if isinstance(value, str) else value for task, value in results.items()}
    return results, durations


def run_scheduled(env: dict) -> tuple[dt.datetime, dict, list[dict], dict]:
    """The same run under `make airflow` (scheduler, LocalExecutor), triggered over REST once the
    DAG is parsed: when it was triggered, the run and its task instances as the API reports them,
    and each step's result. Airflow and the warm ML process are stopped after it."""
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True)
    with local_airflow(home, env, home / "make-airflow.log") as api:
        api.wait(lambda: api.call("GET", "/api/v2/dags/taxi_tips"), "taxi_tips to be parsed", 120)
        api.call("PATCH", "/api/v2/dags/taxi_tips", {"is_paused": False})
        triggered = dt.datetime.now(dt.UTC)
        run = api.call("POST", "/api/v2/dags/taxi_tips/dagRuns", {"logical_date": f"{SPAN}T00:00:00Z"})
        run = api.wait(lambda: finished(api, run["dag_run_id"]), "the triggered run", 4 * 3600)
        tis = api.call("GET", f"/api/v2/dags/taxi_tips/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
    if run["state"] != "success":
        raise RuntimeError(f"the scheduled run failed: {({t['task_id']: t['state'] for t in tis})} (logs: {home}/logs)")
    return triggered, run, tis, recorded(home)[0]


def scheduler_figures(triggered: dt.datetime, run: dict, tis: list[dict], figures: dict) -> dict:
    """Per task that ran, in order: the gap from the previous task's end (the run's start for the
    first) to its queued time (scheduling latency), its queue wait (queued -> running), its run
    (running -> done) and its step's own seconds. Totals: the DAG wall from the REST trigger to the
    run's end, the run's own start -> end, and the overhead split as for `dags test`."""
    def at(ti: dict, key: str) -> dt.datetime:
        return dt.datetime.fromisoformat(ti[key])

    tasks, previous_end = {}, at(run, "start_date")
    for ti in sorted((t for t in tis if t["start_date"]), key=lambda t: t["start_date"]):
        queued, start, end = at(ti, "queued_when"), at(ti, "start_date"), at(ti, "end_date")
        tasks[ti["task_id"]] = {"gap": round((queued - previous_end).total_seconds(), 2),
                                "queue_wait": round((start - queued).total_seconds(), 2),
                                "run": round((end - start).total_seconds(), 2),
                                **({"step": figures[ti["task_id"]]["seconds"]} if ti["task_id"] in figures else {})}
        previous_end = end
    dag_seconds = (at(run, "end_date") - triggered).total_seconds()
    return {"dag_seconds": round(dag_seconds, 2),
            "run_seconds": round((at(run, "end_date") - at(run, "start_date")).total_seconds(), 2),
            "trigger_to_start": round((at(run, "start_date") - triggered).total_seconds(), 2),
            "queue_waits": round(sum(t["queue_wait"] for t in tasks.values()), 2),
            "gaps": round(sum(t["gap"] for t in tasks.values()) + (at(run, "end_date") - previous_end).total_seconds(), 2),
            "orchestration_overhead_seconds": overhead(dag_seconds, figures, {k: t["run"] for k, t in tasks.items()}),
            "tasks": tasks}


def overhead(dag_seconds: float, figures: dict, durations: dict) -> dict:
    """Where the DAG's time outside the steps goes: in the step tasks around their step process,
    in the other tasks (sensors, anomaly filing), and between tasks (parsing, scheduling)."""
    step_tasks = sum(durations[step] for step in figures)
    return {"total": round(dag_seconds - sum(f["seconds"] for f in figures.values()), 2),
            "in_step_tasks": round(step_tasks - sum(f["seconds"] for f in figures.values()), 2),
            "other_tasks": {task: round(d, 2) for task, d in durations.items() if task not in figures},
            "between_tasks": round(dag_seconds - sum(durations.values()), 2)}


def bench_size(rows: int, work: Path, train_steps: int | None, scheduler: bool) -> dict:
    work.mkdir(parents=True)
    warehouse = work / "warehouse.duckdb"
    resample(settings.REPO_ROOT / ".data" / "warehouse.duckdb", warehouse, rows)
    env = {**os.environ, "PIPELINE_WAREHOUSE": str(warehouse),
           "PIPELINES_DIR": str(work / "pipelines"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins")}
    base = yaml.safe_load((REPO / "pipelines" / "taxi_tips" / "pipeline.yaml").read_text())
    one_epoch = math.ceil(rows * (100 - base["split"]["eval_percent"]) / 100 / base["training"]["batch_size"])
    training = {"steps": train_steps} if train_steps else {"steps": one_epoch, "epochs": 1}
    # end_date: unpausing the DAG under the scheduler starts no scheduled run of today before ours
    config = write_pipeline(work / "pipelines", {"training": training, "end_date": SPAN.isoformat()})
    dag_seconds, results, durations = run_dag(isolated(env, work / "dags-test"))
    figures = step_figures(results, base["training"]["batch_size"])
    os.environ["PIPELINE_WAREHOUSE"] = str(warehouse)  # arrow_floor reads the same warehouse
    floors = {"arrow_pass": round(arrow_floor(load_config(config), SPAN), 2),
              "keras_evaluate": results["train"]["seconds"]["evaluate"]}
    report = {"rows": sum(results["ingest"]["rows"].values()), "train_steps": results["train"]["steps"],
              "steps": figures, "dag_seconds": round(dag_seconds, 2),
              "orchestration_overhead_seconds": overhead(dag_seconds, figures, durations),
              "task_seconds": {task: round(d, 2) for task, d in durations.items()},
              "floors_seconds": floors, "train_seconds": results["train"]["seconds"],
              "serving_latency_ms": results["infra_validate"]["latency_ms"]}
    if scheduler:
        triggered, run, tis, scheduled = run_scheduled(isolated(env, work / "scheduler"))
        report["scheduler"] = scheduler_figures(triggered, run, tis, step_figures(scheduled, base["training"]["batch_size"]))
    return report


def print_table(reports: list[dict]) -> None:
    print(f"{'rows':>9} {'step':<14} {'seconds':>8} {'rows/s':>9} {'peak RSS MiB':>13}")
    for r in reports:
        for step, f in r["steps"].items():
            print(f"{r['rows']:>9,} {step:<14} {f['seconds']:>8.2f} {f.get('rows_per_s', ''):>9} {f['peak_rss_mib']:>13}")
        print(f"{'':>9} train: {r['train_steps']} steps, fit {r['steps']['train']['fit_rows_per_s']:,} examples/s")
        o = r["orchestration_overhead_seconds"]
        print(f"{r['rows']:>9,} {'DAG':<14} {r['dag_seconds']:>8.2f}   (orchestration overhead {o['total']:.2f} s: "
              f"{o['in_step_tasks']:.2f} in step tasks around the step, {sum(o['other_tasks'].values()):.2f} in "
              f"{', '.join(o['other_tasks'])}, {o['between_tasks']:.2f} between tasks)")
        floors, train = r["floors_seconds"], r["train_seconds"]
        print(f"{'':>9} floors: one pyarrow pass {floors['arrow_pass']:.2f} s (validate, transform); "
              f"Keras model.evaluate {floors['keras_evaluate']:.2f} s (evaluate); train fit {train['fit']:.2f} s, "
              f"export {train['export']:.2f} s")
        print(f"{'':>9} serving latency (in process, CPU): " + "; ".join(
            f"{kind} p50 {v['p50']:.2f} ms p99 {v['p99']:.2f} ms" for kind, v in r["serving_latency_ms"].items()))
    for r in reports:
        if "scheduler" in r:
            print_scheduler(r)


def print_scheduler(r: dict) -> None:
    """`dags test` and the scheduler side by side, task by task (seconds)."""
    s, o = r["scheduler"], r["scheduler"]["orchestration_overhead_seconds"]

    def cell(seconds: float | None) -> str:
        return f"{seconds:>7.2f}" if seconds is not None else f"{'-':>7}"

    print(f"\n{r['rows']:,} rows: `airflow dags test` vs the scheduler (`make airflow`, REST trigger), seconds;"
          " gap: from the previous task's end to this one's queued time; queued: until it runs")
    print(f"{'task':<29} {'dags test: task':>15} {'step':>7} | {'scheduler: gap':>14} {'queued':>7} {'task':>7} {'step':>7}")
    for task, t in s["tasks"].items():
        print(f"{task:<29} {cell(r['task_seconds'].get(task)):>15} {cell(r['steps'].get(task, {}).get('seconds'))} | "
              f"{cell(t['gap']):>14} {cell(t['queue_wait'])} {cell(t['run'])} {cell(t.get('step'))}")
    print(f"{'DAG wall':<29} {cell(r['dag_seconds']):>15} {'':>7} | {cell(s['dag_seconds']):>14}  from the REST trigger to "
          f"the run's end ({s['trigger_to_start']:.2f} to its start, {s['run_seconds']:.2f} start -> end)")
    d = r["orchestration_overhead_seconds"]
    for name, x in (("dags test", d), ("scheduler", o)):
        print(f"{name + ' overhead':<29} {x['total']:>7.2f}: {x['in_step_tasks']:.2f} in step tasks around the step, "
              f"{sum(x['other_tasks'].values()):.2f} in the other tasks, {x['between_tasks']:.2f} between tasks"
              + (f" (trigger -> run start {s['trigger_to_start']:.2f}, gaps {s['gaps']:.2f}, queue waits "
                 f"{s['queue_waits']:.2f})" if x is o else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[SAMPLE_ROWS])
    parser.add_argument("--train-steps", type=int, help="a fixed number of steps (default: one epoch)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--scheduler", action="store_true",
                        help="also run each size under `make airflow` (scheduler, REST trigger)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        reports = [bench_size(rows, Path(tmp) / str(rows), args.train_steps, args.scheduler) for rows in args.rows]
    print_table(reports)
    if args.json:
        args.json.write_text(json.dumps({"measured": dt.datetime.now(dt.UTC).isoformat(),
                                         "cpus": os.cpu_count(), "runs": reports}, indent=2))


if __name__ == "__main__":
    main()
