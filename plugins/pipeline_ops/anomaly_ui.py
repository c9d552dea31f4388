"""The anomaly tracker's page in the Airflow 3 UI: a FastAPI app that the plugin mounts at
/anomaly-tracker. Plugin apps are served without authentication, so every route here takes the
user from Airflow's own JWT (bearer header or the UI's `_token` cookie) and asks the auth manager
whether that user may read (GET) or edit (PUT) the pipeline's DAG."""

from __future__ import annotations

import html
from urllib.parse import urlencode

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI, Form, HTTPException, Query
from fastapi.responses import HTMLResponse, RedirectResponse

from pipeline_lib.anomalies.accepting import accept
from pipeline_lib.anomalies.models import OPEN, SEVERITIES, STATUSES
from pipeline_lib.anomalies.tracker import TrackerError
from pipeline_ops.alerts import PAGE_PREFIX
from pipeline_ops.anomaly_ops import tracker
from pipeline_ops.links import PAGES_PREFIX
from pipeline_ops.page_auth import CSRF_FIELD, check_csrf, csrf_token, may

app = FastAPI(title="Anomaly tracker", docs_url=None, redoc_url=None, openapi_url=None)
ACTIONS = {"ack": ("open",), "resolve": OPEN, "accept": OPEN}
ANY = "any"
# the status filter: none given shows the records that still need someone; "any" shows every one
STATUS_CHOICES = {"": "open or acknowledged", ANY: ANY, **{s: s for s in STATUSES}}
SEVERITY_CHOICES = {"": ANY, **{s: s for s in SEVERITIES}}

STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.35em;text-align:left;vertical-align:top;font-size:.9em}
.blocking{color:#b00020;font-weight:bold}.open{background:#fff4f4}form.inline{display:inline}
pre{background:#f6f6f6;padding:.5em;overflow:auto}.msg{padding:.5em;background:#eef}"""


def _select(name: str, choices: dict[str, str], chosen: str | None) -> str:
    opts = "".join(f'<option value="{value}"{" selected" if value == (chosen or "") else ""}>{label}</option>'
                   for value, label in choices.items())
    return f'<label>{name} <select name="{name}">{opts}</select></label> '


def _row(a: dict, user_may_edit: bool, csrf: str) -> str:
    e = html.escape
    actions = "".join(
        f'<form class="inline" method="post" action="{PAGE_PREFIX}/{a["id"]}/{name}">'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{e(csrf)}"><button type="submit">{name}</button></form> '
        for name, allowed in ACTIONS.items() if user_may_edit and a["status"] in allowed)
    link = f'{PAGE_PREFIX}/?{urlencode({"pipeline": a["pipeline"], "id": a["id"]})}'
    data = f'{PAGES_PREFIX}/data?{urlencode({"pipeline": a["pipeline"], "span": a["last_span"]})}'
    run = a["runs"][-1]["run_url"] if a["runs"] else None
    actions += f'<a href="{e(data)}">data</a> ' + (f'<a href="{e(run)}" target="_top">run</a>' if run else "")
    return (f'<tr class="{"open" if a["status"] in OPEN else ""}"><td><a href="{link}">#{a["id"]}</a></td>'
            f'<td>{e(a["pipeline"])}</td><td>{e(a["feature"])}</td><td>{e(a["kind"])}</td>'
            f'<td class="{a["severity"]}">{a["severity"]}</td><td>{a["status"]}{" (not alerted)" if a["alert_pending"] else ""}</td><td>{a["occurrences"]}</td>'
            f'<td>{a["last_span"]}</td><td>{e(a["owner"] or "-")}</td>'
            f'<td>{e(", ".join(map(str, a["examples"])))}</td><td>{e(a["description"])}</td><td>{actions}</td></tr>')


def _detail(a: dict) -> str:
    e = html.escape
    runs = "".join(f'<li>{r["span"]}: <a href="{e(r["run_url"] or "#")}">{e(r["run_id"])}</a> '
                   f'statistics {e(r["statistics"] or "-")}</li>' for r in a["runs"])
    done = f'<p>{a["status"]} by {e(a["resolved_by"])} at {a["resolved_at"]}</p>' if a["resolved_by"] else ""
    diff = f'<h3>Schema change</h3><pre>{e(a["schema_diff"])}</pre>' if a["schema_diff"] else ""
    note = f'<p>Note: {e(a["note"])}</p>' if a["note"] else ""
    return (f'<h2>#{a["id"]} {e(a["pipeline"])}/{e(a["feature"])}: {e(a["kind"])}</h2>'
            f'<p>{e(a["description"])}</p>{done}{note}<h3>Runs</h3><ul>{runs}</ul>{diff}')


@app.get("/", response_class=HTMLResponse)
def page(user: GetUserDep, pipeline: str | None = None, status: str | None = None, severity: str | None = None,
         feature: str | None = None, kind: str | None = None, id: int | None = None,
         message: str | None = Query(default=None, alias="msg")) -> str:
    statuses = None if status == ANY else [status] if status else list(OPEN)
    found = [a for a in tracker().list(pipeline=pipeline, status=statuses, severity=severity, feature=feature, kind=kind)
             if may(user, "GET", a["pipeline"])]
    detail = ""
    if id is not None:
        try:
            record = tracker().get(id)
        except TrackerError as e:
            raise HTTPException(404, str(e)) from None
        if not may(user, "GET", record["pipeline"]):
            raise HTTPException(403, "not allowed to read this pipeline's anomalies")
        detail = _detail(record)
    form = (f'<form method="get" action="{PAGE_PREFIX}/">'
            f'<label>pipeline <input name="pipeline" value="{html.escape(pipeline or "")}"></label> '
            + _select("status", STATUS_CHOICES, status) + _select("severity", SEVERITY_CHOICES, severity)
            + f'<label>feature <input name="feature" value="{html.escape(feature or "")}"></label> '
            f'<label>kind <input name="kind" value="{html.escape(kind or "")}"></label> '
            '<button type="submit">filter</button></form>')
    head = ("<tr><th>id</th><th>pipeline</th><th>feature</th><th>kind</th><th>severity</th><th>status</th>"
            "<th>seen</th><th>last span</th><th>owner</th><th>examples</th><th>description</th><th></th></tr>")
    csrf = csrf_token(user)
    rows = "".join(_row(a, may(user, "PUT", a["pipeline"]), csrf) for a in found) or \
        '<tr><td colspan="12">no anomalies match</td></tr>'
    note = f'<p class="msg">{html.escape(message)}</p>' if message else ""
    return (f"<!doctype html><html><head><title>Anomalies</title><style>{STYLE}</style></head><body>"
            f"<h1>Data anomalies</h1><p>Signed in as {html.escape(user.get_name())}</p>{note}{form}"
            f"<table>{head}{rows}</table>{detail}</body></html>")


@app.post("/{anomaly_id}/{action}")
def act(anomaly_id: int, action: str, user: GetUserDep, note: str | None = Form(default=None),
        token: str | None = Form(default=None, alias=CSRF_FIELD)):
    """ack / resolve / accept as the signed-in user (with the page's CSRF token), then back to the
    page with what happened."""
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r}")
    t = tracker()
    try:
        record = t.get(anomaly_id)
    except TrackerError as e:
        raise HTTPException(404, str(e)) from None
    if not may(user, "PUT", record["pipeline"]):
        raise HTTPException(403, "not allowed to change this pipeline's anomalies")
    check_csrf(user, token)
    who = user.get_name()
    try:
        done = accept(t, anomaly_id, who, note) if action == "accept" else getattr(t, action)(anomaly_id, who, note)
        message = f"#{anomaly_id} {done['status']} by {who}"
    except TrackerError as e:
        message = f"#{anomaly_id}: {e}"
    query = urlencode({"pipeline": record["pipeline"], "id": anomaly_id, "msg": message})
    return RedirectResponse(f"{PAGE_PREFIX}/?{query}", status_code=303)
