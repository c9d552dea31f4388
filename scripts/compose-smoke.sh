#!/usr/bin/env bash
# The local stack, end to end (not part of `make test`: it builds images, ~10-20 min the first time):
# builds the images FROM $BASE_IMAGE, brings docker-compose.yaml up, waits for health, triggers
# taxi_tips for 2017-01-01 over Airflow's REST API, waits for the run's success, checks that the
# push's alert email reached the mail catcher (and the Slack receiver), and tears the stack down.
#
#   bash scripts/compose-smoke.sh                         # podman + podman-compose, local base image
#   ENGINE=docker COMPOSE="docker compose" BASE_IMAGE=python:3.11-slim-bookworm bash scripts/compose-smoke.sh
#
# SKIP_BUILD=1 reuses built images; KEEP_STACK=1 leaves the stack up. Where no registry is reachable,
# Postgres and Redis come from docker/postgres and docker/redis (POSTGRES_IMAGE, REDIS_IMAGE); the
# model server (TF Serving) runs only where its image is present or can be pulled. The pipeline
# runs from a copy of pipelines/ with alerts to the mail catcher and the Slack receiver
# (alerts.on_push) and no schedule (only the triggered run).
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-podman}
COMPOSE=${COMPOSE:-podman-compose}
PROJECT=${PROJECT:-taxi-smoke}
export BASE_IMAGE=${BASE_IMAGE:-localhost/debian:bookworm}
export AIRFLOW_IMAGE=${AIRFLOW_IMAGE:-localhost/taxi-airflow:latest}
export WORKER_IMAGE=${WORKER_IMAGE:-localhost/taxi-worker:latest}
export POSTGRES_IMAGE=${POSTGRES_IMAGE:-localhost/taxi-postgres:latest}
export REDIS_IMAGE=${REDIS_IMAGE:-localhost/taxi-redis:latest}
export MAILCATCHER_IMAGE=${MAILCATCHER_IMAGE:-localhost/taxi-mailcatcher:latest}
export WEBHOOK_RECEIVER_IMAGE=${WEBHOOK_RECEIVER_IMAGE:-localhost/taxi-webhook-receiver:latest}
export MODEL_SERVER_IMAGE=${MODEL_SERVER_IMAGE:-tensorflow/serving:2.16.1}
export AIRFLOW_PORT=${AIRFLOW_PORT:-18080} MAILCATCHER_PORT=${MAILCATCHER_PORT:-11080}
export WEBHOOK_RECEIVER_PORT=${WEBHOOK_RECEIVER_PORT:-18099} MODEL_SERVER_PORT=${MODEL_SERVER_PORT:-18501}
export AIRFLOW_ADMIN_USER=${AIRFLOW_ADMIN_USER:-admin} AIRFLOW_ADMIN_PASSWORD=${AIRFLOW_ADMIN_PASSWORD:-admin}
START=$(date +%s)
step() { echo "[$(( $(date +%s) - START ))s] $*"; }

build() {  # TAG DOCKERFILE [ARGS...]
  local tag=$1 file=$2 t0; shift 2; t0=$(date +%s)
  "$ENGINE" build -q -t "$tag" -f "$file" --build-arg BASE_IMAGE="$BASE_IMAGE" "$@" . >/dev/null
  step "built $tag in $(( $(date +%s) - t0 ))s"
}
if [ -z "${SKIP_BUILD:-}" ]; then
  build "$AIRFLOW_IMAGE" docker/airflow/Dockerfile
  build "$WORKER_IMAGE" docker/ml/Dockerfile --target worker --build-arg AIRFLOW_IMAGE="$AIRFLOW_IMAGE"
  build "$MAILCATCHER_IMAGE" docker/mailcatcher/Dockerfile
  build "$WEBHOOK_RECEIVER_IMAGE" docker/webhook-receiver/Dockerfile
  [[ $POSTGRES_IMAGE == localhost/* ]] && build "$POSTGRES_IMAGE" docker/postgres/Dockerfile
  [[ $REDIS_IMAGE == localhost/* ]] && build "$REDIS_IMAGE" docker/redis/Dockerfile
fi

# the pipelines the stack mounts: a copy with alerts to the stack's receivers
pipelines=$(mktemp -d) up_log=
export PIPELINES_HOST_DIR=$pipelines
"$ENGINE" run --rm --user 0 -v "$pipelines:/out" "$AIRFLOW_IMAGE" python -c '
import shutil, yaml
shutil.copytree("/opt/project/pipelines", "/out", dirs_exist_ok=True)
path = "/out/taxi_tips/pipeline.yaml"
config = yaml.safe_load(open(path))
config["schedule"] = None
config["alerts"] = {"email_to": ["ml-team@example.com"], "smtp_conn_id": "smtp_default",
                    "slack_conn_id": "slack_alerts", "on_push": True}
yaml.safe_dump(config, open(path, "w"), sort_keys=False)'
chmod -R a+rwX "$pipelines"

services=(airflow-apiserver airflow-scheduler airflow-dag-processor airflow-triggerer airflow-worker)
if "$ENGINE" image exists "$MODEL_SERVER_IMAGE" || timeout 60 "$ENGINE" pull -q "$MODEL_SERVER_IMAGE" >/dev/null 2>&1; then
  services+=(model-server)
else
  step "model-server: $MODEL_SERVER_IMAGE cannot be pulled here; the stack runs without it"
fi

logs() { for s in airflow-init airflow-scheduler airflow-worker; do
  echo "--- $s"; "$ENGINE" logs --tail 40 "${PROJECT}_${s}_1" 2>&1 || true; done; }
down() {
  [ -n "${KEEP_STACK:-}" ] && { step "stack left up (project $PROJECT)"; return; }
  $COMPOSE -p "$PROJECT" down -v >/dev/null 2>&1 || true
  rm -rf "$pipelines" "$up_log"
  step "stack down"
}
trap 'rc=$?; [ $rc -ne 0 ] && logs; down; exit $rc' EXIT

# in two steps: podman 4.3 cannot start a container that --requires an exited one (airflow-init),
# so the long-running services come up after it with --no-deps (docker compose: one `up -d`)
up_log=$(mktemp)
up() { $COMPOSE -p "$PROJECT" up -d "$@" >"$up_log" 2>&1 || { cat "$up_log"; exit 1; }; }
step "up: databases, Redis, mail catcher, webhook receiver, airflow-init"
up postgres anomaly-db redis mailcatcher webhook-receiver airflow-init
init_rc=$("$ENGINE" wait "${PROJECT}_airflow-init_1")
[ "$init_rc" = 0 ] || { echo "airflow-init exited $init_rc"; exit 1; }
step "airflow-init done"
step "up: ${services[*]}"
up --no-deps "${services[@]}"

healthy=(postgres anomaly-db redis airflow-apiserver airflow-scheduler airflow-dag-processor
         airflow-triggerer airflow-worker)
for s in "${healthy[@]}"; do  # run the compose health checks (podman < 4.6 schedules none itself)
  for i in $(seq 60); do
    "$ENGINE" healthcheck run "${PROJECT}_${s}_1" >/dev/null 2>&1 && break
    [ "$i" = 60 ] && { echo "$s not healthy after 10 min"; exit 1; }
    sleep 10
  done
  step "healthy: $s"
done

python3 - "$AIRFLOW_PORT" "$MAILCATCHER_PORT" "$WEBHOOK_RECEIVER_PORT" <<'PY'
"""Trigger taxi_tips over Airflow's REST API (JWT from /auth/token) and wait for the run."""
import json, os, sys, time, urllib.error, urllib.request

airflow, mail, webhook = (f"http://127.0.0.1:{port}" for port in sys.argv[1:4])
start = time.time()

def call(method, url, body=None, token=None):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)

def say(text):
    print(f"  [{time.time() - start:5.0f}s] {text}", flush=True)

token = call("POST", f"{airflow}/auth/token", {"username": os.environ["AIRFLOW_ADMIN_USER"],
                                               "password": os.environ["AIRFLOW_ADMIN_PASSWORD"]})["access_token"]
say(f"api-server {call('GET', f'{airflow}/api/v2/version', token=token)['version']}, token ok")
for _ in range(60):  # the dag-processor parses the DAG file
    try:
        call("GET", f"{airflow}/api/v2/dags/taxi_tips", token=token)
        break
    except urllib.error.HTTPError:
        time.sleep(5)
call("PATCH", f"{airflow}/api/v2/dags/taxi_tips", {"is_paused": False}, token)
run = call("POST", f"{airflow}/api/v2/dags/taxi_tips/dagRuns", {"logical_date": "2017-01-01T00:00:00Z"}, token)
run_url = f"{airflow}/api/v2/dags/taxi_tips/dagRuns/{run['dag_run_id']}"
say(f"triggered {run['dag_run_id']}")
deadline = time.time() + 1800
state = None
while time.time() < deadline:
    state = call("GET", run_url, token=token)["state"]
    if state in ("success", "failed"):
        break
    time.sleep(10)
for ti in call("GET", f"{run_url}/taskInstances", token=token)["task_instances"]:
    say(f"  {ti['task_id']:<20} {ti['state']:<8} {ti['duration'] or 0:6.1f}s")
say(f"run {state}")
if state != "success":
    sys.exit(1)
for _ in range(30):  # the push's success callback sends the email after the task
    messages = call("GET", f"{mail}/messages/")["messages"]
    pushed = [m for m in messages if "task push succeeded" in m["subject"]]
    if pushed:
        break
    time.sleep(2)
if not pushed:
    sys.exit(f"no push email at the mail catcher: {[m['subject'] for m in messages]}")
say(f"mail catcher: {pushed[0]['subject']!r} to {pushed[0]['recipients']['to']}")
posted = [r for r in call("GET", f"{webhook}/requests") if "task push succeeded" in json.dumps(r)]
if not posted:
    sys.exit("no push message at the Slack webhook receiver")
say(f"webhook receiver: {posted[0]['body']['text'].splitlines()[0]!r}")
PY
step "smoke test passed"
