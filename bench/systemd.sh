#!/usr/bin/env bash
# Restart decision-to-active time of a systemd unit: Vigil's systemd driver over D-Bus
# versus `systemctl restart` run inside the same container, in one interleaved run
# (issue 5's goal: Vigil adds at most 1 ms over systemd's own job time).
#
#   bench/systemd.sh            # N=300 restarts each side, ~1 minute
#   N=1000 bench/systemd.sh
#
# Brings up the systemd 252 test bed (bench/nspawn-up.sh) unless it is already up, builds
# crates/vigil-bench-checks' `vigil-bench-systemd` (release) and runs it against the unit
# vigil-sleep@bench.service (Type=simple, `sleep infinity`, no start limit). See that
# binary's doc for what is timed. A bed this script brought up is torn down on exit.
# Results: printed and written to $OUT/systemd.md (+ raw key=value lines in
# $OUT/systemd-raw.txt).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${CARGO_TARGET_DIR:=$ROOT/target}"
export CARGO_TARGET_DIR
N=${N:-300}
WAIT_LOAD=${WAIT_LOAD:-}   # e.g. 2: first wait (up to 10 minutes) for the 1-minute load to drop below it
OUT=${OUT:-$ROOT/bench-out}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
mkdir -p "$OUT"
UNIT=vigil-sleep@bench.service

ENVFILE=${VIGIL_NSPAWN_RUN:-/tmp/vigil-nspawn}/env
if [ -z "${VIGIL_TEST_SYSTEMD_BUS:-}" ]; then
  was_up=false
  [ -s "$ENVFILE" ] && was_up=true
  eval "$(bash bench/nspawn-up.sh </dev/null)"
  $was_up || trap 'bash bench/nspawn-down.sh >/dev/null 2>&1 || true' EXIT
fi

echo "building (release) ..." >&2
cargo build --release -q -p vigil-bench-checks --bin vigil-bench-systemd
BIN=$CARGO_TARGET_DIR/release/vigil-bench-systemd

busctl --address="$VIGIL_TEST_SYSTEMD_BUS" call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
  org.freedesktop.systemd1.Manager StartUnit ss "$UNIT" replace >/dev/null
if [ -n "$WAIT_LOAD" ]; then
  for _ in $(seq 120); do
    awk -v max="$WAIT_LOAD" '{ exit !($1 < max) }' /proc/loadavg && break
    sleep 5
  done
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/systemd-load.txt" >&2
echo "running $N restarts each side on $UNIT ..." >&2
"$BIN" "$VIGIL_TEST_SYSTEMD_BUS" "$UNIT" "$N" "$VIGIL_TEST_SYSTEMD_LEADER" | tee "$OUT/systemd-raw.txt"
busctl --address="$VIGIL_TEST_SYSTEMD_BUS" call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
  org.freedesktop.systemd1.Manager StopUnit ss "$UNIT" replace >/dev/null
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/systemd-load.txt" >&2

get() { # KEY FIELD
  sed -n "s/^$1 .*$2=\([-0-9]*\).*/\1/p" "$OUT/systemd-raw.txt"
}
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
row() { # LABEL KEY
  echo "| $1 | $(ms "$(get "$2" median)") | $(ms "$(get "$2" p90)") | $(ms "$(get "$2" p99)") |"
}
{
  echo "| $N restarts each, interleaved (ms) | median | p90 | p99 |"
  echo "|---|---:|---:|---:|"
  row "Vigil over D-Bus: call to active (JobRemoved)" vigil_to_active_us
  row "... systemd's own job span (ActiveExit → ActiveEnter)" vigil_job_span_us
  row "**Vigil's overhead** (to active − job span)" vigil_overhead_us
  row "... of which the RestartUnit call (until systemd names the job)" vigil_queued_us
  row "Vigil's full driver report (+ unit state read)" vigil_report_us
  row "Vigil's own CPU per restart (user+sys, the whole driver call)" vigil_cpu_us
  row "... of which the unit-state read after the job" vigil_cpu_state_us
  row "\`systemctl restart\` in the container: spawn to exit" systemctl_to_active_us
  row "... systemd's own job span" systemctl_job_span_us
  row "**systemctl's overhead**" systemctl_overhead_us
} | tee "$OUT/systemd.md"
