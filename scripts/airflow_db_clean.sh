#!/usr/bin/env bash
# Airflow's metadata older than PIPELINE_AIRFLOW_RETENTION_DAYS (default 30) removed now and then
# once a day: `airflow db clean` beside Airflow's components, as a scheduled job does in production
# (a task cannot run it: Airflow 3 gives tasks no access to the metadata database). A failed clean
# is logged and tried again the next day. `make airflow` starts it with the four components.
set -uo pipefail
bin=${AIRFLOW_BIN:-.venv-airflow/bin}
days=${PIPELINE_AIRFLOW_RETENTION_DAYS:-30}
while true; do
    before=$(date -u -d "-$days days" +%Y-%m-%dT%H:%M:%S+00:00)
    echo "$(date -u +%FT%TZ) airflow db clean --clean-before-timestamp $before"
    "$bin/airflow" db clean --clean-before-timestamp "$before" --yes --skip-archive \
        || echo "airflow db clean failed (exit $?); next try in a day"
    sleep 86400
done
