#!/usr/bin/env bash
# `make demo`: the whole platform end to end on this machine, natively (no Docker engine):
# local Redis -> synthetic data -> offline features -> feast apply -> materialize -> train ->
# the API in the background -> one scored transaction -> simulated drift through the API ->
# drift report -> API stopped -> online/offline consistency of everything it served. Runs from
# the project root with the venv installed (`make install`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
BIN=$ROOT/${VENV:-.venv}/bin
export PATH="$BIN:$PATH"
export PYTHONUNBUFFERED=1
LOG_DIR=$ROOT/.run/demo
mkdir -p "$LOG_DIR"

started=$SECONDS
step() { printf '\n==> [%4ds] %s\n' $(( SECONDS - started )) "$*"; }

API_PID=""
stop_api() {
  if [[ -n $API_PID ]] && kill -0 "$API_PID" 2>/dev/null; then
    kill "$API_PID" 2>/dev/null || true
    wait "$API_PID" 2>/dev/null || true
  fi
  API_PID=""
}
trap stop_api EXIT

step "Redis: a local redis-server on a free port (REDIS_URL wins when it answers)"
REDIS_URL=$(fraud redis start)
export REDIS_URL
echo "REDIS_URL=$REDIS_URL"

step "Data: synthetic transactions and late-arriving labels -> data/raw (params.yaml: generate)"
fraud data generate

step "Features: offline state tables with DuckDB -> data/features"
fraud features build

step "Feast: apply the definitions (entities, views, feature service) -> data/registry.db"
fraud features apply

step "Feast: materialize the latest state of every customer and merchant into Redis"
fraud features materialize

step "Training: Feast historical features, K-fold CV + time-ordered holdout, MLflow registry"
fraud train run

PORT=$(python -c 'from fraud_platform.redis_server import free_port; print(free_port())')
API_URL="http://127.0.0.1:$PORT"
step "API: fraud serve api on $API_URL (log: .run/demo/api.log)"
# Every answered prediction is in the prediction log before its answer leaves, so the drift
# check below sees the simulated traffic at once.
fraud serve api --host 127.0.0.1 --port "$PORT" >"$LOG_DIR/api.log" 2>&1 &
API_PID=$!
deadline=$(( SECONDS + 300 ))
until python -c "import sys, urllib.request; urllib.request.urlopen('$API_URL/ready', timeout=2)" 2>/dev/null; do
  if ! kill -0 "$API_PID" 2>/dev/null; then
    echo "the API exited during start-up; last lines of its log:" >&2
    tail -n 40 "$LOG_DIR/api.log" >&2
    exit 1
  fi
  if (( SECONDS > deadline )); then
    echo "the API was not ready within 300 s; last lines of its log:" >&2
    tail -n 40 "$LOG_DIR/api.log" >&2
    exit 1
  fi
  sleep 1
done
echo "ready: $(python -c "import urllib.request; print(urllib.request.urlopen('$API_URL/ready').read().decode())")"

# One transaction of a real customer, one minute after the data ends, ten times their usual
# amount: the answer shows the probability, the verdict and which features drove it.
API_KEY=$(python -c 'from fraud_platform.settings import get_settings; print((get_settings().api_key_list or [""])[0])')
PAYLOAD=$(python - <<'PY'
import json

import pandas as pd

from fraud_platform.settings import get_settings

txns = pd.read_parquet(get_settings().paths.raw_table("transactions"))
last = txns.sort_values(["timestamp", "transaction_id"]).iloc[-1]
usual = txns.loc[txns["customer_id"] == last["customer_id"], "amount"].median()
moment = last["timestamp"] + pd.Timedelta(minutes=1)
print(json.dumps({
    "transaction_id": "demo-1",
    "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "customer_id": str(last["customer_id"]),
    "merchant_id": str(last["merchant_id"]),
    "amount": round(float(usual) * 10, 2),
    "lat": round(float(last["lat"]), 4),
    "long": round(float(last["long"]), 4),
}))
PY
)
header=()
[[ -n $API_KEY ]] && header=(-H "X-API-Key: $API_KEY")
predict() {  # POST one JSON body to /predict and pretty-print the answer
  echo "\$ curl -s -X POST $API_URL/predict -H 'Content-Type: application/json'${API_KEY:+ -H 'X-API-Key: ...'} -d '$1'"
  if command -v curl >/dev/null; then
    curl -sS --fail-with-body -X POST "$API_URL/predict" \
      -H 'Content-Type: application/json' "${header[@]}" -d "$1" \
      | python -m json.tool
  else  # same request without curl
    python - "$API_URL/predict" "$1" "$API_KEY" <<'PY'
import json
import sys
import urllib.request

url, body, key = sys.argv[1:]
headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
print(json.dumps(json.load(urllib.request.urlopen(request, timeout=30)), indent=4))
PY
  fi
}

step "Scoring one transaction: POST /predict"
predict "$PAYLOAD"

step "The product's reference example: a card and a merchant never seen, \$5,000 (flagged: REVIEW, queued for an analyst, or FRAUD)"
predict '{"timestamp": "2023-10-27T10:00:00", "customer_id": "C123456", "merchant_id": "M_TEST", "amount": 5000.0, "lat": 50.0, "long": 50.0}'

step "Monitoring: an unshifted control window, then amounts x5, through the API; KS drift check"
# Exit 0: the control window showed no dataset drift and the shifted window moved exactly the
# features the shift touches (see EXPECTED_DRIFT in simulation/verdict.py); 1: it did not.
drift_status=0
fraud monitor simulate --api-url "$API_URL" --control --shift amount --wait 60 || drift_status=$?
case $drift_status in
  0) echo "drift check: control window clean, shifted features flagged (as intended)" ;;
  1) echo "drift check: the windows did not behave as expected (see the table above)" ;;
  *) echo "drift simulation failed (exit $drift_status)" >&2; exit "$drift_status" ;;
esac

free_port() { python -c 'from fraud_platform.redis_server import free_port; print(free_port())'; }
OPS_PORT=$(free_port); PROM_PORT=$(free_port); EVIDENTLY_PORT=$(free_port); FEAST_UI_PORT=$(free_port)
PROM_URL="http://127.0.0.1:$PROM_PORT"
step "Console: fraud ops run, Prometheus with the alert rules, Evidently UI, Feast UI (logs: .run/demo/)"
# The scheduled jobs (labels, drift, freshness; consistency runs once below), scraped by
# Prometheus with ops/prometheus/rules.yml; the UIs on the drift history and the registry.
fraud ops run --port "$OPS_PORT" --jobs labels,drift,freshness >"$LOG_DIR/ops.log" 2>&1 &
CONSOLE_PIDS=($!)
fraud ui prometheus --port "$PROM_PORT" --api "127.0.0.1:$PORT" --ops "127.0.0.1:$OPS_PORT" >"$LOG_DIR/prometheus.log" 2>&1 &
CONSOLE_PIDS+=($!)
fraud ui evidently --port "$EVIDENTLY_PORT" >"$LOG_DIR/evidently.log" 2>&1 &
CONSOLE_PIDS+=($!)
fraud ui feast --port "$FEAST_UI_PORT" >"$LOG_DIR/feast-ui.log" 2>&1 &
CONSOLE_PIDS+=($!)
stop_console() {
  for pid in "${CONSOLE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${CONSOLE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  CONSOLE_PIDS=()
}
trap 'stop_console; stop_api' EXIT
fraud ui wait-alert FraudRedisDown --prometheus "$PROM_URL" --state inactive --timeout 120
sleep 10  # a few scrapes: Redis seen up first

step "Fault drill: Redis stopped; FraudRedisDown must fire within its for: window (15 s + a scrape)"
fraud redis stop
fraud ui wait-alert FraudRedisDown --prometheus "$PROM_URL" --state firing --timeout 120
fraud ui screenshots --prometheus "$PROM_URL" || true
fraud redis start >/dev/null
fraud ui wait-alert FraudRedisDown --prometheus "$PROM_URL" --state inactive --timeout 120

step "Console screenshots (headless Chromium) -> reports/screenshots/"
fraud ui screenshots --evidently "http://127.0.0.1:$EVIDENTLY_PORT" --feast "http://127.0.0.1:$FEAST_UI_PORT" || true
stop_console

step "Stopping the API (pid $API_PID)"
stop_api

step "Consistency: every served prediction recomputed offline (get_historical_features) and compared"
# Exit 1 would mean training/serving skew on some feature: the demo stops there.
fraud monitor consistency

step "Done in $(( SECONDS - started )) s. Where to look:"
cat <<EOF
  MLflow runs, metrics, plots, registry: $BIN/mlflow ui --backend-store-uri sqlite:///mlflow.db
                                         (then open http://127.0.0.1:5000)
  training metrics (DVC-tracked):        models/metrics.json
  holdout evaluation (not run here):    make evaluate -> reports/evaluation/metrics.json
  drift reports (HTML + JSON):           $(ls -d reports/drift/*/ 2>/dev/null | tail -n 1 || echo reports/drift/)
  consistency report (JSON, HTML, .prom): $(ls -d reports/consistency/*/ 2>/dev/null | tail -n 1 || echo reports/consistency/)
  prediction log:                        data/prediction_log/
  API log:                               .run/demo/api.log
  the console (screenshots of the run):  reports/screenshots/{prometheus-alerts,evidently-projects,feast-ui}.png
    scheduled jobs:                      fraud ops run   (metrics on http://127.0.0.1:9108/metrics)
    Prometheus, alerts:                  fraud ui prometheus  -> http://127.0.0.1:9090
    drift history (Evidently UI):        fraud ui evidently   -> http://127.0.0.1:8002
    feature registry (Feast UI):         fraud ui feast       -> http://127.0.0.1:8888
  Redis is still running for make serve ($REDIS_URL); stop it with: make redis-stop
EOF
