"""The tracker's page in the Airflow 3 API server (the real app, plugins loaded from plugins/):
nothing without Airflow's JWT, read for viewers, actions for those who may edit the DAG."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from conftest import airflow_token
from pipeline_fixtures import write_pipeline

from pipeline_lib.anomalies.tracker import Tracker

DRIFT = {"feature": "payment_type", "kind": "COMPARATOR_L_INFTY_HIGH", "severity": "blocking", "examples": ["'Cash'"],
         "description": "The Linfty distance between current and previous is 0.48, above the threshold 0.1."}
WARNING = {"feature": "company", "kind": "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "severity": "warning",
           "examples": ["'<script>alert(1)</script>'"], "description": "Examples contain values missing from the schema"}


@pytest.fixture
def client(isolated, airflow_db, monkeypatch):
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    write_pipeline(isolated / "pipelines")
    purge_cached_app()
    return TestClient(create_app(), base_url="http://127.0.0.1")


def test_page_and_actions_need_airflow_auth(client):
    drift, _warning = Tracker().file("taxi_tips", dt.date(2017, 1, 1), "run1", [DRIFT, WARNING])
    assert client.get("/anomaly-tracker/").status_code == 401
    assert client.post(f"/anomaly-tracker/{drift['id']}/ack").status_code == 401
    assert client.get("/anomaly-tracker/", headers={"Authorization": "Bearer forged"}).status_code == 403
    assert Tracker().get(drift["id"])["status"] == "open"

    client.cookies.set("_token", airflow_token("viewer"))
    page = client.get("/anomaly-tracker/", params={"pipeline": "taxi_tips"})
    assert page.status_code == 200 and "Signed in as viewer-user" in page.text
    assert f"#{drift['id']}" in page.text and "COMPARATOR_L_INFTY_HIGH" in page.text
    assert "&lt;script&gt;" in page.text and "<script>" not in page.text
    assert "<button" not in page.text.split("</form>", 1)[1], "a viewer gets no action buttons"
    assert client.post(f"/anomaly-tracker/{drift['id']}/ack").status_code == 403
    only_warnings = client.get("/anomaly-tracker/", params={"severity": "warning"}).text
    assert "company" in only_warnings and "COMPARATOR_L_INFTY_HIGH" not in only_warnings

    client.cookies.set("_token", airflow_token("admin"))
    page = client.get("/anomaly-tracker/")
    assert f'action="/anomaly-tracker/{drift["id"]}/accept"' in page.text
    assert 'href="/pipeline-pages/data?pipeline=taxi_tips&amp;span=2017-01-01"' in page.text
    csrf = {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)}
    assert client.post(f"/anomaly-tracker/{drift['id']}/ack").status_code == 403, "no CSRF token"
    assert client.post(f"/anomaly-tracker/{drift['id']}/ack", data={"csrf_token": "forged"}).status_code == 403
    acked = client.post(f"/anomaly-tracker/{drift['id']}/ack", data=csrf, follow_redirects=False)
    assert acked.status_code == 303 and "acknowledged+by+admin-user" in acked.headers["location"]
    assert Tracker().get(drift["id"])["owner"] == "admin-user"
    accepted = client.post(f"/anomaly-tracker/{drift['id']}/accept", data={"note": "new fare policy", **csrf})
    assert accepted.status_code == 200 and "accepted by admin-user" in accepted.text
    record = Tracker().get(drift["id"])
    assert (record["status"], record["resolved_by"], record["note"]) == ("accepted", "admin-user", "new fare policy")
    assert "no schema change" in record["schema_diff"]
    again = client.post(f"/anomaly-tracker/{drift['id']}/resolve", data=csrf)
    assert re.search(r"is accepted; only open or acknowledged ones can be resolved", again.text)
    detail = client.get("/anomaly-tracker/", params={"id": drift["id"], "status": "accepted"}).text
    assert "run1" in detail and "accepted by admin-user" in detail


def test_status_any_lists_every_status_and_no_status_the_records_that_need_someone(client):
    findings = [{**WARNING, "feature": feature} for feature in ("company", "fare", "tips", "trip_miles")]
    tracker = Tracker()
    ids = {r["feature"]: r["id"] for r in tracker.file("taxi_tips", dt.date(2017, 1, 1), "run1", findings)}
    tracker.ack(ids["fare"], "dana")
    tracker.resolve(ids["tips"], "erin")
    tracker.accept(ids["trip_miles"], "erin", "no schema change")
    client.cookies.set("_token", airflow_token("viewer"))

    def listed(**query) -> set[str]:
        page = client.get("/anomaly-tracker/", params={"pipeline": "taxi_tips", **query}).text
        return set(re.findall(r"<td>taxi_tips</td><td>(\w+)</td>", page))

    assert listed() == {"company", "fare"}, "open and acknowledged ones by default"
    assert listed(status="any") == {"company", "fare", "tips", "trip_miles"}
    assert listed(status="resolved") == {"tips"} and listed(status="accepted") == {"trip_miles"}
    form = client.get("/anomaly-tracker/", params={"status": "any"}).text.split("</form>")[0]
    assert '<option value="any" selected>any</option>' in form
    assert '<option value="">open or acknowledged</option>' in form and '<option value="" selected>any</option>' in form
