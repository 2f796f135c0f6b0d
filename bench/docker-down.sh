#!/usr/bin/env bash
# Tear down the private dockerd started by bench/docker-up.sh: force-remove the
# test containers (label vigil-test=1), then SIGTERM dockerd by its pidfile and
# wait (bounded). Safe to run when nothing is up.
set -uo pipefail

ROOT=${VIGIL_DOCKER_ROOT:-/tmp/vigil-docker}
SOCK=$ROOT/docker.sock
PIDFILE=$ROOT/dockerd.pid

log() { echo "docker-down: $*" >&2; }
api() { curl -sf --max-time 30 --unix-socket "$SOCK" "$@"; }

if [ -S "$SOCK" ] && api http://d/_ping >/dev/null 2>&1; then
  ids=$(api -G --data-urlencode 'filters={"label":["vigil-test=1"]}' 'http://d/containers/json?all=1' \
        | grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4)
  for id in $ids; do
    api -X DELETE "http://d/containers/$id?force=1&v=1" >/dev/null && log "removed container ${id:0:12}"
  done
fi

if [ -f "$PIDFILE" ]; then
  pid=$(cat "$PIDFILE")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "dockerd still alive after 30s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDFILE"
fi
rm -f "$SOCK"
log "down"
