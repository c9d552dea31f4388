"""The freshness deadline: a pipeline that has pushed no model for more than `alerts.no_push_days`
days (default three spans) is announced once, with why each run since its last push pushed
nothing, in the words of the run's report (blocked by anomalies #ids, a step that failed, refused
by the quality gate, no data). The maintenance DAG checks every pipeline daily and sends it.

Reckoned in logical dates, as the runs are: "today" is the maintenance run's logical date, a push
counts on its run's date (the end of the newest span it trained on), a pipeline that never pushed
counts from its first run. One alert per stretch without a push: `deadline.json` in the pipeline's
artifact folder remembers the push it alerted after; the next push starts a new stretch.
Stdlib only (the Airflow side calls it).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from pipeline_lib import artifacts, report, retention, serving, spans

STATE = "deadline.json"


def limit_days(config) -> int:
    return config.alerts.no_push_days or 3 * config.source.span_days


def last_push(config) -> tuple[int | None, dt.date | None]:
    """(version, its run's date) of the newest version pushed from a run (a rollback restores an
    older model: it is not a new one); kept or retired."""
    model_dir = config.serving.model_dir()
    kept = (serving.record(model_dir, v) | {"version": v} for v in reversed(serving.versions(model_dir)))
    for r in (*kept, *retention.retired_records(model_dir)):
        if r.get("span") and "rollback" not in r:
            return r["version"], spans.of(config, r["span"]).end
    return None, None


def _state_path(config) -> Path:
    return artifacts.pipeline_root(config.name) / STATE


def why(config, after: dt.date | None, today: dt.date) -> list[str]:
    """Each run since `after` up to `today`, what it did, from its report; runs with the same
    outcome are listed together."""
    dates = [d for d in retention.run_dates(config.name) if (after is None or d > after) and d <= today]
    grouped: dict[str, list[dt.date]] = {}
    for day in dates:
        text, _ = report.outcome(*report.results(config.name, day), report.filed(config.name, day))
        grouped.setdefault(text, []).append(day)
    lines = [f"{', '.join(d.isoformat() for d in days)}: {text}" for text, days in grouped.items()]
    return lines or [f"no run since {after or config.start_date} (is the DAG paused, or waiting for data?)"]


def check(config, today: dt.date) -> dict:
    """Whether the pipeline is past its deadline on `today`, and the alert to send (None: on time,
    outside its start/end dates, or already sent for this stretch)."""
    limit = limit_days(config)
    version, pushed_on = last_push(config)
    runs = retention.run_dates(config.name)
    since = pushed_on or (runs[0] if runs else config.start_date)
    days = (today - since).days
    result = {"today": today.isoformat(), "limit_days": limit, "last_push": {"version": version,
              "on": pushed_on and pushed_on.isoformat()}, "days_without_push": days, "late": False, "alert": None}
    if today < config.start_date or (config.end_date and today > config.end_date) or days <= limit:
        return result
    result["late"] = True
    state_path = _state_path(config)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state.get("after_version", "none") == (version or "never"):
        result["already_alerted_on"] = state["alerted_on"]
        return result
    last = f"version {version}, pushed by the run of {pushed_on}" if version else f"none since {since}"
    subject = f"[{config.name}] no model pushed for {days} days (deadline {limit} days)"
    result["alert"] = {"subject": subject, "lines": [f"last model pushed: {last}", "why, run by run:",
                                                     *why(config, pushed_on, today)]}
    return result


def mark_alerted(config, result: dict) -> None:
    """Remember that this stretch's alert went out (after it was sent: a failed send is tried again)."""
    state = {"after_version": result["last_push"]["version"] or "never", "alerted_on": result["today"]}
    _state_path(config).parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(_state_path(config), state)
