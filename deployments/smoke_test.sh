#!/usr/bin/env bash
# Container smoke test (`make test-containers`, run by .ci/run after `make test`).
#
# From a clean clone: a Docker engine (installed and started when none answers), the base image
# (debootstrap, no registry), the three images, then the compose stack on free ports:
#   1. the `data-pipeline/daily` deployment runs through the compose worker (Prefect server in
#      compose + process worker + `prefect deployment run --watch`);
#   2. the search service, reading the state volume the pipeline wrote, answers /readyz and
#      returns ranked results for a query over HTTP;
#   3. the `backup/backup` deployment writes a dump onto the state volume;
#   4. the docker work-pool variant (deployments/prefect.docker.yaml): a docker worker starts the
#      backup flow run in a container of the pipeline image, on the stack's network and volume.
# Then everything is torn down: containers, volumes, networks, and the daemon if this started it.
#
# Caches, reused when present and never required: the rootfs tarball and the wheels
# (CONTAINER_CACHE_DIR, default /var/cache/semantic-pipeline) and Docker's layer cache.
# SMOKE_KEEP=1 leaves the stack (and the daemon) running for debugging.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
STATE="${SMOKE_STATE_DIR:-$(mktemp -d /tmp/semantic-smoke.XXXXXX)}"
PROJECT="${SMOKE_PROJECT:-semantic-smoke}"
BASE_IMAGE="${BASE_IMAGE:-local/python:3.11-bookworm}"
# Every wheel is in deployments/wheels (make_wheels.sh): builds never wait on an index.
PIP_OPTIONS="--no-index --find-links /wheels"
DOCKER="$(command -v /usr/bin/docker || command -v docker || true)"
export DOCKER
T0=$SECONDS

step() { echo "[smoke +$((SECONDS - T0))s] $*"; }
fail() { echo "[smoke +$((SECONDS - T0))s] FAILED: $*" >&2; exit 1; }
compose() {
  docker-compose -p "$PROJECT" --env-file "$STATE/compose.env" -f deployments/docker-compose.yml "$@"
}
# Commands inside the worker container: it has the Prefect CLI and PREFECT_API_URL of the stack.
in_worker() { compose exec -T worker "$@"; }
# Trigger a deployment and wait for its final state; the event stream goes to $STATE/run-$3.log.
run_deployment() {
  local name="$1" timeout_s="$2" log="$STATE/run-$3.log"
  if in_worker prefect deployment run "$name" --watch --watch-timeout "$timeout_s" >"$log" 2>&1; then
    tail -1 "$log"
  else
    tail -30 "$log" >&2
    fail "$name did not complete (log: $log)"
  fi
}
# GET /readyz until it answers with status $1 (the service may still be loading its model, or
# still reading the state the pipeline just wrote); prints the last answer; bounded (300 s).
readyz() {
  python3 - "$SEARCH_PORT" "$1" <<'PY'
import sys, time, urllib.error, urllib.request

port, wanted = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 300
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            answer = (r.status, r.read().decode())
    except urllib.error.HTTPError as exc:  # 503: answered, not ready
        answer = (exc.code, exc.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        answer = (0, repr(exc))
    if answer[0] == wanted or time.monotonic() > deadline:
        print(*answer)
        sys.exit(0 if answer[0] == wanted else 1)
    time.sleep(3)
PY
}

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ] && [ -f "$STATE/compose.env" ]; then
    echo "---- compose ps / last logs (failure) ----" >&2
    compose ps >&2
    compose logs --no-color --tail=60 >&2
    "$DOCKER" logs --tail=60 "$PROJECT-docker-worker" >&2 2>/dev/null
  fi
  if [ "${SMOKE_KEEP:-0}" = 1 ]; then
    echo "SMOKE_KEEP=1: stack $PROJECT left running (state in $STATE)"
    exit "$rc"
  fi
  step "tearing down"
  "$DOCKER" rm -f -v "$PROJECT-docker-worker" >/dev/null 2>&1
  # Flow-run containers of the docker pool are auto-removed; remove any a failure left behind.
  ids="$("$DOCKER" ps -aq --filter "network=${PROJECT}_default" 2>/dev/null)"
  [ -n "$ids" ] && "$DOCKER" rm -f -v $ids >/dev/null 2>&1
  [ -f "$STATE/compose.env" ] && compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1
  bash deployments/engine.sh down "$STATE"
  step "done (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT

# ---- engine, base image, wheels, images ------------------------------------------------------
step "engine"
bash deployments/engine.sh up "$STATE"
DOCKER="$(command -v /usr/bin/docker || command -v docker)"
step "base image $BASE_IMAGE"
bash deployments/make_base_image.sh "$BASE_IMAGE"
step "wheels"
bash deployments/make_wheels.sh
for image in pipeline search postgres; do
  step "building semantic-$image:0.1.0 (log: $STATE/build-$image.log)"
  DOCKER_BUILDKIT=1 "$DOCKER" build --progress=plain -f "deployments/Dockerfile.$image" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg PIP_OPTIONS="$PIP_OPTIONS" \
    --build-arg PIPELINE_GIT_COMMIT="$(git rev-parse HEAD 2>/dev/null || true)" \
    -t "semantic-$image:0.1.0" . >"$STATE/build-$image.log" 2>&1 \
    || { tail -40 "$STATE/build-$image.log" >&2; fail "build of Dockerfile.$image"; }
done

# ---- the stack on free ports, throwaway secrets ------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
PREFECT_PORT="$(free_port)"
SEARCH_PORT="$(free_port)"
[ "$PREFECT_PORT" != "$SEARCH_PORT" ] || SEARCH_PORT="$(free_port)"
API_KEY="$(secret)"
cat >"$STATE/compose.env" <<EOF
POSTGRES_PASSWORD=$(secret)
SEARCH_API_KEYS=$API_KEY
PREFECT_PORT=$PREFECT_PORT
SEARCH_PORT=$SEARCH_PORT
BASE_IMAGE=$BASE_IMAGE
PIP_OPTIONS=$PIP_OPTIONS
OPENAI_API_KEY=${SMOKE_OPENAI_API_KEY:-}
EMBEDDING_PROVIDER=${SMOKE_EMBEDDING_PROVIDER:-auto}
EOF
chmod 600 "$STATE/compose.env"
step "compose up (Prefect UI on 127.0.0.1:$PREFECT_PORT, search on 127.0.0.1:$SEARCH_PORT)"
# `up` waits for each depends_on condition (server healthy, setup completed); bounded here.
timeout 900 docker-compose -p "$PROJECT" --env-file "$STATE/compose.env" \
  -f deployments/docker-compose.yml up -d --no-build || fail "compose up"

# Before any pipeline run the search service has no manifest and no index: not ready.
before="$(readyz 503)" || fail "/readyz before any pipeline run: $before (wanted 503)"
echo "readyz before the pipeline: $before"

# ---- 1. the pipeline deployment through the compose worker -----------------------------------
step "prefect deployment run data-pipeline/daily (process worker in compose)"
run_deployment data-pipeline/daily 1500 pipeline
# The non-root users could write where Prefect keeps state: the subflows' persisted results are on
# the state volume, and the server wrote its database and UI bundle without a permission error.
results="$(in_worker sh -c 'find "$PREFECT_LOCAL_STORAGE_PATH" -type f | wc -l')"
[ "$results" -gt 0 ] || fail "no persisted result in the worker's PREFECT_LOCAL_STORAGE_PATH"
! compose logs --no-color prefect-server | grep -i "permission denied" \
  || fail "the Prefect server could not write somewhere"
echo "persisted results on the state volume: $results files"

# ---- 2. search over HTTP -------------------------------------------------------------------------
step "search service: /readyz, then POST /search"
after_run="$(readyz 200)" || fail "/readyz after the pipeline: $after_run (wanted 200)"
echo "readyz after the pipeline: $after_run"
python3 - "$SEARCH_PORT" "$API_KEY" <<'PY' || fail "search"
import json, sys, urllib.request

port, key = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
query = "a light tent for two people backpacking in the rain"
req = urllib.request.Request(
    f"{base}/search",
    data=json.dumps({"query": query, "top_k": 5}).encode(),
    headers={"content-type": "application/json", "X-API-Key": key},
)
with urllib.request.urlopen(req, timeout=60) as r:
    answer = json.load(r)
results = answer["results"]
scores = [hit["score"] for hit in results]
print(f"search {query!r}: {len(results)} results, scores {scores}")
for hit in results:
    print(f"  {hit['score']:.3f}  {hit['title']}")
assert len(results) == 5, answer
assert scores == sorted(scores, reverse=True), "results are not ranked by score"
assert "tent" in (results[0]["title"] or "").lower(), f"top hit is not a tent: {results[0]}"
PY

# ---- 3. a backup -------------------------------------------------------------------------------
step "prefect deployment run backup/backup (process worker)"
run_deployment backup/backup 600 backup
dumps="$(in_worker python -m flows.cli backup --list | grep -c '\.dump$' || true)"
[ "$dumps" -ge 1 ] || fail "no dump in BACKUP_DIR after the backup run"
step "backup written ($dumps dump(s) in BACKUP_DIR)"

# ---- 4. the docker work-pool variant ---------------------------------------------------------
step "docker work pool: pipeline-docker, deployments/prefect.docker.yaml, a docker worker"
in_worker prefect work-pool create pipeline-docker --type docker >/dev/null
# Job variables for this stack: the locally built image, the compose network and state volume,
# and the warehouse URL (a throwaway password; real setups keep secrets out of job variables).
job_vars="$(python3 - "$PROJECT" "$STATE/compose.env" <<'PY'
import json, sys
project, env_file = sys.argv[1], sys.argv[2]
env = dict(line.split("=", 1) for line in open(env_file).read().splitlines() if "=" in line)
print(json.dumps({
    "image": "semantic-pipeline:0.1.0",
    "image_pull_policy": "Never",
    "networks": [f"{project}_default"],
    "volumes": [f"{project}_pipeline-data:/var/lib/pipeline"],
    "env": {
        "DATABASE_URL": f"postgresql://pipeline:{env['POSTGRES_PASSWORD']}@postgres:5432/warehouse",
        "DATA_DIR": "/var/lib/pipeline",
        "HF_HUB_OFFLINE": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "EMBEDDING_PROVIDER": env.get("EMBEDDING_PROVIDER", "auto"),
    },
}))
PY
)"
in_worker prefect --no-prompt deploy --prefect-file deployments/prefect.docker.yaml \
  --name backup --job-variable "$job_vars" >/dev/null || fail "deploy of the docker variant"
# The docker worker itself runs from the pipeline image (prefect-docker is in the lock), as root
# to use the engine's socket.
"$DOCKER" run -d --name "$PROJECT-docker-worker" --network "${PROJECT}_default" --user root \
  -v /var/run/docker.sock:/var/run/docker.sock \
  -e PREFECT_API_URL=http://prefect-server:4200/api -e PREFECT_SERVER_ANALYTICS_ENABLED=false \
  semantic-pipeline:0.1.0 \
  prefect worker start --pool pipeline-docker --type docker --with-healthcheck >/dev/null
step "prefect deployment run backup/backup (docker worker: a container per flow run)"
run_deployment backup/backup 900 backup-docker
grep -q "prefect.docker.container.created" "$STATE/run-backup-docker.log" \
  || fail "the backup run did not start in a container of the docker pool"
after="$(in_worker python -m flows.cli backup --list | grep -c '\.dump$' || true)"
[ "$after" -gt "$dumps" ] || fail "the docker pool's backup run wrote no new dump ($dumps -> $after)"
step "docker pool backup written ($after dump(s))"

step "all checks passed in $((SECONDS - T0)) s"
