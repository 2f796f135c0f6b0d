#!/usr/bin/env bash
# Vigil's http checks side by side with Prometheus's blackbox_exporter, on the same probe
# load against the same server (crates/vigil-bench's sink, loopback, keep-alive):
#
#   1. vigil: TARGETS http checks (100 services x TARGETS/100 checks), each every INTERVAL
#      seconds; CPU per check = vigil's CPU (utime+stime of the process) / requests the
#      sink saw in the window; start jitter at the sink (p50/p99/max).
#   2. blackbox_exporter (Debian's prometheus-blackbox-exporter, module http_2xx) asked
#      to probe the same TARGETS URLs at the same rate by bench/blackbox_scraper.py (fixed
#      rate, THREADS keep-alive connections to the exporter). CPU per probe = the
#      exporter's CPU / probes answered; the scraper's own CPU is measured and reported
#      apart (it is not the exporter's cost).
#   3. vigil at FAST_TARGETS checks every FAST_INTERVAL (default 1,000 x 100 ms =
#      10,000 checks/s): CPU per check and jitter.
#   4. the floor: bench/floors/keepalive.c, a client with no logic (C, epoll), sends the
#      same rate of GETs over TARGETS keep-alive connections to a sink, in bursts every
#      10 ms as vigil's check grid does, and every 1 ms: the CPU per request of the
#      system calls and loopback TCP path alone (needs gcc).
#
#   bench/blackbox.sh                  # about 4 minutes after the build
#   BIN=target/dist bench/blackbox.sh  # use binaries already built
#
# Knobs: TARGETS (1000), INTERVAL (1), WARMUP (10 s), MEASURE (60 s), THREADS (8),
# FAST_TARGETS (1000), FAST_INTERVAL (0.1), OUT (bench-out). Needs jq, python3 and
# prometheus-blackbox-exporter. Loopback only; every process started here is stopped by
# PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${CARGO_TARGET_DIR:=$ROOT/target}"
export CARGO_TARGET_DIR
TARGETS=${TARGETS:-1000}
INTERVAL=${INTERVAL:-1}
WARMUP=${WARMUP:-10}
MEASURE=${MEASURE:-60}
THREADS=${THREADS:-8}
FAST_TARGETS=${FAST_TARGETS:-1000}
FAST_INTERVAL=${FAST_INTERVAL:-0.1}
OUT=${OUT:-$ROOT/bench-out}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
EXPORTER=${EXPORTER:-/usr/bin/prometheus-blackbox-exporter}
[[ -x $EXPORTER ]] || { echo "blackbox.sh: $EXPORTER missing (apt-get install prometheus-blackbox-exporter)" >&2; exit 2; }
if [[ -z ${BIN:-} ]]; then
  echo "building vigild and vigil-bench (dist) ..." >&2
  cargo build -q --profile dist -p vigild -p vigil-bench
  BIN=$CARGO_TARGET_DIR/dist
fi
mkdir -p "$OUT/blackbox"
WORK=$(mktemp -d /tmp/vigil-blackbox.XXXXXX)

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TCK=$(getconf CLK_TCK)

start_sink() { # start_sink DIR EXPECT_MS
  "$BIN/vigil-bench-sink" --port-file "$1/sink.port" --report "$1/sink.json" \
    --expect-interval-ms "$2" --no-per-path 2>"$1/sink.log" &
  SINK=$!
  PIDS+=("$SINK")
  for _ in $(seq 100); do [[ -s $1/sink.port ]] && break; sleep 0.05; done
  SINK_PORT=$(<"$1/sink.port")
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

vigil_run() { # vigil_run NAME TARGETS INTERVAL_S
  local name=$1 n=$2 every=$3 d=$WORK/$1
  mkdir -p "$d/state"
  local ms
  ms=$(awk -v s="$every" 'BEGIN { printf "%d", s * 1000 }')
  start_sink "$d" "$ms"
  local per=$((n / 100))
  {
    printf '[vigil]\nstate_dir = "%s"\nlog_level = "warn"\n' "$d/state"
    for ((s = 0; s < 100; s++)); do
      printf '\n[services.s%d]\ndriver = "command"\nrestart_command = ["true"]\n' "$s"
      for ((c = 0; c < per; c++)); do
        printf '\n[services.s%d.checks.c%d]\nkind = "http"\nurl = "http://127.0.0.1:%s/t%d"\n' \
          "$s" "$c" "$SINK_PORT" $((s * per + c))
        printf 'every = "%sms"\ntimeout = "2s"\non_failure = "alert"\n' "$ms"
      done
    done
  } >"$d/vigil.toml"
  "$BIN/vigil" run -c "$d/vigil.toml" 2>"$d/vigil.log" &
  local v=$!
  PIDS+=("$v")
  sleep "$WARMUP"
  kill -USR1 "$SINK"
  local l0 c0 l1 c1
  l0=$(load)
  c0=$(cpu_ticks "$v")
  sleep "$MEASURE"
  c1=$(cpu_ticks "$v")
  l1=$(load)
  kill -USR2 "$SINK"
  sleep 0.5
  stop "$v"
  stop "$SINK"
  for _ in $(seq 100); do [[ -s $d/sink.json ]] && break; sleep 0.05; done
  jq -c 'del(.per_path)' "$d/sink.json" >"$OUT/blackbox/$name-sink.json"
  local reqs
  reqs=$(jq .requests "$d/sink.json")
  local cpu_s
  cpu_s=$(awk -v a="$c0" -v b="$c1" -v t="$TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
  printf '%s cpu_s=%s checks=%s us_per_check=%s jitter_p50=%s jitter_p99=%s jitter_max=%s load="%s -> %s"\n' \
    "$name" "$cpu_s" "$reqs" \
    "$(awk -v c="$cpu_s" -v n="$reqs" 'BEGIN { printf "%.1f", c * 1e6 / n }')" \
    "$(jq .jitter_ms.p50 "$d/sink.json")" "$(jq .jitter_ms.p99 "$d/sink.json")" \
    "$(jq .jitter_ms.max "$d/sink.json")" "$l0" "$l1" | tee -a "$OUT/blackbox/results.txt"
}

blackbox_run() {
  local d=$WORK/blackbox
  mkdir -p "$d"
  start_sink "$d" "$(awk -v s="$INTERVAL" 'BEGIN { printf "%d", s * 1000 }')"
  printf 'modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n' >"$d/blackbox.yml"
  local port
  port=$(free_port)
  "$EXPORTER" --config.file="$d/blackbox.yml" --web.listen-address="127.0.0.1:$port" \
    --log.level=warn 2>"$d/exporter.log" &
  local e=$!
  PIDS+=("$e")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/metrics" >/dev/null && break; sleep 0.1; done
  # One scraper run covers the warm-up and the window; CPU is read around the window.
  python3 "$ROOT/bench/blackbox_scraper.py" "$port" "$SINK_PORT" "$TARGETS" "$INTERVAL" \
    $((WARMUP + MEASURE + 2)) "$THREADS" >"$d/scraper.txt" &
  local s=$!
  PIDS+=("$s")
  sleep "$WARMUP"
  kill -USR1 "$SINK"
  local l0 e0 s0 l1 e1 s1
  l0=$(load)
  e0=$(cpu_ticks "$e")
  s0=$(cpu_ticks "$s")
  sleep "$MEASURE"
  e1=$(cpu_ticks "$e")
  s1=$(cpu_ticks "$s")
  l1=$(load)
  kill -USR2 "$SINK"
  wait "$s" || true
  stop "$e"
  stop "$SINK"
  for _ in $(seq 100); do [[ -s $d/sink.json ]] && break; sleep 0.05; done
  jq -c 'del(.per_path)' "$d/sink.json" >"$OUT/blackbox/blackbox-sink.json"
  local probes ecpu scpu
  probes=$(jq .requests "$d/sink.json")
  ecpu=$(awk -v a="$e0" -v b="$e1" -v t="$TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
  scpu=$(awk -v a="$s0" -v b="$s1" -v t="$TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
  printf 'blackbox_exporter cpu_s=%s probes=%s us_per_probe=%s scraper_cpu_s=%s scraper="%s" jitter_p50=%s jitter_p99=%s load="%s -> %s"\n' \
    "$ecpu" "$probes" "$(awk -v c="$ecpu" -v n="$probes" 'BEGIN { printf "%.1f", c * 1e6 / n }')" \
    "$scpu" "$(cat "$d/scraper.txt")" "$(jq .jitter_ms.p50 "$d/sink.json")" \
    "$(jq .jitter_ms.p99 "$d/sink.json")" "$l0" "$l1" | tee -a "$OUT/blackbox/results.txt"
}

: >"$OUT/blackbox/results.txt"
echo "vigil $("$BIN/vigil" --version 2>/dev/null | head -1); $("$EXPORTER" --version 2>&1 | head -1); $(nproc) cores" |
  tee -a "$OUT/blackbox/results.txt"
floor_run() { # floor_run TICK_S
  local d=$WORK/floor-$1
  mkdir -p "$d"
  gcc -O2 -o "$WORK/keepalive" "$ROOT/bench/floors/keepalive.c"
  start_sink "$d" "$(awk -v s="$INTERVAL" 'BEGIN { printf "%d", s * 1000 }')"
  local l0 out
  l0=$(load)
  out=$("$WORK/keepalive" "$SINK_PORT" "$TARGETS" \
    "$(awk -v n="$TARGETS" -v s="$INTERVAL" 'BEGIN { printf "%d", n / s }')" "$MEASURE" "$1")
  printf 'floor-keepalive-c %s load="%s -> %s"\n' "$out" "$l0" "$(load)" |
    tee -a "$OUT/blackbox/results.txt"
  stop "$SINK"
}

vigil_run vigil "$TARGETS" "$INTERVAL"
floor_run 0.01
blackbox_run
vigil_run vigil-fast "$FAST_TARGETS" "$FAST_INTERVAL"
floor_run 0.001
