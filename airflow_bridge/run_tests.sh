#!/usr/bin/env bash
# Run the Airflow bridge tests in their own virtualenv (Airflow 3.3 + the bridge), apart from
# Prefect's. The Prefect side (server + served flows) runs with $PREFECT_PYTHON
# (default: <repo>/.venv/bin/python). mypy (tests/airflow_bridge/mypy.ini) runs before pytest.
# Usage: airflow_bridge/run_tests.sh [pytest args...]
set -euo pipefail

BRIDGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BRIDGE_DIR")"
VENV="${AIRFLOW_VENV:-$REPO/.venv-airflow}"
PYTHON="${PYTHON311:-python3.11}"
REQS="$BRIDGE_DIR/requirements-test.txt"
export PREFECT_PYTHON="${PREFECT_PYTHON:-$REPO/.venv/bin/python}"

# Re-install only when the pins or the package metadata change.
stamp_key="$(cat "$REQS" "$BRIDGE_DIR/pyproject.toml" | sha256sum | cut -c1-16)"
stamp="$VENV/.bridge-installed-$stamp_key"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[airflow_bridge] creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$stamp" ]]; then
    echo "[airflow_bridge] installing $(grep -v '^#' "$REQS" | xargs) + ./airflow_bridge"
    log="$VENV/pip-install.log"
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$REQS" &&
        "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps -e "$BRIDGE_DIR"; } \
        >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "[airflow_bridge] pip install failed; full log: $log" >&2
        exit 1
    fi
    rm -f "$VENV"/.bridge-installed-*
    touch "$stamp"
fi

if [[ ! -x "$PREFECT_PYTHON" ]]; then
    echo "[airflow_bridge] Prefect python not found at $PREFECT_PYTHON:" \
        "install the main project first or set PREFECT_PYTHON" >&2
    exit 2
fi

cd "$REPO"
# Keep Airflow offline and quiet; conftest.py points AIRFLOW_HOME at a temp dir.
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__USAGE_DATA_COLLECTION__ENABLED=False
export SCARF_ANALYTICS=false
export DO_NOT_TRACK=1
unset AIRFLOW_HOME PYTHONPATH VIRTUAL_ENV
# Types first (strict, against Airflow's own hints): the bridge, its example DAGs, these tests.
echo "[airflow_bridge] mypy --config-file tests/airflow_bridge/mypy.ini"
"$VENV/bin/python" -m mypy --config-file tests/airflow_bridge/mypy.ini
exec "$VENV/bin/python" -m pytest -c tests/airflow_bridge/pytest.ini \
    --rootdir=tests/airflow_bridge tests/airflow_bridge "$@"
