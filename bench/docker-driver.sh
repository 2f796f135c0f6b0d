#!/usr/bin/env bash
# The docker driver against a real dockerd (bench/docker-up.sh), in one run:
#   - death detection: a container is killed N times; the daemon logs how long after
#     Docker stamped the `die` event it had it (`seen_after_us`, same host clock);
#   - restart: Vigil's restart of the dead container (decision to running, from its
#     report) beside the Engine API's own `POST /containers/{id}/restart` on a dead
#     container driven by curl, N times each.
#
#   bench/docker-driver.sh            # N=30
# Needs: jq, curl, python3, a release build (built here). Stops only what it started.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${CARGO_TARGET_DIR:=$ROOT/target}"
N=${N:-30}
eval "$(bash bench/docker-up.sh)"
SOCK=${DOCKER_HOST#unix://}
api() { curl -sf --unix-socket "$SOCK" "$@"; }
cargo build -q --profile dist -p vigild
VIGIL=$CARGO_TARGET_DIR/dist/vigil
WORK=$(mktemp -d /tmp/vigil-docker-bench.XXXXXX)
NAME=vigil-bench-$$
cleanup() {
  [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
  api -X DELETE "http://d/containers/$NAME?force=1" >/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
api -X POST -H 'Content-Type: application/json' "http://d/containers/create?name=$NAME" \
  -d '{"Image":"vigil-busybox:latest","Cmd":["sleep","3600"],"Labels":{"vigil-test":"1"},"HostConfig":{"NetworkMode":"none"}}' >/dev/null
api -X POST "http://d/containers/$NAME/start"
running() { api "http://d/containers/$NAME/json" | jq -r .State.Running; }
wait_running() { for _ in $(seq 400); do [ "$(running)" = true ] && return 0; sleep 0.025; done; echo "not running" >&2; exit 1; }

# 1. The Engine API's own restart of a dead container, timed by curl.
: >"$WORK/api.txt"
for _ in $(seq "$N"); do
  api -X POST "http://d/containers/$NAME/kill" && sleep 0.1
  api -o /dev/null -w '%{time_total}\n' -X POST "http://d/containers/$NAME/restart?t=1" >>"$WORK/api.txt"
done
wait_running

# 2. Vigil: kill, let the daemon see the death and restart through the guard.
cat >"$WORK/vigil.toml" <<EOF
[vigil]
state_dir = "$WORK/state"
log_format = "json"
[defaults.guard]
cooldown = "0"
max_restarts = 100000
[services.box]
driver = "docker"
container = "$NAME"
stop_timeout = "1s"
EOF
"$VIGIL" run -c "$WORK/vigil.toml" 2>"$WORK/daemon.log" &
DPID=$!
for _ in $(seq 200); do grep -q '"started"' "$WORK/daemon.log" && break; sleep 0.05; done
sleep 0.5
for _ in $(seq "$N"); do
  api -X POST "http://d/containers/$NAME/kill"
  sleep 0.1
  wait_running
done
sleep 0.5
python3 - "$WORK/api.txt" "$WORK/daemon.log" <<'PY'
import json, statistics, sys
api = sorted(float(x) * 1000 for x in open(sys.argv[1]) if x.strip())
seen, restart = [], []
for line in open(sys.argv[2]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "container_died":
        seen.append(e["seen_after_us"] / 1000)
    if e.get("event") == "restarted" and "duration_ms" in e:
        restart.append(float(e["duration_ms"]))
def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")
print(f"deaths seen: {len(seen)}; detection after Docker's die event: median {q(seen,50):.2f} ms, p99 {q(seen,99):.2f} ms")
print(f"Engine API restart of a dead container (curl): median {q(api,50):.1f} ms, p99 {q(api,99):.1f} ms (n={len(api)})")
if restart:
    print(f"Vigil's restart (decision to running, incl. a confirming inspect): median {q(restart,50):.1f} ms, p99 {q(restart,99):.1f} ms (n={len(restart)})")
    print(f"overhead over the API's own restart (medians): {q(restart,50) - q(api,50):.1f} ms")
PY
