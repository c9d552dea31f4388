#!/usr/bin/env bash
# `make airflow`: Airflow 3's four components (api-server, scheduler, dag-processor, triggerer) on
# 127.0.0.1:$AIRFLOW_PORT until Ctrl-C or SIGTERM, and the daily `airflow db clean`
# (scripts/airflow_db_clean.sh). Each runs in its own session (setsid) so that
# stopping it takes its whole process group, task workers included (`airflow standalone` leaves
# children behind on SIGTERM). Logs: $AIRFLOW_HOME/logs/components/<component>.log.
set -euo pipefail
port=${AIRFLOW_PORT:-8080}
bin=${AIRFLOW_BIN:-.venv-airflow/bin}
export AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$port
# the workers reach the execution API through this
export AIRFLOW__API__BASE_URL=http://127.0.0.1:$port
export AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-4}
logs=$AIRFLOW_HOME/logs/components
mkdir -p "$logs"
pids=()

stop() {
    # ignored from here: a second signal would kill this script half-way, leaving components running
    # (`make` passes its SIGTERM on to this script, which the caller's signal reached too)
    trap '' INT TERM
    for pid in "${pids[@]}"; do kill -INT -- "-$pid" 2>/dev/null || true; done
    for _ in $(seq 30); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && return
        sleep 1
    done
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap 'echo "stopping Airflow"; stop; exit 0' INT TERM

# the warm ML process (pipeline_lib/fork_server.py) imports the ML stack while Airflow starts,
# rather than inside the first run's first step
"$bin/python" -m pipeline_lib.launchers warm

for component in api-server scheduler dag-processor triggerer; do
    args=()
    [ "$component" = api-server ] && args=(--host 127.0.0.1 --port "$port")
    setsid "$bin/airflow" "$component" "${args[@]}" > "$logs/$component.log" 2>&1 &
    pids+=($!)
done
AIRFLOW_BIN=$bin setsid scripts/airflow_db_clean.sh > "$logs/db-clean.log" 2>&1 &
pids+=($!)

url=http://127.0.0.1:$port
for _ in $(seq 120); do
    curl -fs "$url/api/v2/monitor/health" > /dev/null 2>&1 && break
    sleep 1
done
# the execution API (how tasks report to Airflow) builds itself on its first request, ~3 s during
# which the api-server answers nothing: pay it here rather than in the first task of the first run
curl -fs "$url/execution/health" > /dev/null 2>&1 || true
passwords=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated}
echo "Airflow on $url (logs: $logs/)"
echo "log in as admin, password: $("$bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' "$passwords" 2>/dev/null || echo "see $passwords")"
echo "Ctrl-C stops it"

# one component dying (e.g. the port is taken) stops the rest
set +e
wait -n
code=$?
echo "an Airflow component exited ($code); stopping the rest (see $logs/)"
stop
exit 1
