#!/usr/bin/env bash
# Entry point of the fraud-platform image. The first argument picks the role:
#   api        the scoring API on 0.0.0.0:${API_PORT:-8000}
#   bootstrap  one shot: synthetic data, offline features, feast apply, materialize, train
#   mlflow     the MLflow tracking server and model registry (SQLite + proxied artifacts)
#   <other>    run as a command, e.g. `fraud monitor drift` or `bash`
# Settings come from the environment (REDIS_URL, MLFLOW_TRACKING_URI, API_KEYS, PROJECT_ROOT);
# feature_repo/feature_store.yaml is the same file as in a checkout and reads them through
# `fraud features ...`.
set -euo pipefail

step() { printf '==> %s\n' "$*"; }

case "${1:-api}" in
  api)
    shift || true
    exec fraud serve api --host 0.0.0.0 --port "${API_PORT:-8000}" "$@"
    ;;
  bootstrap)
    started=$SECONDS
    if [[ -f "${PROJECT_ROOT}/data/raw/transactions.parquet" ]]; then
      step "raw data already in ${PROJECT_ROOT}/data/raw: keeping it"
    else
      step "generating synthetic transactions (params.yaml)"
      fraud data generate
    fi
    step "building offline feature tables"
    fraud features build
    step "feast apply"
    fraud features apply
    step "materializing the latest state into Redis"
    fraud features materialize
    step "training, cross-validating and registering the model"
    fraud train run
    step "bootstrap finished in $(( SECONDS - started )) s"
    ;;
  mlflow)
    shift || true
    mkdir -p /mlflow/artifacts
    exec mlflow server \
      --host 0.0.0.0 --port "${MLFLOW_PORT:-5000}" \
      --backend-store-uri "sqlite:////mlflow/mlflow.db" \
      --artifacts-destination /mlflow/artifacts \
      --serve-artifacts \
      --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*}" \
      "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
