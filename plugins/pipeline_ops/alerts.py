"""Alerts through Airflow's providers: Slack (a slackwebhook connection) and email (an SMTP
connection), both named in the pipeline config's `alerts`. The webhook token and SMTP password
live in those connections; messages and logs carry only connection ids."""

from __future__ import annotations

import html
from urllib.parse import quote, urlencode

from airflow.configuration import conf
from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

from pipeline_ops.operators import SKIP_REASON

PAGE_PREFIX = "/anomaly-tracker"  # where the plugin serves its page (see anomaly_ui.py)


def base_url() -> str:
    """Where Airflow is reached, read when a link is made: [api] base_url (AIRFLOW__API__BASE_URL),
    else Airflow's own default, as its task log links use."""
    return (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")


def page_url(pipeline: str, anomaly_id: int | None = None) -> str:
    query = {"pipeline": pipeline, **({"id": anomaly_id} if anomaly_id else {})}
    return f"{base_url()}{PAGE_PREFIX}/?{urlencode(query)}"


def run_url(dag_id: str, run_id: str) -> str:
    return f"{base_url()}/dags/{quote(dag_id)}/runs/{quote(run_id)}"


def anomaly_message(records: list[dict]) -> tuple[str, str, str]:
    """(subject, plain text for Slack, HTML for email) of one feature's new, reopened or worse
    anomalies of one filing: one cause, one message (a record per kind inside)."""
    first = records[0]
    verbs = dict.fromkeys({"new": "new", "reopened": "reopened", "worse": "worse"}.get(r["outcome"], "open")
                          for r in records)
    severity = "blocking" if any(r["severity"] == "blocking" for r in records) else "warning"
    ids, kinds = ", ".join(f"#{r['id']}" for r in records), ", ".join(r["kind"] for r in records)
    subject = f"[{first['pipeline']}] {'/'.join(verbs)} {severity} anomaly {ids}: {first['feature']} {kinds}"
    blocking = ("this run waits before the next step until it is resolved or accepted"
                if severity == "blocking" else "warning only: the run goes on")
    lines = [f"pipeline: {first['pipeline']}", f"feature: {first['feature']}"]
    for r in records:
        lines += [f"kind: {r['kind']} ({r['severity']}, #{r['id']})",
                  f"span: {r['last_span']} (seen {r['occurrences']} times)",
                  f"description: {r['description'].strip()}",
                  f"examples: {', '.join(map(str, r['examples'])) or '-'}"]
    lines.append(blocking)
    links = [f"tracker: {page_url(r['pipeline'], r['id'])}" for r in records]
    text = f"*{subject}*\n" + "\n".join(lines + links)
    body = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    pages = "".join(f'<p><a href="{html.escape(page_url(r["pipeline"], r["id"]))}">Open #{r["id"]} in the anomaly '
                    f'tracker</a></p>' for r in records)
    return subject, text, f"<h3>{html.escape(subject)}</h3><ul>{body}</ul>{pages}"


def channels(alerts) -> list[str]:
    """The channels the config names; none means alerts cannot go anywhere."""
    return [name for name, on in (("slack", alerts.slack_conn_id), ("email", alerts.email_to)) if on]


def send(alerts, subject: str, text: str, html_content: str) -> None:
    """One Slack message and one email, to whichever the config names."""
    if alerts.slack_conn_id:
        SlackWebhookHook(slack_webhook_conn_id=alerts.slack_conn_id).send(text=text)
    if alerts.email_to:
        with SmtpHook(smtp_conn_id=alerts.smtp_conn_id) as smtp:
            smtp.send_email_smtp(to=alerts.email_to, subject=subject, html_content=html_content)


# a skipped task's callback gets no exception: the push tells why it refused (not blessed, failed
# infra validation, span already pushed) in an XCom
EXCEPTION = "{{ exception or '' }}"
PUSH_REFUSED = f"{{{{ ti.xcom_pull(task_ids='push', key='{SKIP_REASON}') }}}}"
PUSHED = ("{{ (ti.xcom_pull(task_ids='push') or {}).get('reason') }}: serving version "
          "{{ (ti.xcom_pull(task_ids='push') or {}).get('version') }}")


def task_notifiers(alerts, event: str, reason: str = EXCEPTION) -> list:
    """Notifiers for a task callback (`failed`, `skipped`), rendered from the task's context."""
    subject = f"[{{{{ dag.dag_id }}}}] task {{{{ ti.task_id }}}} {event} (run {{{{ run_id }}}})"
    link = f"{base_url()}/dags/{{{{ dag.dag_id | urlencode }}}}/runs/{{{{ run_id | urlencode }}}}"
    out = []
    if alerts.slack_conn_id:
        out.append(SlackWebhookNotifier(slack_webhook_conn_id=alerts.slack_conn_id,
                                        text=f"*{subject}*\n{reason}\nrun: {link}"))
    if alerts.email_to:
        out.append(SmtpNotifier(to=alerts.email_to, smtp_conn_id=alerts.smtp_conn_id, subject=subject,
                                html_content=f"<h3>{subject}</h3><p>{reason}</p><p><a href=\"{link}\">the run</a></p>"))
    return out
