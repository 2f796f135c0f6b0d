#!/usr/bin/env bash
# End-to-end benchmarks of the `vigil` daemon and CLI on loopback.
#
#   bench/e2e.sh                 # all scenarios (a b c d), ~4 minutes
#   SCENARIOS="a d" bench/e2e.sh # a subset (d uses a's CPU per check when both run)
#
# Scenarios:
#   a  1,000 http checks at every=1s against vigil-bench-sink: vigil's CPU% of one core,
#      RSS/PSS (max over 1 s samples), check start jitter p50/p99 seen by the sink.
#   b  idle daemon: 100 services, 300 checks (http/tcp/listening) at every=1m: RSS/PSS.
#   c  one-shot CLI latency with hyperfine: `vigil restart`, `vigil status`, `vigil check`,
#      beside a program that does nothing (bench/floors/empty.c, glibc and musl builds).
#   d  the seed-000 shell equivalent: CPU of `curl -s -m 5 URL` per check vs vigil's.
#
# Environment: CARGO_TARGET_DIR (honoured), SCENARIOS, WARMUP (10), MEASURE (60),
# IDLE_WAIT (30), IDLE_WAIT2 (35, extra time for b until every check has run once),
# CURL_N (200), HYPERFINE_RUNS (50), OUT (bench-out), WAIT_LOAD (unset: before each
# scenario, wait up to WAIT_LOAD_MAX=600 s for the 1-minute load average to drop below it).
# Results: $OUT/<scenario>/*.json and $OUT/summary.md. Needs: cargo, jq, curl, hyperfine,
# /usr/bin/time. Only loopback is used. Every process started here is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${CARGO_TARGET_DIR:=$ROOT/target}"
export CARGO_TARGET_DIR
SCENARIOS=${SCENARIOS:-"a b c d"}
WARMUP=${WARMUP:-10}
MEASURE=${MEASURE:-60}
IDLE_WAIT=${IDLE_WAIT:-30}
IDLE_WAIT2=${IDLE_WAIT2:-35}
CURL_N=${CURL_N:-200}
HYPERFINE_RUNS=${HYPERFINE_RUNS:-50}
OUT=${OUT:-$ROOT/bench-out}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac

for tool in jq curl; do
  command -v "$tool" >/dev/null || { echo "e2e.sh: $tool is required" >&2; exit 1; }
done
[[ -x /usr/bin/time ]] || { echo "e2e.sh: /usr/bin/time is required (apt-get install time)" >&2; exit 1; }

log() { printf '[e2e %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# TCP sockets in this network namespace: listening checks read the whole table.
tcp_sockets() { cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -vc 'local_address' || true; }

# ---------------------------------------------------------------- processes we own
PIDS=()
forget_pid() { # a reaped PID may be reused by someone else: never signal it again
  local pid=$1 keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
ours() { # ours PID: still running (not a zombie) and our child, so safe to signal
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -r -a st <<<"${st##*) }"
  [[ ${st[0]} != Z && ${st[1]} == "$$" ]]
}
stop_pid() { # stop_pid PID [signal]: signal, wait up to 15 s, then SIGKILL; always reaped
  local pid=$1 sig=${2:-TERM} i
  if ours "$pid"; then
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      ours "$pid" || break
      sleep 0.1
    done
    if ours "$pid"; then
      log "pid $pid did not stop after SIG$sig; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_file() { # wait_file PATH PID: until PATH exists, or fail if PID died
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $1 ]] && return 0
    ours "$2" || { echo "e2e.sh: pid $2 exited before writing $1" >&2; return 1; }
    sleep 0.05
  done
  echo "e2e.sh: timed out waiting for $1" >&2
  return 1
}

SINK_PID=''
SINK_PORT=''
start_sink() { # start_sink DIR [EXPECT_MS]: a sink reporting to DIR/sink.json
  local dir=$1 expect_ms=${2:-1000}
  rm -f "$dir/sink.port" "$dir/sink.json"
  "$BIN/vigil-bench-sink" --port-file "$dir/sink.port" --report "$dir/sink.json" \
    --expect-interval-ms "$expect_ms" 2>"$dir/sink.log" &
  SINK_PID=$!
  PIDS+=("$SINK_PID")
  wait_file "$dir/sink.port" "$SINK_PID"
  SINK_PORT=$(<"$dir/sink.port")
}

VIGIL_PID=''
start_vigil() { # start_vigil CONFIG LOG
  "$BIN/vigil" run -c "$1" 2>"$2" &
  VIGIL_PID=$!
  PIDS+=("$VIGIL_PID")
}
alive_or_die() { # alive_or_die PID LOG
  ours "$1" && return 0
  echo "e2e.sh: vigil (pid $1) died; its log:" >&2
  tail -n 30 "$2" >&2
  exit 1
}

# ---------------------------------------------------------------- summary table
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }
verdict() { # verdict VALUE TARGET (lower is better) -> "met" / "missed by X (Y%)"
  awk -v v="$1" -v t="$2" 'BEGIN {
    if (v == "" || v == "null") { print "no data"; exit }
    if (v + 0 <= t + 0) { print "met" } else { printf "missed by %.3g (%+.0f%%)\n", v - t, 100 * (v - t) / t }
  }'
}
calc() { awk "BEGIN { v = $*; if (v >= 1000 || v <= -1000) printf \"%.0f\", v; else printf \"%.4g\", v }"; }

# ---------------------------------------------------------------- build
log "building vigild and vigil-bench (the packages' dist profile, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --profile dist -p vigild -p vigil-bench
BIN=$CARGO_TARGET_DIR/dist
mkdir -p "$OUT"
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git -C "$ROOT" status --porcelain -- crates 2>/dev/null | head -c1)
log "load before: $(loadavg) on $(nproc) cores"
START_LOAD=$(loadavg)
START_SOCKETS=$(tcp_sockets)

want() {
  [[ " $SCENARIOS " == *" $1 "* ]] || return 1
  [[ -n ${WAIT_LOAD:-} ]] || return 0
  local waited=0 l1
  while l1=$(cut -d' ' -f1 /proc/loadavg) && awk -v l="$l1" -v m="$WAIT_LOAD" 'BEGIN { exit !(l >= m) }'; do
    if ((waited >= ${WAIT_LOAD_MAX:-600})); then
      log "$1: load $l1 still >= $WAIT_LOAD after ${waited}s; running anyway"
      break
    fi
    ((waited == 0)) && log "$1: waiting for the 1-minute load ($l1) to drop below $WAIT_LOAD"
    sleep 10
    waited=$((waited + 10))
  done
  return 0
}
VIGIL_CPU_PER_CHECK_US=

# ---------------------------------------------------------------- a: 1,000 http checks at 1 s
if want a; then
  D=$OUT/a && rm -rf "$D" && mkdir -p "$D/state"
  start_sink "$D"
  {
    printf '[vigil]\nstate_dir = "%s"\nlog_level = "warn"\n' "$D/state"
    for ((s = 0; s < 100; s++)); do
      printf '\n[services.s%d]\ndriver = "command"\nrestart_command = ["true"]\n' "$s"
      for ((c = 0; c < 10; c++)); do
        printf '\n[services.s%d.checks.c%d]\nkind = "http"\nurl = "http://127.0.0.1:%s/s%d/c%d"\n' \
          "$s" "$c" "$SINK_PORT" "$s" "$c"
        printf 'every = "1s"\ntimeout = "2s"\non_failure = "alert"\n'
      done
    done
  } >"$D/vigil.toml"
  "$BIN/vigil" config check -c "$D/vigil.toml" >"$D/config-check.txt" 2>&1 ||
    { cat "$D/config-check.txt" >&2; exit 1; }
  A_LOAD0=$(loadavg)
  log "a: 1,000 http checks every 1s; warm-up ${WARMUP}s, then ${MEASURE}s measured (load $A_LOAD0)"
  start_vigil "$D/vigil.toml" "$D/vigil.log"
  sleep "$WARMUP"
  alive_or_die "$VIGIL_PID" "$D/vigil.log"
  kill -USR1 "$SINK_PID"
  "$BIN/vigil-bench-sample" --pid "$SINK_PID" --duration "$MEASURE" --out "$D/sink-proc.json" 2>/dev/null &
  SINK_SAMPLER=$!
  PIDS+=("$SINK_SAMPLER")
  "$BIN/vigil-bench-sample" --pid "$VIGIL_PID" --duration "$MEASURE" --out "$D/vigil-proc.json"
  wait "$SINK_SAMPLER" || true
  forget_pid "$SINK_SAMPLER"
  kill -USR2 "$SINK_PID" # end of the window: vigil's shutdown is not measured
  alive_or_die "$VIGIL_PID" "$D/vigil.log"
  stop_pid "$VIGIL_PID"
  stop_pid "$SINK_PID"
  A_LOAD1=$(loadavg)
  # A summary without the per-path arrays.
  jq 'del(.per_path)' "$D/sink.json" >"$D/sink-summary.json"

  cpu_pct=$(jq -r .cpu_pct_one_core "$D/vigil-proc.json")
  cpu_s=$(jq -r .cpu_s "$D/vigil-proc.json")
  rss_mib=$(calc "$(jq -r .max.rss_kib "$D/vigil-proc.json") / 1024")
  pss_mib=$(calc "$(jq -r .max.pss_kib "$D/vigil-proc.json") / 1024")
  threads=$(jq -r .max.threads "$D/vigil-proc.json")
  requests=$(jq -r .requests "$D/sink.json")
  rate=$(jq -r .requests_per_s "$D/sink.json")
  j50=$(jq -r .jitter_ms.p50 "$D/sink.json")
  j99=$(jq -r .jitter_ms.p99 "$D/sink.json")
  jmax=$(jq -r .jitter_ms.max "$D/sink.json")
  late=$(jq -r .late_intervals_over_1_5x "$D/sink.json")
  conns=$(jq -r .connections_accepted "$D/sink.json")
  sink_cpu=$(jq -r .cpu_pct_one_core "$D/sink-proc.json")
  warn_lines=$(grep -c . "$D/vigil.log" || true)
  VIGIL_CPU_PER_CHECK_US=$(calc "1e6 * $cpu_s / $requests")
  L="$A_LOAD0 → $A_LOAD1"
  row "a. 1,000 http checks @1s" "vigil CPU, % of one core" "$cpu_pct" "≤ 10" "$(verdict "$cpu_pct" 10)" "$L"
  row "a." "vigil RSS max, MiB" "$rss_mib" "≤ 30" "$(verdict "$rss_mib" 30)" "$L"
  row "a." "vigil PSS max, MiB" "$pss_mib" "—" "—" "$L"
  row "a." "check start jitter p50, ms (at the sink)" "$j50" "—" "—" "$L"
  row "a." "check start jitter p99, ms (at the sink)" "$j99" "< 5" "$(verdict "$j99" 5)" "$L"
  row "a." "check start jitter max, ms; late (>1.5 s) intervals" "$jmax; $late" "—" "—" "$L"
  row "a." "checks in window; rate/s; new connections" "$requests; $rate; $conns" "—" "—" "$L"
  row "a." "CPU per check, µs; threads; log lines" "$VIGIL_CPU_PER_CHECK_US; $threads; $warn_lines" "—" "—" "$L"
  row "a." "sink CPU, % of one core (not vigil)" "$sink_cpu" "—" "—" "$L"
fi

# ---------------------------------------------------------------- b: idle daemon
if want b; then
  D=$OUT/b && rm -rf "$D" && mkdir -p "$D/state"
  start_sink "$D" 60000
  {
    printf '[vigil]\nstate_dir = "%s"\nlog_level = "warn"\n' "$D/state"
    for ((s = 0; s < 100; s++)); do
      printf '\n[services.s%d]\ndriver = "command"\nrestart_command = ["true"]\n' "$s"
      printf '\n[services.s%d.checks.http]\nkind = "http"\nurl = "http://127.0.0.1:%s/idle/s%d"\nevery = "1m"\ntimeout = "2s"\non_failure = "alert"\n' \
        "$s" "$SINK_PORT" "$s"
      printf '\n[services.s%d.checks.tcp]\nkind = "tcp"\nhost = "127.0.0.1"\nport = %s\nevery = "1m"\ntimeout = "2s"\non_failure = "alert"\n' \
        "$s" "$SINK_PORT"
      printf '\n[services.s%d.checks.listening]\nkind = "listening"\nport = %s\nevery = "1m"\ntimeout = "2s"\non_failure = "alert"\n' \
        "$s" "$SINK_PORT"
    done
  } >"$D/vigil.toml"
  "$BIN/vigil" config check -c "$D/vigil.toml" >"$D/config-check.txt" 2>&1 ||
    { cat "$D/config-check.txt" >&2; exit 1; }
  B_LOAD0=$(loadavg)
  log "b: idle daemon, 100 services / 300 checks every 1m; sampling ${IDLE_WAIT}s + ${IDLE_WAIT2}s (load $B_LOAD0)"
  start_vigil "$D/vigil.toml" "$D/vigil.log"
  "$BIN/vigil-bench-sample" --pid "$VIGIL_PID" --duration "$IDLE_WAIT" --out "$D/vigil-proc-30s.json"
  alive_or_die "$VIGIL_PID" "$D/vigil.log"
  B_LOAD1=$(loadavg)
  "$BIN/vigil-bench-sample" --pid "$VIGIL_PID" --duration "$IDLE_WAIT2" --out "$D/vigil-proc-late.json"
  alive_or_die "$VIGIL_PID" "$D/vigil.log"
  stop_pid "$VIGIL_PID"
  stop_pid "$SINK_PID"
  B_LOAD2=$(loadavg)
  jq 'del(.per_path)' "$D/sink.json" >"$D/sink-summary.json"
  rss30=$(calc "$(jq -r .last.rss_kib "$D/vigil-proc-30s.json") / 1024")
  pss30=$(calc "$(jq -r .last.pss_kib "$D/vigil-proc-30s.json") / 1024")
  rss_late=$(calc "$(jq -r .last.rss_kib "$D/vigil-proc-late.json") / 1024")
  pss_late=$(calc "$(jq -r .last.pss_kib "$D/vigil-proc-late.json") / 1024")
  anon_late=$(calc "$(jq -r .last.pss_anon_kib "$D/vigil-proc-late.json") / 1024")
  threads_b=$(jq -r .max.threads "$D/vigil-proc-late.json")
  cpu_b=$(jq -r .cpu_pct_one_core "$D/vigil-proc-late.json")
  http_runs=$(jq -r .requests "$D/sink.json")
  t_late=$((IDLE_WAIT + IDLE_WAIT2))
  row "b. idle, 300 checks @1m" "vigil RSS at ${IDLE_WAIT} s, MiB" "$rss30" "≤ 15" "$(verdict "$rss30" 15)" "$B_LOAD0 → $B_LOAD1"
  row "b." "vigil PSS at ${IDLE_WAIT} s, MiB" "$pss30" "—" "—" "$B_LOAD0 → $B_LOAD1"
  row "b." "vigil RSS / PSS / PSS anon at ${t_late} s, MiB" "$rss_late / $pss_late / $anon_late" "≤ 15 (RSS)" "$(verdict "$rss_late" 15)" "$B_LOAD1 → $B_LOAD2"
  row "b." "CPU % of one core (${IDLE_WAIT}–${t_late} s); threads; http runs seen" "$cpu_b; $threads_b; $http_runs" "—" "—" "$B_LOAD1 → $B_LOAD2"
fi

# ---------------------------------------------------------------- c: one-shot CLI latency
if want c; then
  if ! command -v hyperfine >/dev/null; then
    log "c: hyperfine missing: apt-get install -y hyperfine (skipping c)"
    row "c. CLI" "hyperfine missing" "—" "—" "not run" "$(loadavg)"
  else
    D=$OUT/c && rm -rf "$D" && mkdir -p "$D/state"
    start_sink "$D"
    cat >"$D/vigil.toml" <<EOF
[vigil]
state_dir = "$D/state"
log_level = "warn"

[services.svc]
driver = "command"
restart_command = ["true"]

[services.svc.guard]
cooldown = "0"
max_restarts = 1000000
window = "1h"

[services.svc.checks.http]
kind = "http"
url = "http://127.0.0.1:$SINK_PORT/cli/check"
every = "1m"
timeout = "2s"
on_failure = "alert"
EOF
    "$BIN/vigil" config check -c "$D/vigil.toml" >"$D/config-check.txt" 2>&1 ||
      { cat "$D/config-check.txt" >&2; exit 1; }
    # Sanity: each command works before timing it.
    "$BIN/vigil" restart -c "$D/vigil.toml" svc >"$D/restart.out" 2>&1 ||
      { echo "e2e.sh: vigil restart failed:" >&2; cat "$D/restart.out" >&2; exit 1; }
    "$BIN/vigil" check -c "$D/vigil.toml" >"$D/check.out" 2>&1 ||
      { echo "e2e.sh: vigil check failed:" >&2; cat "$D/check.out" >&2; exit 1; }
    # The floor: a program that does nothing, linked against glibc (as the .deb's
    # binary) and, with musl-gcc, statically against musl (as the tarball's).
    floors=(empty_glibc)
    gcc -O2 -o "$D/empty_glibc" "$ROOT/bench/floors/empty.c"
    if command -v musl-gcc >/dev/null; then
      musl-gcc -O2 -static -o "$D/empty_musl" "$ROOT/bench/floors/empty.c" && floors+=(empty_musl)
    fi
    floor_cmds=()
    for f in "${floors[@]}"; do floor_cmds+=(-n "$f" "$D/$f"); done
    C_LOAD0=$(loadavg)
    log "c: hyperfine, $HYPERFINE_RUNS runs each (load $C_LOAD0)"
    hyperfine -N --warmup 3 --runs "$HYPERFINE_RUNS" --style basic \
      --export-json "$D/hyperfine.json" --export-markdown "$D/hyperfine.md" \
      -n restart "$BIN/vigil restart -c $D/vigil.toml svc" \
      -n status "$BIN/vigil status -c $D/vigil.toml" \
      -n check "$BIN/vigil check -c $D/vigil.toml" \
      "${floor_cmds[@]}" >"$D/hyperfine.txt" 2>&1 ||
      { cat "$D/hyperfine.txt" >&2; exit 1; }
    stop_pid "$SINK_PID"
    C_LOAD1=$(loadavg)
    for f in "${floors[@]}"; do
      q=".results[] | select(.command == \"$f\")"
      cpu=$(jq -r "$q | (.user + .system) * 1000" "$D/hyperfine.json")
      row "c." "floor: \`bench/floors/empty.c\` ($f) CPU user+sys mean, ms" "$(calc "$cpu")" "—" "—" "$C_LOAD0 → $C_LOAD1"
    done
    for name in restart status check; do
      q=".results[] | select(.command == \"$name\")"
      mean=$(jq -r "$q | .mean * 1000" "$D/hyperfine.json")
      sd=$(jq -r "$q | .stddev * 1000" "$D/hyperfine.json")
      median=$(jq -r "$q | .median * 1000" "$D/hyperfine.json")
      cpu=$(jq -r "$q | (.user + .system) * 1000" "$D/hyperfine.json")
      row "c. CLI one-shot" "\`vigil $name\` wall mean ± sd (median), ms" \
        "$(calc "$mean") ± $(calc "$sd") ($(calc "$median"))" "—" "—" "$C_LOAD0 → $C_LOAD1"
      row "c." "\`vigil $name\` CPU user+sys mean, ms" "$(calc "$cpu")" "—" "—" "$C_LOAD0 → $C_LOAD1"
    done
  fi
fi

# ---------------------------------------------------------------- d: seed-000 shell equivalent
if want d; then
  D=$OUT/d && rm -rf "$D" && mkdir -p "$D"
  start_sink "$D"
  D_LOAD0=$(loadavg)
  log "d: $CURL_N x curl -s -m 5 URL in a bash loop (load $D_LOAD0)"
  URL="http://127.0.0.1:$SINK_PORT/seed/health"
  # shellcheck disable=SC2016 # $1/$2 expand in the inner bash, on purpose
  /usr/bin/time -f '%e %U %S' -o "$D/time.txt" \
    bash -c 'for ((i = 0; i < $1; i++)); do curl -s -m 5 "$2" >/dev/null; done' _ "$CURL_N" "$URL"
  stop_pid "$SINK_PID"
  D_LOAD1=$(loadavg)
  read -r wall usr sys <"$D/time.txt"
  served=$(jq -r .requests "$D/sink.json")
  curl_us=$(calc "1e6 * ($usr + $sys) / $CURL_N")
  L="$D_LOAD0 → $D_LOAD1"
  row "d. seed-000 shell check" "\`curl -s -m 5\` CPU per check (bash loop, children), µs" "$curl_us" "—" "—" "$L"
  row "d." "curl loop: runs, served by the sink, wall s" "$CURL_N, $served, $wall" "—" "—" "$L"
  if [[ -n $VIGIL_CPU_PER_CHECK_US ]]; then
    ratio=$(calc "$curl_us / $VIGIL_CPU_PER_CHECK_US")
    row "d." "CPU per check: curl ÷ vigil (from a)" "${ratio}×" "—" "—" "$L"
  else
    row "d." "CPU per check: curl ÷ vigil" "run scenario a too" "—" "—" "$L"
  fi
fi

# ---------------------------------------------------------------- summary
END_LOAD=$(loadavg)
{
  echo "# Vigil e2e benchmark summary"
  echo
  echo "- when: $(date -u +%Y-%m-%dT%H:%M:%SZ); git $GIT_REV${GIT_DIRTY:+ (crates/ has uncommitted changes)}"
  echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "- load average (1/5/15 min): $START_LOAD at start, $END_LOAD at end"
  echo "- TCP sockets in the network namespace (/proc/net/tcp + tcp6): $START_SOCKETS at start, $(tcp_sockets) at end"
  echo "- scenarios: $SCENARIOS; warm-up ${WARMUP}s, measure ${MEASURE}s; raw data in $(realpath --relative-to="$ROOT" "$OUT" 2>/dev/null || echo "$OUT")/"
  echo
  echo "| scenario | metric | value | target | verdict | load 1/5/15 (start → end) |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
