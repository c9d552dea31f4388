#!/usr/bin/env bash
# The compose stack's airflow-init service (docker-compose.yaml), run as root in the Airflow image:
# Airflow's migrations, the admin user's password, the alert connections (SMTP to the mail catcher,
# Slack webhook to the receiver; both overwritten on every start, so .env changes take effect), the
# anomaly tracker's schema, the taxi sample in the warehouse, the model server's config (the
# pipelines' pushed models; each push rewrites it); then hands the volumes to uid 50000.
set -euo pipefail

echo "waiting for the metadata database"
for _ in $(seq 60); do airflow db check >/dev/null 2>&1 && break; sleep 2; done
airflow db migrate

python - <<'PY'
import json, os
auth = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
user = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(":")[0]
with open(auth, "w") as f:
    json.dump({user: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, f)
env = os.environ.get
connections = {
    env("ALERT_SMTP_CONN_ID", "smtp_default"): {
        "conn_type": "smtp", "host": env("ALERT_SMTP_HOST", "mailcatcher"), "port": int(env("ALERT_SMTP_PORT", "1025")),
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": env("ALERT_FROM_EMAIL", "airflow@example.com")}},
    env("ALERT_SLACK_CONN_ID", "slack_alerts"): {
        "conn_type": "slackwebhook", "host": env("ALERT_SLACK_WEBHOOK_BASE", "http://webhook-receiver:8099/services"),
        "password": env("ALERT_SLACK_WEBHOOK_TOKEN", "T000/B000/XXXX")},
}
with open("/tmp/connections.json", "w") as f:
    json.dump(connections, f)
print("admin user:", user, "| connections:", ", ".join(connections))
PY
airflow connections import --overwrite /tmp/connections.json
rm -f /tmp/connections.json

python -c "from pipeline_lib.anomalies.tracker import Tracker; Tracker(); print('anomaly tracker schema: up to date')"
python /opt/project/scripts/load_taxi_sample.py /opt/project/downloads/tfx-*.whl "$PIPELINE_WAREHOUSE"
python -m pipeline_lib.serving model-config

chown -R 50000:0 /opt/airflow/auth /data/warehouse /data/artifacts /models
echo "airflow-init done"
