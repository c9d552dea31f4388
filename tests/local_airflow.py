"""`make airflow` (scripts/airflow_local.sh) on a free port of 127.0.0.1 with a private AIRFLOW_HOME,
and its REST API. Shared by the scheduler tests and the benchmark (bench/pipeline_bench.py): stdlib
and pipeline_lib's fork-server client only, no Airflow import."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipeline_lib import fork_server, settings

RUN_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_of(home: Path) -> list[str]:
    """Command lines of the processes started with this AIRFLOW_HOME."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"AIRFLOW_HOME={home}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return found


class Api:
    """The REST API with a JWT from /auth/token (Airflow 3's SimpleAuthManager)."""

    def __init__(self, url: str, home: Path):
        self.url = url
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        self.token = self.call("POST", "/auth/token", {"username": "admin", "password": password},
                               auth=False)["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, method=method, headers=headers,
                                         data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def runs(self) -> list[dict]:
        return self.call("GET", "/api/v2/dags/taxi_tips/dagRuns?limit=100")["dag_runs"]

    def wait(self, done, what: str, timeout: float = RUN_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if result := done():
                    return result
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(3)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def finished(api: Api, run_id: str, dag_id: str = "taxi_tips") -> dict | None:
    """The run, once it has succeeded or failed."""
    run = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
    return run if run["state"] in ("success", "failed") else None


@contextlib.contextmanager
def local_airflow(home: Path, env: dict[str, str], log: Path) -> Iterator[Api]:
    """`make airflow` with AIRFLOW_HOME=`home` (migrated first) and `env`, its output in `log`; yields
    the logged-in API once it answers. On the way out: stops it and the warm ML process of env's
    PIPELINE_RUNTIME_DIR (it outlives tasks by design), waits for the script to stop each component
    (SIGINT, SIGKILL after 30 s) and raises if anything started with `home` is still running or
    anything answers on the port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen(["make", "--no-print-directory", "airflow", f"AIRFLOW_HOME={home}",
                                 f"AIRFLOW_PORT={port}"], cwd=settings.REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops it" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Airflow did not start in 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield Api(url, home)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        fork_server.stop(Path(env["PIPELINE_RUNTIME_DIR"]))
        deadline = time.monotonic() + 60
        while processes_of(home) and time.monotonic() < deadline:
            time.sleep(1)
        left = processes_of(home)
        with contextlib.suppress(urllib.error.URLError):  # the api-server, whose title hides its environment
            urllib.request.urlopen(url + "/api/v2/monitor/health", timeout=5)
            left.append(f"something answering on {url}")
        if left:
            raise RuntimeError(f"left running: {left}")
