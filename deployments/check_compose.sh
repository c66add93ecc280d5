#!/usr/bin/env bash
# Validate deployments/docker-compose.yml (or the file given as $1) without a Docker engine.
#
# 1. Debian's docker-compose 1.29 (`docker-compose config` needs no engine); installed with
#    apt-get when missing and we are root.
# 2. If it cannot be installed: validate against the Compose specification's JSON schema
#    (deployments/compose-spec.schema.json, copied from docker-compose 1.29) with `jsonschema`.
#
# CHECK_COMPOSE_VALIDATOR=schema forces step 2 (the tests run both).
# Exit 0 when valid; prints which validator ran on the last line.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-$HERE/../.venv/bin/python}"
COMPOSE_FILE="$(realpath "${1:-$HERE/docker-compose.yml}")"
ENV_FILE="$HERE/.env.example"

VALIDATOR="${CHECK_COMPOSE_VALIDATOR:-auto}"

if [ "$VALIDATOR" = "auto" ] && ! command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" = "0" ] \
    && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) \
    >/dev/null 2>&1 || echo "check_compose: could not install docker-compose; using the schema" >&2
fi

if [ "$VALIDATOR" = "auto" ] && command -v docker-compose >/dev/null 2>&1; then
  docker-compose --env-file "$ENV_FILE" -f "$COMPOSE_FILE" config --quiet
  echo "check_compose: valid (docker-compose $(docker-compose version --short))"
  exit 0
fi

"$PYTHON" - "$COMPOSE_FILE" "$HERE/compose-spec.schema.json" <<'PY'
import json, sys
import jsonschema, yaml
doc = yaml.safe_load(open(sys.argv[1]))
schema = json.load(open(sys.argv[2]))
jsonschema.validators.validator_for(schema)(schema).validate(doc)
print("check_compose: valid (Compose spec JSON schema)")
PY
