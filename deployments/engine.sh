#!/usr/bin/env bash
# A Docker engine for the container smoke test, on a machine that may have none.
#
#   deployments/engine.sh up STATE_DIR     # install (apt-get) and start dockerd if none answers
#   deployments/engine.sh down STATE_DIR   # stop the dockerd that `up` started (by its PID)
#
# `up` writes STATE_DIR/dockerd.pid only when it started the daemon itself, so `down` never stops
# an engine someone else runs. Needs root to install or start anything; with an engine already
# answering it needs neither. Debian's client (/usr/bin/docker, with BuildKit) is preferred over
# other clients on PATH that lack buildx.
set -euo pipefail
cmd="${1:?usage: engine.sh up|down STATE_DIR}"
state="${2:?usage: engine.sh up|down STATE_DIR}"
mkdir -p "$state"
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker || true)}"

answers() { [ -n "$DOCKER" ] && "$DOCKER" info >/dev/null 2>&1; }

case "$cmd" in
up)
  if answers; then
    rm -f "$state/dockerd.pid"   # not ours: `down` must leave it alone
    echo "engine: using the running Docker engine"
    exit 0
  fi
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1 \
      || ! command -v debootstrap >/dev/null 2>&1 || [ ! -x /usr/bin/docker ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "engine: no Docker engine, and installing one needs root" >&2
      exit 1
    fi
    echo "engine: installing docker.io, docker-compose, debootstrap (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      docker.io containerd runc iptables docker-compose debootstrap >"$state/apt.log" 2>&1 \
      || { tail -20 "$state/apt.log" >&2; exit 1; }
    DOCKER=/usr/bin/docker
  fi
  echo "engine: starting dockerd (log: $state/dockerd.log)"
  dockerd >"$state/dockerd.log" 2>&1 &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 1 120); do
    answers && { echo "engine: dockerd ready (pid $(cat "$state/dockerd.pid"))"; exit 0; }
    kill -0 "$(cat "$state/dockerd.pid")" 2>/dev/null || break
    sleep 1
  done
  echo "engine: dockerd did not answer; last lines of its log:" >&2
  tail -20 "$state/dockerd.log" >&2
  exit 1
  ;;
down)
  [ -f "$state/dockerd.pid" ] || { echo "engine: not started by us; left running"; exit 0; }
  pid="$(cat "$state/dockerd.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    # dockerd stops its containers first (up to their stop timeouts); give it a bounded while.
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "engine: dockerd $pid still running, SIGKILL" >&2
      kill -KILL "$pid"
    fi
  fi
  rm -f "$state/dockerd.pid"
  echo "engine: dockerd $pid stopped"
  ;;
*)
  echo "usage: engine.sh up|down STATE_DIR" >&2
  exit 2
  ;;
esac
