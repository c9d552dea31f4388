"""Airflow's embedded SQLite metadata database under `make airflow`: the scheduler, the api-server
(for the running tasks), the dag-processor, the triggerer and the `airflow` CLI all write to one
file (pipeline_lib/airflow_sqlite.py). A write that finds another writer's lock waits for it rather
than failing with `database is locked`, and so does a transaction that reads before it writes
(seen: `airflow backfill create` while a backfill's runs ran)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
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


# As Airflow's backfill creation does for each run: a nested transaction reads, then writes
READ_THEN_WRITE = """
import sys
from sqlalchemy import text
from airflow.utils.session import create_session
with create_session() as session, session.begin_nested():
    session.execute(text("SELECT count(*) FROM variable")).scalar()
    print("read", flush=True)
    sys.stdin.readline()
    session.execute(text("INSERT INTO variable (key, val, is_encrypted) VALUES ('mine', 'x', 0)"))
"""


def test_a_transaction_that_read_before_writing_is_not_failed_by_another_writer(airflow_db):
    """Under WAL, a commit by another process between the read and the write used to fail the
    write at once (SQLITE_BUSY_SNAPSHOT): no lock wait applies to it."""
    db = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    reader = subprocess.Popen([sys.executable, "-c", READ_THEN_WRITE], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline() == "read\n", reader.communicate()

    def other_writer():
        with contextlib.closing(sqlite3.connect(db, timeout=60, isolation_level=None)) as conn:
            conn.execute("INSERT INTO variable (key, val, is_encrypted) VALUES ('other', 'y', 0)")

    other = threading.Thread(target=other_writer)
    other.start()
    time.sleep(1)  # the other writer commits now, or queues behind the reader's transaction
    reader.stdin.write("go\n")
    reader.stdin.flush()
    _, err = reader.communicate(timeout=60)
    other.join(timeout=60)
    assert reader.returncode == 0, err[-2000:]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        keys = {key for key, in conn.execute("SELECT key FROM variable WHERE key IN ('mine', 'other')")}
    assert keys == {"mine", "other"}


def test_make_sets_it_for_every_airflow_command():
    """The Makefile's recipes (`make airflow`, `make demo`) carry the same settings as these tests."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    shown = subprocess.run(["make", "--no-print-directory", "-s", "--eval",
                            "show: ; @echo " + " ".join(f"$${{{name}:-unset}}" for name in SETTINGS), "show"],
                           cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert shown == [os.environ[name] for name in SETTINGS] == ["pipeline_lib.airflow_sqlite.CONNECT_ARGS"] * 2
