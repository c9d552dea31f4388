#!/usr/bin/env bash
# The local stack, end to end (not part of `make test`: it builds images, ~10-20 min the first time):
# builds the images FROM $BASE_IMAGE, brings docker-compose.yaml up, waits for health, triggers
# taxi_tips (binary, with a module) and taxi_fare (regression, config only) for 2017-01-01 over
# Airflow's REST API, waits for both runs' success, checks that taxi_tips' push alert reached the
# mail catcher (and the Slack receiver), opens each pipeline's Models and Data pages with the API's
# JWT, checks that the model server's config lists both pushed models (and, where TF Serving runs,
# that it serves them), and tears the stack down.
#
#   bash scripts/compose-smoke.sh                         # podman + podman-compose, local base image
#   ENGINE=docker COMPOSE="docker compose" BASE_IMAGE=python:3.11-slim-bookworm bash scripts/compose-smoke.sh
#
# SKIP_BUILD=1 reuses built images; KEEP_STACK=1 leaves the stack up. Where no registry is reachable,
# Postgres and Redis come from docker/postgres and docker/redis (POSTGRES_IMAGE, REDIS_IMAGE); the
# model server (TF Serving) runs only where its image is present or can be pulled. The pipelines
# run from a copy of pipelines/ with no schedule (only the triggered runs) and, for taxi_tips,
# alerts to the mail catcher and the Slack receiver (alerts.on_push).
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

# the pipelines the stack mounts: a copy without schedules, taxi_tips alerting the stack's receivers
pipelines=$(mktemp -d) up_log=
export PIPELINES_HOST_DIR=$pipelines
"$ENGINE" run --rm --user 0 -v "$pipelines:/out" "$AIRFLOW_IMAGE" python -c '
import pathlib, shutil, yaml
shutil.copytree("/opt/project/pipelines", "/out", dirs_exist_ok=True)
for path in pathlib.Path("/out").glob("*/pipeline.yaml"):
    config = yaml.safe_load(path.read_text())
    config["schedule"] = None
    if config["name"] == "taxi_tips":
        config["alerts"] = {"email_to": ["ml-team@example.com"], "smtp_conn_id": "smtp_default",
                            "slack_conn_id": "slack_alerts", "on_push": True}
    path.write_text(yaml.safe_dump(config, sort_keys=False))'
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

serving_port=
[[ " ${services[*]} " == *" model-server "* ]] && serving_port=$MODEL_SERVER_PORT
python3 - "$AIRFLOW_PORT" "$MAILCATCHER_PORT" "$WEBHOOK_RECEIVER_PORT" "$pipelines" "$serving_port" <<'PY'
"""Trigger taxi_tips and taxi_fare over Airflow's REST API (JWT from /auth/token), wait for both
runs, check the alerts, then open each pipeline's Models and Data pages with the same JWT."""
import html, json, os, pathlib, re, sys, time, urllib.error, urllib.parse, urllib.request

airflow, mail, webhook = (f"http://127.0.0.1:{port}" for port in sys.argv[1:4])
pipelines_dir, serving_port = pathlib.Path(sys.argv[4]), sys.argv[5]
PIPELINES, LOGICAL_DATE = ("taxi_tips", "taxi_fare"), "2017-01-01T00:00:00Z"
start = time.time()

def call(method, url, body=None, token=None, raw=False):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode() if raw else json.load(response)

def say(text):
    print(f"  [{time.time() - start:5.0f}s] {text}", flush=True)

token = call("POST", f"{airflow}/auth/token", {"username": os.environ["AIRFLOW_ADMIN_USER"],
                                               "password": os.environ["AIRFLOW_ADMIN_PASSWORD"]})["access_token"]
say(f"api-server {call('GET', f'{airflow}/api/v2/version', token=token)['version']}, token ok")
run_urls = {}
for dag in PIPELINES:
    for _ in range(60):  # the dag-processor parses the DAG files
        try:
            call("GET", f"{airflow}/api/v2/dags/{dag}", token=token)
            break
        except urllib.error.HTTPError:
            time.sleep(5)
    call("PATCH", f"{airflow}/api/v2/dags/{dag}", {"is_paused": False}, token)
    run = call("POST", f"{airflow}/api/v2/dags/{dag}/dagRuns", {"logical_date": LOGICAL_DATE}, token)
    run_urls[dag] = f"{airflow}/api/v2/dags/{dag}/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"
    say(f"triggered {dag} {run['dag_run_id']}")
deadline, states = time.time() + 1800, {}
while time.time() < deadline and len(states) < len(PIPELINES):
    for dag, url in run_urls.items():
        state = call("GET", url, token=token)["state"]
        if dag not in states and state in ("success", "failed"):
            states[dag] = state
            say(f"{dag} run {state}")
    time.sleep(10)
for dag, url in run_urls.items():
    for ti in call("GET", f"{url}/taskInstances", token=token)["task_instances"]:
        say(f"  {dag:<10} {ti['task_id']:<20} {ti['state']:<8} {ti['duration'] or 0:6.1f}s")
if states != dict.fromkeys(PIPELINES, "success"):
    sys.exit(f"runs: {states or 'none finished'} (wanted every one a success)")
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

# the pages (plugins/pipeline_pages_plugin.py): the live version is this run's push; the statistics
# list every feature of the pipeline's schema
for dag, url in run_urls.items():
    run_id = call("GET", url, token=token)["dag_run_id"]
    models = call("GET", f"{airflow}/pipeline-pages/models?pipeline={dag}", token=token, raw=True)
    live = re.search(r'<tr class="live"><td>(\d+) \(live\)</td>.*?</tr>', models, re.S)
    if not live or f">{html.escape(run_id)}</a>" not in live.group(0):
        sys.exit(f"{dag}: the Models page's live version is not the push of {run_id}")
    data = call("GET", f"{airflow}/pipeline-pages/data?pipeline={dag}", token=token, raw=True)
    schema = (pipelines_dir / dag / "schema.pbtxt").read_text()
    features = re.findall(r'^feature \{\s*name: "([^"]+)"', schema, re.M)
    missing = [f for f in features if f"<tr><td>{f}</td>" not in data]
    span = re.search(r"Statistics of the run of (\S+)</h2>", data)
    if not span or not features or missing:
        sys.exit(f"{dag}: the Data page lacks the run's statistics or the schema's features {missing}")
    say(f"{dag}: Models page: v{live.group(1)} live, pushed by {run_id}; "
        f"Data page: statistics of span {span.group(1)}, {len(features)} features")
    if serving_port:  # TF Serving re-reads its config every 30 s, then loads the version (30 s poll)
        for _ in range(30):
            try:
                status = call("GET", f"http://127.0.0.1:{serving_port}/v1/models/{dag}")["model_version_status"]
                if any(s["version"] == live.group(1) and s["state"] == "AVAILABLE" for s in status):
                    break
            except urllib.error.HTTPError:
                pass
            time.sleep(5)
        else:
            sys.exit(f"TF Serving does not serve {dag} v{live.group(1)}")
        say(f"{dag}: TF Serving serves v{live.group(1)}")
PY
# the model server's config as TF Serving reads it (its protobuf, from the ML env's tensorflow-serving-api)
served=$("$ENGINE" exec "${PROJECT}_airflow-worker_1" /opt/venv-ml/bin/python -c '
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
config = text_format.Parse(open("/models/models.config").read(), model_server_config_pb2.ModelServerConfig())
print(" ".join(sorted(f"{m.name}={m.base_path}" for m in config.model_config_list.config)))')
step "model server config /models/models.config: $served"
[ "$served" = "taxi_fare=/models/taxi_fare taxi_tips=/models/taxi_tips" ] \
  || { echo "expected the pushed taxi_fare and taxi_tips, nothing else (taxi_trip_length never ran)"; exit 1; }
step "smoke test passed"
