#!/usr/bin/env bash
# What /metrics and the TCP listener cost the daemon (docs/BENCHMARKS.md, "Metrics and the
# TCP listener").
#
#   bench/metrics.sh            # both parts, ~4 minutes
#
# 1. scrape: a daemon with 100 services x 10 checks (file_age, every 30 s) and
#    http_listen; N sequential `GET /metrics` over TCP (curl); the daemon's CPU time per
#    scrape (all its threads, from /proc/PID/task/*/schedstat, in ns), minus what it spends
#    idle over the same time, and which threads spent it.
# 2. idle: a daemon with 10 services x 2 checks, with and without http_listen (twice each,
#    alternating): its RSS and PSS (smaps_rollup) and CPU over IDLE s with no client.
#
# Environment: VIGIL (default $CARGO_TARGET_DIR/release/vigil), N (500), IDLE (60),
# SETTLE (40: after startup, so the memory release of platform/memory.rs has run).
# Only loopback is used; every process started here is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${CARGO_TARGET_DIR:=$ROOT/target}"
VIGIL=${VIGIL:-$CARGO_TARGET_DIR/release/vigil}
N=${N:-500}
IDLE=${IDLE:-60}
SETTLE=${SETTLE:-40}
[[ -x $VIGIL ]] || { echo "metrics.sh: no $VIGIL (cargo build --release -p vigild)" >&2; exit 1; }
command -v curl >/dev/null || { echo "metrics.sh: curl is required" >&2; exit 1; }

WORK=$(mktemp -d)
DAEMON=
cleanup() {
  if [[ -n $DAEMON ]] && kill -0 "$DAEMON" 2>/dev/null; then
    kill -TERM "$DAEMON" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '[metrics %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# The daemon's CPU time so far, in ns, all threads; with `by-thread`, one line per thread
# name.
cpu_ns() {
  local pid=$1 t
  for t in /proc/"$pid"/task/*; do
    printf '%s %s\n' "$(cat "$t/comm")" "$(cut -d' ' -f1 "$t/schedstat")"
  done | awk -v by="${2:-}" '{ s[$1] += $2; total += $2 }
    END { if (by) for (k in s) printf "%s %d\n", k, s[k]; else printf "%d\n", total }'
}

# writes $WORK/$1/vigil.toml: $2 services x $3 checks; $4 extra [vigil] lines.
make_config() {
  local dir=$WORK/$1 s c
  mkdir -p "$dir/state"
  touch "$dir/fresh"
  {
    printf '[vigil]\nstate_dir = "%s"\n%s\n\n' "$dir/state" "$4"
    for ((s = 0; s < $2; s++)); do
      printf '[services.svc-%03d]\ndriver = "command"\nrestart_command = ["true"]\n' "$s"
      for ((c = 0; c < $3; c++)); do
        printf '[services.svc-%03d.checks.c%d]\nkind = "file_age"\npath = "%s"\nmax_age = "24h"\nevery = "30s"\n' \
          "$s" "$c" "$dir/fresh"
      done
    done
  } >"$dir/vigil.toml"
}

# start_daemon NAME: starts it, sets DAEMON, waits for "vigil running".
start_daemon() {
  local dir=$WORK/$1 i
  "$VIGIL" run -c "$dir/vigil.toml" 2>"$dir/daemon.log" &
  DAEMON=$!
  for ((i = 0; i < 200; i++)); do
    grep -q "vigil running" "$dir/daemon.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "metrics.sh: the daemon did not start:" >&2
  cat "$dir/daemon.log" >&2
  exit 1
}

stop_daemon() {
  kill -TERM "$DAEMON"
  wait "$DAEMON" 2>/dev/null || true
  DAEMON=
}

mem() { # RSS and PSS (anon, file) in KiB
  awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Pss_Anon:/ {a=$2} /^Pss_File:/ {f=$2}
    END { printf "rss=%d pss=%d pss_anon=%d pss_file=%d\n", r, p, a, f }' "/proc/$1/smaps_rollup"
}

log "vigil: $VIGIL ($("$VIGIL" --version)); load average $(loadavg)"

# ---------------------------------------------------------------- 1. scrape cost
make_config scrape 100 10 'http_listen = "127.0.0.1:0"'
start_daemon scrape
ADDR=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/scrape/daemon.log" | head -1)
sleep 5
curl -sf "$ADDR/metrics" >"$WORK/exposition.txt"
log "exposition: $(wc -l <"$WORK/exposition.txt") lines, $(wc -c <"$WORK/exposition.txt") bytes"
idle0=$(cpu_ns "$DAEMON"); t0=$(date +%s%N)
sleep 10
idle1=$(cpu_ns "$DAEMON"); t1=$(date +%s%N)
idle_rate=$(awk -v c=$((idle1 - idle0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.6f", c / t }')
cpu_ns "$DAEMON" by >"$WORK/threads0"
c0=$(cpu_ns "$DAEMON"); t0=$(date +%s%N)
for ((i = 0; i < N; i++)); do curl -sf -o /dev/null "$ADDR/metrics"; done
c1=$(cpu_ns "$DAEMON"); t1=$(date +%s%N)
cpu_ns "$DAEMON" by >"$WORK/threads1"
awk -v c=$((c1 - c0)) -v t=$((t1 - t0)) -v r="$idle_rate" -v n="$N" 'BEGIN {
  printf "scrape: %d scrapes in %.2f s; daemon CPU %.3f ms per scrape (idle %.3f%% of a core subtracted)\n",
    n, t / 1e9, (c - r * t) / n / 1e6, r * 100 }'
join "$WORK/threads0" "$WORK/threads1" | awk -v n="$N" '{ d = $3 - $2; if (d > 0) printf "  thread %-16s %.3f ms per scrape\n", $1, d / n / 1e6 }'
log "load average $(loadavg)"
stop_daemon

# ---------------------------------------------------------------- 2. idle listener
make_config off 10 2 ''
make_config on 10 2 'http_listen = "127.0.0.1:0"'
for round in 1 2; do
  for which in off on; do
    start_daemon "$which"
    sleep "$SETTLE"
    c0=$(cpu_ns "$DAEMON"); t0=$(date +%s%N)
    sleep "$IDLE"
    c1=$(cpu_ns "$DAEMON"); t1=$(date +%s%N)
    threads=$(ls /proc/"$DAEMON"/task | wc -l)
    printf 'idle %-3s round %d: %s threads=%d cpu=%.4f%% of a core over %d s\n' "$which" "$round" \
      "$(mem "$DAEMON")" "$threads" "$(awk -v c=$((c1 - c0)) -v t=$((t1 - t0)) 'BEGIN { print c / t * 100 }')" "$IDLE"
    stop_daemon
  done
done
log "done; load average $(loadavg)"
