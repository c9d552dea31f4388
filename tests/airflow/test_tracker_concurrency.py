"""Several pipelines' file_anomalies tasks start at once on a new SQLite tracker file (daily
schedules all start at midnight): each migrates and files without a lock error."""

from __future__ import annotations

import subprocess
import sys

FILE = """
import datetime as dt, sys, time
from pipeline_lib.anomalies.tracker import Tracker
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all start together
tracker = Tracker(sys.argv[1])
tracker.file(sys.argv[2], dt.date(2017, 1, 1), "run-" + sys.argv[2], [
    {"feature": "fare", "kind": "DRIFT", "description": "drift", "severity": "warning", "examples": []}])
"""


def test_pipelines_filing_at_once_on_a_new_sqlite_file_all_succeed(tmp_path):
    import time

    from pipeline_lib.anomalies.tracker import Tracker

    url = f"sqlite:///{tmp_path / 'anomalies.db'}"
    start = time.time() + 4  # past every process's imports
    procs = [subprocess.Popen([sys.executable, "-c", FILE, url, f"pipeline_{i}", str(start)],
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)[-3000:]
    assert sorted(a["pipeline"] for a in Tracker(url).list()) == [f"pipeline_{i}" for i in range(4)]
