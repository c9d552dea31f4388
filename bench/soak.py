"""A season of daily runs through the real scheduler: `make soak DAYS=30 PIPELINES=taxi_tips
SEASON=bench/soak/season-30.yaml`.

A private workspace under --out (its own AIRFLOW_HOME, pipelines, artifact store, model repository,
anomaly tracker, warm ML process and DuckDB warehouse) runs `make airflow` (tests/local_airflow.py).
Each pipeline is an example pipeline's config with the season's `overrides:` merged in. Data
arrives day by day: the taxi sample resampled, `rows_per_day` rows a day (a seeded reservoir
sample of the 15,002 rows, their time of day kept, the day moved; their other columns as they
were, as tests/pipeline_fixtures.dense_table lays them), the day before a run's logical date loaded
just before it (what its wait_for_data sensor waits for); the days the first run's window needs are
loaded up front. The season's `faults:` corrupt a day's rows as they are loaded.

Each day: `airflow backfill create` of the day for every pipeline; a scripted operator watches the
runs over REST as a person would the next morning: a run held by open blocking anomalies (or
failed with one, e.g. NO_DATA) gets the fault's `operator:` action (accept; fix: reload the day's
clean rows, resolve, clear the run so it ingests the fixed span again; resolve); a block on a day
without a scheduled fault is recorded and resolved so the season goes on. Then the maintenance DAG
(`platform_maintenance`) runs for the date, and the day's figures are taken: outcome, version
served, anomalies filed and alerted (counted at a local Slack webhook receiver and SMTP server),
run wall, disk used. The summary says whether each fault was caught (an anomaly of an `expect`
kind filed by that day's run and alerted), which clean days were blocked, disk growth per day past
the retention window, run wall over time and the Models/Data pages' load time on the first and
last day. Exit 1 when a fault was not caught or a clean day was blocked.

Writes `<out>/soak.json` (every figure) and `<out>/soak.md` (the tables, for docs/soak.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import email
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from local_airflow import Api, finished, free_port, local_airflow
from pipeline_fixtures import merge, write_pipeline

from pipeline_lib import serving, settings
from pipeline_lib.anomalies.tracker import Tracker
from pipeline_lib.config import load_config
from pipeline_lib.retention import size_of

BIN = REPO / ".venv-airflow" / "bin"
MAINTENANCE = "platform_maintenance"
GATES = ("wait_for_anomalies", "wait_for_transform_anomalies")
OPERATOR = "soak-operator"
RUN_TIMEOUT_S = 1800
PAGE_LOADS = 5
DAY = 86_400


# -- the data -------------------------------------------------------------------------------------

class Warehouse:
    """The soak's DuckDB table: the sample's columns, a day's resampled rows at a time."""

    def __init__(self, path: Path, table: str, timestamp: str, rows: int, seed: int):
        self.path, self.table, self.timestamp, self.rows, self.seed = path, table, timestamp, rows, seed
        self.sample = settings.warehouse_path()
        with self._connect() as con:
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM sample.taxi_trips LIMIT 0")

    @contextlib.contextmanager
    def _connect(self):
        """A write connection; a task reading the file holds DuckDB's lock for a moment: wait for it."""
        for attempt in range(60):
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException:
                if attempt == 59:
                    raise
                time.sleep(1)
        try:
            con.execute(f"ATTACH '{self.sample}' AS sample (READ_ONLY)")
            con.execute("SET threads = 1")  # a REPEATABLE sample repeats on one thread
            yield con
        finally:
            con.close()

    def load(self, day: dt.date, fault: dict | None = None) -> int:
        """Replace `day`'s rows with its resampled rows, corrupted by `fault`; returns the rows loaded."""
        start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp())
        kind = (fault or {}).get("fault")
        replace, params = [f"{start} + {self.timestamp} % {DAY} AS {self.timestamp}"], []
        if kind == "new_category":
            replace.append(f"CASE WHEN hash(n, {self.seed}) % 1000 < ? THEN ? ELSE {fault['column']} END AS {fault['column']}")
            params += [round(fault["share"] * 1000), fault["value"]]
        elif kind == "constant":
            replace.append(f"? AS {fault['column']}")
            params.append(fault["value"])
        elif kind not in (None, "loaded_twice", "no_data"):
            raise ValueError(f"unknown fault {kind!r}")
        drawn = (f"SELECT *, row_number() OVER () AS n FROM sample.taxi_trips "
                 f"USING SAMPLE reservoir({self.rows} ROWS) REPEATABLE ({day.toordinal() + self.seed})")
        select = f"SELECT * EXCLUDE (n) REPLACE ({', '.join(replace)}) FROM ({drawn})"
        with self._connect() as con:
            con.begin()
            con.execute(f"DELETE FROM {self.table} WHERE {self.timestamp} >= ? AND {self.timestamp} < ?",
                        [start, start + DAY])
            for _ in range({"no_data": 0, "loaded_twice": 2}.get(kind, 1)):
                con.execute(f"INSERT INTO {self.table} {select}", params)
            con.commit()
            return con.execute(f"SELECT count(*) FROM {self.table} WHERE {self.timestamp} >= ? AND {self.timestamp} < ?",
                               [start, start + DAY]).fetchone()[0]


# -- the alert channels ---------------------------------------------------------------------------

class AlertServers:
    """A Slack webhook receiver (HTTP) and an SMTP server (aiosmtpd) on 127.0.0.1; every message
    with the time it arrived: (time, channel, text)."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.received: list[tuple[float, str, str]] = []
        received = self.received

        class Webhook(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append((time.time(), "slack", body.get("text", "")))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        class Mail:
            async def handle_DATA(self, server, session, envelope):
                message = email.message_from_bytes(envelope.original_content)
                received.append((time.time(), "email", message["Subject"] or ""))
                return "250 OK"

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.smtp = Controller(Mail(), hostname="127.0.0.1", port=free_port())
        self.smtp.start()

    def connections(self, alerts) -> dict[str, str]:
        """AIRFLOW_CONN_* variables for the connections a pipeline's `alerts` names."""
        env = {}
        if alerts.slack_conn_id:
            env[f"AIRFLOW_CONN_{alerts.slack_conn_id.upper()}"] = json.dumps(
                {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{self.http.server_address[1]}/services",
                 "password": "T000/B000/soak"})
        if alerts.email_to:
            env[f"AIRFLOW_CONN_{alerts.smtp_conn_id.upper()}"] = json.dumps(
                {"conn_type": "smtp", "host": "127.0.0.1", "port": self.smtp.port,
                 "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "soak@example.com"}})
        return env

    def since(self, start: float) -> list[tuple[float, str, str]]:
        return [m for m in self.received if m[0] >= start]

    def close(self):
        self.http.shutdown()
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            self.smtp.stop()


# -- Airflow --------------------------------------------------------------------------------------

def run_of(api: Api, dag_id: str, day: dt.date) -> dict | None:
    runs = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-logical_date&limit=10")["dag_runs"]
    return next((r for r in runs if (r["logical_date"] or "")[:10] == str(day)), None)


def task_states(api: Api, dag_id: str, run_id: str) -> dict[str, str]:
    tis = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {t["task_id"]: t["state"] for t in tis}


def xcom(api: Api, dag_id: str, run_id: str, task_id: str):
    try:
        value = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")["value"]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    with contextlib.suppress(TypeError, ValueError):
        value = json.loads(value)
    return value


def seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds(), 1)


def backfill(env: dict, dag_id: str, day: dt.date) -> None:
    proc = subprocess.run([str(BIN / "airflow"), "backfill", "create", "--dag-id", dag_id, "--from-date", str(day),
                           "--to-date", str(day), "--max-active-runs", "1"],
                          env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"backfill of {dag_id} {day} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def wait_backfills_done(api: Api, dag_id: str) -> None:
    """One backfill per DAG at a time: the scheduler marks the last one complete (every 30 s)."""
    api.wait(lambda: all(b["completed_at"] for b in api.call("GET", f"/api/v2/backfills?dag_id={dag_id}")["backfills"]),
             f"{dag_id}'s last backfill to be marked complete", 180)


def maintenance(api: Api, day: dt.date) -> dict:
    """The maintenance DAG for `day`, triggered over REST; its tasks' return values as they are."""
    try:
        api.call("GET", f"/api/v2/dags/{MAINTENANCE}")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
        return {"skipped": f"DAG {MAINTENANCE} not found"}
    api.call("PATCH", f"/api/v2/dags/{MAINTENANCE}", {"is_paused": False})
    run = api.call("POST", f"/api/v2/dags/{MAINTENANCE}/dagRuns",
                   {"dag_run_id": f"soak__{day}", "logical_date": f"{day}T00:00:00Z"})
    done = api.wait(lambda: finished(api, run["dag_run_id"], MAINTENANCE), f"{MAINTENANCE} for {day}", RUN_TIMEOUT_S)
    states = task_states(api, MAINTENANCE, run["dag_run_id"])
    return {"state": done["state"], "seconds": seconds(done["start_date"], done["end_date"]), "task_states": states,
            "returns": {task: xcom(api, MAINTENANCE, run["dag_run_id"], task) for task in states}}


def page_ms(api: Api, path: str) -> float:
    """The median of a few loads of a plugin page, milliseconds."""
    times = []
    for _ in range(PAGE_LOADS):
        request = urllib.request.Request(api.url + path, headers={"Authorization": f"Bearer {api.token}"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


# -- the season -----------------------------------------------------------------------------------

class Soak:
    def __init__(self, season: dict, season_file: Path, days: int, pipelines: list[str], out: Path):
        self.season, self.days, self.pipelines, self.out = season, days, pipelines, out
        self.season_file = season_file
        self.first = dt.date.fromisoformat(str(season["overrides"]["start_date"]))
        self.dates = [self.first + dt.timedelta(days=i) for i in range(days)]
        self.faults = self._faults(season.get("faults") or [])
        self.home = out / "airflow"
        self.tracker_db = out / "anomalies.db"
        self.env = {**os.environ, "PIPELINES_DIR": str(out / "pipelines"),
                    "PIPELINE_ARTIFACT_ROOT": str(out / "artifacts"), "PIPELINE_SERVING_ROOT": str(out / "serving"),
                    "PIPELINE_WAREHOUSE": str(out / "warehouse.duckdb"),
                    "PIPELINE_ANOMALY_DB": f"sqlite:///{self.tracker_db}", "PIPELINE_RUNTIME_DIR": str(out / "run")}
        overrides = merge(season["overrides"], {"end_date": str(self.dates[-1])})
        self.configs = {p: load_config(write_pipeline(out / "pipelines", {**overrides, "name": p}, REPO / "pipelines" / p))
                        for p in pipelines}
        source = next(iter(self.configs.values())).source
        self.warehouse = Warehouse(out / "warehouse.duckdb", source.table, source.timestamp_column,
                                   season["rows_per_day"], season.get("seed", 0))
        self.alerts = AlertServers()
        for config in self.configs.values():
            self.env.update(self.alerts.connections(config.alerts))
        self.tracker = Tracker(self.env["PIPELINE_ANOMALY_DB"])
        self.records: list[dict] = []
        self.maintained: list[dict] = []
        self.pages: dict[str, dict] = {}

    def _faults(self, entries: list[dict]) -> dict[int, dict]:
        by_day = {}
        for entry in entries:
            first, last = entry.get("days") or (entry["day"], entry["day"])
            for day in range(first, last + 1):
                by_day[day] = entry
        return {d: f for d, f in by_day.items() if d <= self.days}

    # the operator, as a person would the next morning

    def cli(self, *args: str) -> str:
        proc = subprocess.run([str(BIN / "python"), "-m", "pipeline_lib.anomalies", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"anomalies {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def act(self, api: Api, pipeline: str, run: dict, ids: list[int], index: int, day_state: dict) -> str:
        """The operator's action on the run's open blocking anomalies; returns what was done."""
        fault = self.faults.get(index)
        if fault is None or day_state["acted"].get(pipeline):
            for i in ids:
                self.cli("resolve", str(i), "--by", OPERATOR, "--note", "soak: a block on a clean day, let through")
            day_state["unexpected"].setdefault(pipeline, []).extend(ids)
            return "resolved (clean day)"
        day_state["acted"][pipeline] = True
        action = fault["operator"]
        if action == "accept":
            for i in ids:
                self.cli("accept", str(i), "--by", OPERATOR, "--note", f"soak: {fault['fault']} is genuine")
        elif action == "resolve":
            for i in ids:
                self.cli("resolve", str(i), "--by", OPERATOR, "--note", fault.get("note", f"soak: {fault['fault']}"))
        elif action == "fix":
            if not day_state["fixed"]:
                self.warehouse.load(self.dates[index - 1] - dt.timedelta(days=1))
                day_state["fixed"] = True
            for i in ids:
                self.cli("resolve", str(i), "--by", OPERATOR, "--note", f"soak: {fault['fault']} fixed at the source")
            api.call("POST", f"/api/v2/dags/{pipeline}/dagRuns/{run['dag_run_id']}/clear", {"dry_run": False})
        else:
            raise ValueError(f"unknown operator action {action!r}")
        return action

    def watch(self, api: Api, index: int, day: dt.date) -> dict[str, dict]:
        """Each pipeline's run of `day` until it ends, the operator acting on blocks."""
        watched = {p: {"attempts": [], "actions": []} for p in self.pipelines}
        day_state = {"acted": {}, "fixed": False, "unexpected": {}}
        deadline = time.monotonic() + RUN_TIMEOUT_S * 2
        while any("state" not in w for w in watched.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the runs of {day} did not end: {watched}")
            for p, w in watched.items():
                if "state" in w:
                    continue
                with contextlib.suppress(urllib.error.URLError, ConnectionError):
                    self._step(api, p, w, index, day, day_state)
            time.sleep(3)
        for p, w in watched.items():
            w["unexpected_blocks"] = day_state["unexpected"].get(p, [])
        return watched

    def _step(self, api: Api, pipeline: str, w: dict, index: int, day: dt.date, day_state: dict) -> None:
        run = run_of(api, pipeline, day)
        if run is None:
            return
        states = task_states(api, pipeline, run["dag_run_id"])
        ended = run["state"] in ("success", "failed")
        waiting = [g for g in GATES if states.get(g) == "up_for_reschedule"]
        if not (ended or waiting):
            return
        blocking = [a for a in self.tracker.open_blocking(pipeline) if any(o["span"] == str(day) for o in a["runs"])]
        if blocking:
            where = waiting[0] if waiting else next((t for t, s in states.items() if s == "failed"), "?")
            acted_at = dt.datetime.now(dt.UTC).isoformat()
            action = self.act(api, pipeline, run, [a["id"] for a in blocking], index, day_state)
            w["actions"].append({"at": where, "ids": [a["id"] for a in blocking],
                                 "kinds": [a["kind"] for a in blocking], "action": action, "time": acted_at})
            if action == "fix":  # cleared: the run starts again
                end = run["end_date"] or acted_at
                w["attempts"].append({"start": run["start_date"], "end": end, "seconds": seconds(run["start_date"], end)})
                w["cleared_at"] = acted_at
            return
        if not ended:
            return
        start = max(filter(None, [run["start_date"], w.get("cleared_at")]))
        w["attempts"].append({"start": start, "end": run["end_date"], "seconds": seconds(start, run["end_date"])})
        w["state"], w["run_id"] = run["state"], run["dag_run_id"]
        w["failed"] = sorted(t for t, s in states.items() if s == "failed")

    # the day's figures

    def outcome(self, pipeline: str, day: dt.date, w: dict) -> dict:
        config = self.configs[pipeline]
        result = Path(self.env["PIPELINE_ARTIFACT_ROOT"]) / pipeline / "runs" / str(day) / "push" / "result.json"
        push = json.loads(result.read_text()) if result.is_file() and w["state"] == "success" else None
        if push and push["pushed"]:
            final = f"pushed v{push['version']}"
        elif push:
            final = f"push refused: {push['reason']}"
        else:
            final = f"failed at {', '.join(w['failed']) or '?'}"
        steps = [f"blocked at {a['at']} ({', '.join(a['kinds'])}) -> {a['action']}" for a in w["actions"]]
        model_dir = Path(self.env["PIPELINE_SERVING_ROOT"]) / config.serving.model_name
        return {"outcome": " -> ".join([*steps, final]), "final": final, "pushed": bool(push and push["pushed"]),
                "push_reason": push and push["reason"], "served": serving.latest_version(model_dir),
                "actions": w["actions"], "unexpected_blocks": w["unexpected_blocks"],
                "run_seconds": [a["seconds"] for a in w["attempts"]]}

    def anomalies(self, pipeline: str, day: dt.date, since: float) -> list[dict]:
        """The records filed by the day's run, and whether each went out (tracker and receivers)."""
        messages = self.alerts.since(since)
        out = []
        for a in self.tracker.list(pipeline=pipeline):
            if not any(o["span"] == str(day) for o in a["runs"]):
                continue
            mark = re.compile(rf"#{a['id']}\b")
            out.append({"id": a["id"], "feature": a["feature"], "kind": a["kind"], "severity": a["severity"],
                        "status": a["status"], "alerted": not a["alert_pending"],
                        "received": sorted({channel for _, channel, text in messages if mark.search(text)})})
        return sorted(out, key=lambda a: a["id"])

    def disk(self, pipeline: str) -> dict:
        config = self.configs[pipeline]
        root = Path(self.env["PIPELINE_ARTIFACT_ROOT"]) / pipeline
        spans = sorted((root / "spans").glob("*")) if (root / "spans").is_dir() else []
        return {"spans": size_of(root / "spans"), "span_count": len(spans),
                "newest_span": size_of(spans[-1]) if spans else 0, "runs": size_of(root / "runs"),
                "serving": size_of(Path(self.env["PIPELINE_SERVING_ROOT"]) / config.serving.model_name)}

    def platform_disk(self) -> dict:
        return {"tracker_db": sum(size_of(f) for f in self.out.glob("anomalies.db*")),
                "airflow_db": sum(size_of(f) for f in self.home.glob("airflow.db*")),
                "airflow_logs": size_of(self.home / "logs")}

    def measure_pages(self, api: Api) -> dict:
        return {p: {"models_ms": page_ms(api, f"/pipeline-pages/models?pipeline={p}"),
                    "data_ms": page_ms(api, f"/pipeline-pages/data?pipeline={p}")} for p in self.pipelines}

    # the season

    def preload(self) -> list[str]:
        """The days before the first run that its window and reference spans need (the day before
        the first run is loaded as that day's data)."""
        config = next(iter(self.configs.values()))
        before = config.source.window_days + config.validation.reference_spans
        days = [self.first - dt.timedelta(days=i) for i in range(before, 1, -1)]
        for d in days:
            self.warehouse.load(d)
        return [str(d) for d in days]

    def run(self) -> dict:
        preloaded = self.preload()
        started = time.monotonic()
        with local_airflow(self.home, self.env, self.out / "make-airflow.log") as api:
            for p in self.pipelines:
                api.wait(lambda p=p: api.call("GET", f"/api/v2/dags/{p}"), f"{p} to be parsed", 180)
                api.call("PATCH", f"/api/v2/dags/{p}", {"is_paused": False})
            env = {**self.env, "AIRFLOW_HOME": str(self.home)}
            for index, day in enumerate(self.dates, 1):
                self.records.append(self.day(api, env, index, day))
                print_day(self.records[-1], self.pipelines)
                if index == 1:
                    self.pages["first_day"] = self.measure_pages(api)
            self.pages["last_day"] = self.measure_pages(api)
        return {"season": str(self.season_file), "days": self.days, "pipelines": self.pipelines,
                "rows_per_day": self.season["rows_per_day"], "preloaded": preloaded,
                "measured": dt.datetime.now(dt.UTC).isoformat(), "cpus": os.cpu_count(),
                "wall_seconds": round(time.monotonic() - started, 1), "workspace": str(self.out),
                "daily": self.records, "pages": self.pages, "summary": self.summary()}

    def day(self, api: Api, env: dict, index: int, day: dt.date) -> dict:
        since, started = time.time(), time.monotonic()
        fault = self.faults.get(index)
        loaded = self.warehouse.load(day - dt.timedelta(days=1), fault)
        for p in self.pipelines:
            wait_backfills_done(api, p)
            backfill(env, p, day)
        watched = self.watch(api, index, day)
        maintained = maintenance(api, day)
        record = {"day": index, "date": str(day), "data_day": str(day - dt.timedelta(days=1)), "rows_loaded": loaded,
                  "fault": fault and {k: v for k, v in fault.items() if k != "expect"},
                  "expect": fault and fault["expect"], "maintenance": maintained, "pipelines": {}}
        for p in self.pipelines:
            record["pipelines"][p] = {**self.outcome(p, day, watched[p]), "anomalies": self.anomalies(p, day, since),
                                      "disk": self.disk(p)}
        messages = self.alerts.since(since)
        record["alerts"] = {"slack": sum(c == "slack" for _, c, _ in messages),
                            "email": sum(c == "email" for _, c, _ in messages)}
        record["disk"] = self.platform_disk()
        record["disk"]["pipelines"] = sum(r["disk"]["spans"] + r["disk"]["runs"] + r["disk"]["serving"]
                                          for r in record["pipelines"].values())
        record["disk"]["total"] = sum(record["disk"][k] for k in ("pipelines", "tracker_db", "airflow_db", "airflow_logs"))
        record["day_seconds"] = round(time.monotonic() - started, 1)
        return record

    def summary(self) -> dict:
        faults = []
        for index, fault in sorted(self.faults.items()):
            record = self.records[index - 1]
            caught = {p: [a["id"] for a in r["anomalies"] if a["kind"] in fault["expect"] and a["alerted"] and a["received"]]
                      for p, r in record["pipelines"].items()}
            faults.append({"day": index, "date": record["date"], "fault": fault["fault"], "expect": fault["expect"],
                           "operator": fault["operator"], "caught_by": caught, "caught": all(caught.values()),
                           "outcome": {p: r["outcome"] for p, r in record["pipelines"].items()}})
        blocked = [{"day": r["day"], "date": r["date"], "pipeline": p, "anomalies": r2["unexpected_blocks"]}
                   for r in self.records for p, r2 in r["pipelines"].items() if r2["unexpected_blocks"]]
        flat_from = self.season.get("flat_from_day", 1)
        past = [r for r in self.records if r["day"] >= flat_from]
        walls = [sum(filter(None, r2["run_seconds"])) for r in self.records for r2 in r["pipelines"].values()]
        per_day = [statistics.median([sum(filter(None, r2["run_seconds"])) for r2 in r["pipelines"].values()])
                   for r in self.records]
        return {"faults": faults, "faults_caught": sum(f["caught"] for f in faults), "faults_scheduled": len(faults),
                "clean_days_blocked": blocked,
                "disk_growth_bytes_per_day": {
                    "from_day": flat_from,
                    "pipelines": slope([r["day"] for r in past], [r["disk"]["pipelines"] for r in past]),
                    "airflow_db_logs_tracker": slope([r["day"] for r in past],
                                                     [r["disk"]["airflow_db"] + r["disk"]["airflow_logs"]
                                                      + r["disk"]["tracker_db"] for r in past])},
                "run_seconds": {"first_5_median": statistics.median(per_day[:5]) if per_day else None,
                                "last_5_median": statistics.median(per_day[-5:]) if per_day else None,
                                "slope_per_day": slope(list(range(1, len(per_day) + 1)), per_day),
                                "all": walls},
                "pages_ms": self.pages}


def slope(x: list[float], y: list[float]) -> float | None:
    """Least-squares slope (None with fewer than two points)."""
    if len(x) < 2 or len(set(x)) < 2:
        return None
    return round(statistics.linear_regression(x, y).slope, 1)


# -- output ---------------------------------------------------------------------------------------

def mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def day_rows(record: dict, pipelines: list[str]) -> list[list[str]]:
    rows = []
    for p in pipelines:
        r = record["pipelines"][p]
        filed = ", ".join(f"#{a['id']} {a['kind']} ({a['severity'][0]}{'' if a['alerted'] else ', NOT ALERTED'})"
                          for a in r["anomalies"]) or "-"
        disk = r["disk"]
        rows.append([str(record["day"]), record["date"], p, (record["fault"] or {}).get("fault", "-"), r["outcome"],
                     f"v{r['served']}" if r["served"] else "-", filed,
                     f"{record['alerts']['slack']}/{record['alerts']['email']}",
                     " + ".join(f"{s:.0f}" for s in r["run_seconds"] if s is not None),
                     f"{mb(disk['spans'])} ({disk['span_count']})", mb(disk["runs"]), mb(disk["serving"]),
                     mb(record["disk"]["tracker_db"]), mb(record["disk"]["airflow_db"]),
                     mb(record["disk"]["airflow_logs"]), mb(record["disk"]["total"])])
    return rows


HEADER = ["day", "date", "pipeline", "fault", "outcome", "served", "anomalies filed (severity)", "alerts slack/email",
          "run s", "spans MB (n)", "runs MB", "serving MB", "tracker MB", "airflow db MB", "logs MB", "total MB"]


def print_day(record: dict, pipelines: list[str]) -> None:
    for row in day_rows(record, pipelines):
        print(" | ".join(row), flush=True)


def markdown(report: dict) -> str:
    s = report["summary"]
    lines = [(f"Season `{report['season']}`: {report['days']} days, pipelines {', '.join(report['pipelines'])}, "
             f"{report['rows_per_day']:,} rows a day; {report['cpus']} CPUs, {report['wall_seconds'] / 60:.0f} min "
             f"({report['measured'][:10]})."), "", "| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |"
              for record in report["daily"] for row in day_rows(record, report["pipelines"])]
    lines += ["", "| day | fault | expected | caught by | outcome |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {f['day']} | {f['fault']} | {', '.join(f['expect'])} | "
              f"{'; '.join(f'{p}: ' + (', '.join(f'#{i}' for i in ids) or 'NOT CAUGHT') for p, ids in f['caught_by'].items())} | "
              f"{'; '.join(f['outcome'].values()).replace('|', '/')} |" for f in s["faults"]]
    growth, wall = s["disk_growth_bytes_per_day"], s["run_seconds"]
    blocked = ", ".join(f"day {b['day']} {b['pipeline']} ({', '.join(f'#{i}' for i in b['anomalies'])})"
                        for b in s["clean_days_blocked"]) or "none"
    lines += ["", f"- faults caught: {s['faults_caught']} of {s['faults_scheduled']}",
              f"- clean days blocked: {blocked}",
              (f"- disk growth from day {growth['from_day']} (least-squares slope): pipelines' storage "
              f"{fmt_bytes(growth['pipelines'])}/day, Airflow DB + logs + tracker {fmt_bytes(growth['airflow_db_logs_tracker'])}/day"),
              (f"- run wall (median over pipelines): first 5 days {wall['first_5_median']} s, last 5 days "
              f"{wall['last_5_median']} s, slope {wall['slope_per_day']} s/day")]
    for p in report["pipelines"]:
        first, last = (s["pages_ms"].get(k, {}).get(p, {}) for k in ("first_day", "last_day"))
        lines.append(f"- {p} pages (median of {PAGE_LOADS} loads): Models {first.get('models_ms')} -> "
                     f"{last.get('models_ms')} ms, Data {first.get('data_ms')} -> {last.get('data_ms')} ms (day 1 -> last day)")
    return "\n".join(lines) + "\n"


def fmt_bytes(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:+.2f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--pipelines", default="taxi_tips", help="comma-separated example pipelines")
    parser.add_argument("--season", type=Path, default=REPO / "bench" / "soak" / "season-ci.yaml")
    parser.add_argument("--out", type=Path, help="default .data/soak/<UTC timestamp>/")
    args = parser.parse_args(argv)
    out = (args.out or REPO / ".data" / "soak" / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")).resolve()
    out.mkdir(parents=True, exist_ok=False)
    soak = Soak(yaml.safe_load(args.season.read_text()), args.season, args.days, args.pipelines.split(","), out)
    print(" | ".join(HEADER), flush=True)
    try:
        report = soak.run()
    finally:
        soak.alerts.close()
    (out / "soak.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (out / "soak.md").write_text(text)
    print("\n" + text + f"\n{out / 'soak.json'}")
    s = report["summary"]
    return 1 if s["faults_caught"] < s["faults_scheduled"] or s["clean_days_blocked"] else 0


if __name__ == "__main__":
    sys.exit(main())
