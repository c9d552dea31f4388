"""Airflow's embedded SQLite metadata database under `make airflow`: the scheduler, the api-server
(for the running tasks), the dag-processor, the triggerer and the `airflow` CLI all write to one
file. A write that finds another writer's lock waits for it, rather than failing with `database is
locked` after sqlite3's default 5 s (seen: `airflow backfill create` while a backfill's runs ran)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

from pipeline_lib import settings

HOLD_S = 8  # longer than sqlite3's default wait
SETTINGS = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC")

# An Airflow process as the CLI and the components start: its configured engine writes once told to
WRITER = """
import sys, time
from sqlalchemy import text
from airflow import settings
print("ready", flush=True)
sys.stdin.readline()
started = time.monotonic()
with settings.engine.begin() as conn:
    conn.execute(text("DELETE FROM variable WHERE key = 'no such variable'"))
print(f"waited {time.monotonic() - started:.1f}", flush=True)
"""


def test_an_airflow_write_waits_for_another_writers_lock(airflow_db):
    assert settings.SQLITE_LOCK_WAIT_S > HOLD_S
    writer = subprocess.Popen([sys.executable, "-c", WRITER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "ready\n", writer.communicate()
    holder = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer's lock, as the scheduler holds while it commits
    writer.stdin.write("go\n")
    writer.stdin.flush()
    time.sleep(HOLD_S)
    holder.execute("COMMIT")
    holder.close()
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err[-2000:]
    assert float(out.split()[-1]) >= HOLD_S - 0.5  # it waited for the lock, then wrote


def test_make_sets_it_for_every_airflow_command():
    """The Makefile's recipes (`make airflow`, `make demo`) carry the same settings as these tests."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    shown = subprocess.run(["make", "--no-print-directory", "-s", "--eval",
                            "show: ; @echo " + " ".join(f"$${{{name}:-unset}}" for name in SETTINGS), "show"],
                           cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert shown == [os.environ[name] for name in SETTINGS] == ["pipeline_lib.settings.AIRFLOW_SQLITE_CONNECT_ARGS"] * 2
