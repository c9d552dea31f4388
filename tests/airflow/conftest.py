"""Airflow-environment tests: a private AIRFLOW_HOME with a migrated SQLite database, the repo's
dags/ and plugins/, and private artifact and serving roots. Set before Airflow is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="airflow-test-"))
os.environ.update({
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    # as the Makefile sets for every Airflow command (test_metadata_db.py)
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "pipeline_lib.airflow_sqlite.CONNECT_ARGS",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "pipeline_lib.airflow_sqlite.CONNECT_ARGS",
    "PIPELINE_RUNTIME_DIR": str(_HOME / "run"),  # the warm ML process the local launcher starts
    "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,  # an API server started in a test needs one
})
sys.path[:0] = [str(REPO / "plugins"), str(REPO / "tests")]


@pytest.fixture(scope="session", autouse=True)
def warm_ml_process():
    """The warm ML processes that steps started (pipeline_lib/fork_server.py) stop with the session."""
    yield
    from pipeline_lib import fork_server

    fork_server.stop(_HOME / "run")


@pytest.fixture(scope="session")
def airflow_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


def isolate(root: Path, monkeypatch) -> Path:
    """Point pipelines folder, artifact store, model repository, warehouse copy and anomaly
    tracker at private places under `root`."""
    from pipeline_fixtures import warehouse_copy

    monkeypatch.setenv("PIPELINES_DIR", str(root / "pipelines"))
    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", str(root / "artifacts"))
    monkeypatch.setenv("PIPELINE_SERVING_ROOT", str(root / "serving"))
    monkeypatch.setenv("PIPELINE_WAREHOUSE", str(warehouse_copy(root)))
    monkeypatch.setenv("PIPELINE_ANOMALY_DB", f"sqlite:///{root / 'anomalies.db'}")
    return root


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Private pipelines folder, artifact store, model repository, warehouse copy and anomaly
    tracker for one test."""
    return isolate(tmp_path, monkeypatch)


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1; yields (port, list of received email.Message)."""
    import email
    import socket

    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(email.message_from_bytes(envelope.original_content))
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, received
    controller.stop()


@pytest.fixture
def webhook_server():
    """A real HTTP server on 127.0.0.1 standing in for Slack's webhook endpoint; yields (port,
    list of (path, JSON body))."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], received
    server.shutdown()


WEBHOOK_TOKEN = "T000/B000/not-a-real-secret-3f9c"


@pytest.fixture
def alert_connections(smtp_server, webhook_server, monkeypatch):
    """Airflow connections (as env vars) to the two local servers: slack_alerts, smtp_alerts."""
    import json

    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
        {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{webhook_server[0]}/services",
         "password": WEBHOOK_TOKEN}))
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_server[0],
         "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.com"}}))
    return {"slack": webhook_server[1], "email": smtp_server[1]}


ALERTS = {"slack_conn_id": "slack_alerts", "smtp_conn_id": "smtp_alerts", "email_to": ["ml-team@example.com"]}


def airflow_token(role: str | None) -> str:
    """A JWT of Airflow's auth manager for user `<role>-user` (role None: signed in, no rights)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=f"{role}-user", role=role))
