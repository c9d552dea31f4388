"""The platform's daily maintenance (dags/platform_maintenance.py): each pipeline's retention and
freshness deadline, and old task logs (`airflow db clean` runs beside Airflow, not in a task:
scripts/airflow_db_clean.sh). Every pipeline is handled on its own: one whose config does not
load, or whose clean-up fails, is reported and fails the task after the others were done."""

from __future__ import annotations

import datetime as dt
import html
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from airflow.configuration import conf
from airflow.sdk.exceptions import AirflowException

from pipeline_lib import artifacts, deadline, retention
from pipeline_lib.config import discover, load_config
from pipeline_ops import alerts
from pipeline_ops.links import PAGES_PREFIX
from pipeline_ops.operators import span_date

log = logging.getLogger(__name__)
ACTIVE = ["queued", "running"]


def each_pipeline(work: Callable[[object], dict]) -> dict[str, dict]:
    """`work(config)` for every pipeline; failures are collected, then raised together."""
    done, failed = {}, {}
    for path in discover():
        try:
            done[path.parent.name] = work(load_config(path, check_schema=False))
        except Exception as e:  # one pipeline's problem must not stop the others'
            log.exception("%s: maintenance failed", path)
            failed[path.parent.name] = f"{type(e).__name__}: {e}"
    if failed:
        raise AirflowException(f"maintenance failed for {sorted(failed)} (done for {sorted(done)}): {failed}")
    return done


def in_flight(ti, config) -> set[dt.date]:
    """The logical dates of the pipeline's queued or running DAG runs (asked of Airflow through the
    Task SDK) that have a run folder: a run that has not reached ingest reads nothing yet. Newest
    first, as runs in flight usually are, and no further back than a run can live (its sensors'
    timeouts and a day): the search costs the same on day 300 as on day 1."""
    active = ti.get_dr_count(dag_id=config.name, states=ACTIVE)
    lifetime = (2 * config.validation.wait_timeout_seconds + 60 * config.source.freshness.timeout_minutes + 86_400)
    found: set[dt.date] = set()
    for day in reversed(retention.run_dates(config.name)):
        if len(found) == active or artifacts.run_dir(config.name, day).stat().st_mtime < time.time() - lifetime:
            break
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        if ti.get_dr_count(dag_id=config.name, logical_dates=[midnight], states=ACTIVE):
            found.add(day)
    return found


def apply_retention(context) -> dict[str, dict]:
    return each_pipeline(lambda config: retention.apply(config, in_flight(context["ti"], config)))


def check_deadlines(context) -> dict[str, dict]:
    """Each pipeline's freshness deadline on the run's logical date; the first alert of a stretch
    without a push goes to the pipeline's channels (and is remembered only once sent)."""
    today = span_date(context)

    def check(config) -> dict:
        result = deadline.check(config, today)
        alert = result["alert"]
        if alert:
            page = f"{alerts.base_url()}{PAGES_PREFIX}/models?pipeline={config.name}"
            lines = [*alert["lines"], f"models: {page}"]
            if alerts.channels(config.alerts):
                alerts.send(config.alerts, alert["subject"], f"*{alert['subject']}*\n" + "\n".join(lines),
                            f"<h3>{html.escape(alert['subject'])}</h3>" + "".join(f"<p>{html.escape(line)}</p>" for line in lines))
                deadline.mark_alerted(config, result)
            else:
                log.warning("%s: NOT alerted, no alert channel configured: %s", config.name, alert["subject"])
            log.warning("%s\n%s", alert["subject"], "\n".join(lines))
        return result

    return each_pipeline(check)


def clean_task_logs(days: int, folder: Path | None = None) -> dict:
    """Task log files older than `days` (by modification time), then the folders left empty: what
    the official Airflow image's `clean-logs` does, for the local log folder."""
    folder = folder or Path(conf.get("logging", "base_log_folder"))
    cutoff, removed, freed = time.time() - days * 86_400, 0, 0
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = Path(root) / name
            stat = path.lstat()
            if stat.st_mtime < cutoff:
                path.unlink()
                removed, freed = removed + 1, freed + stat.st_size
        for name in dirs:
            with_nothing = Path(root) / name
            if not any(with_nothing.iterdir()):
                with_nothing.rmdir()
    log.info("task logs older than %d days in %s: %d files, %.1f MB removed", days, folder, removed, freed / 1e6)
    return {"folder": str(folder), "files_removed": removed, "bytes_freed": freed}
