#!/usr/bin/env bash
# Per-check CPU of Vigil's probes vs the shell pipelines they replace (the seeds in
# /work/shared/seeds: curl, `ss | grep | wc -l`, `grep -c error`, `</dev/tcp`, redis-cli,
# `openssl s_client | openssl x509`). Goal (issue): each kind costs >= 50x less CPU per
# check than its shell twin.
#
#   bench/checks.sh                      # everything, ~3-5 minutes on 2 cores
#   KINDS="http tcp" bench/checks.sh     # a subset
#
# Vigil side: `vigil-bench-checks KIND N WARMUP ...` (crates/vigil-bench-checks, release
# build) runs `vigil_checks::probe` WARMUP times unmeasured, then N times in the daemon's
# runtime shape, and reports process CPU (user+sys, all threads) and wall time per run.
# Shell side: a bash loop runs `bash -c "<pipeline>"` SHELL_N times; CPU is the loop's
# children CPU (user+sys, the `times` builtin = getrusage(RUSAGE_CHILDREN)), so it covers
# the `bash -c` and every process of the pipeline. The loop's own fork() cost is NOT
# counted (in the shell's favour).
#
# Environment: CARGO_TARGET_DIR (honoured), KINDS, VIGIL_N (2000), LOG_VIGIL_N (1000),
# WARMUP (20), SHELL_N (200), SHELL_BUDGET_S (30: the shell loop stops early after this), CONNS (1000 established loopback connections for `sockets`),
# VIGIL_BENCH_BUDGET_S (20: the driver stops a kind's measured loop after this much wall
# time; the table shows the runs actually measured), OUT (bench-out). Results: printed table and $OUT/checks.md (+ raw lines in
# $OUT/checks-raw.txt). Loopback only; every process started here is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${CARGO_TARGET_DIR:=$ROOT/target}"
export CARGO_TARGET_DIR
KINDS=${KINDS:-"http http_socks5h tcp listening sockets log exec redis tls_cert"}
VIGIL_N=${VIGIL_N:-2000}
LOG_VIGIL_N=${LOG_VIGIL_N:-1000}
WARMUP=${WARMUP:-20}
SHELL_N=${SHELL_N:-200}
SHELL_BUDGET_S=${SHELL_BUDGET_S:-30}
CONNS=${CONNS:-1000}
OUT=${OUT:-$ROOT/bench-out}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/vigil-bench-checks.XXXXXX)
RAW=$OUT/checks-raw.txt
: >"$RAW"

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "building (release) ..." >&2
cargo build --release -q -p vigil-bench-checks -p vigil-test-helpers
DRIVER=$CARGO_TARGET_DIR/release/vigil-bench-checks
FLAKY=$CARGO_TARGET_DIR/release/vigil-flaky-http

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # PORT: until something accepts on 127.0.0.1:PORT (10 s)
  local i
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "checks.sh: nothing listening on $1" >&2
  return 1
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# shell_cpu N PIPELINE [APPEND_FROM APPEND_TO] -> "cpu_us wall_us runs" (per run; the
# loop stops early after SHELL_BUDGET_S seconds).
# With APPEND_*, APPEND_FROM's content is appended to APPEND_TO before each run by the
# builtin printf (no process, not counted).
shell_cpu() {
  bash -c '
    n=$1; cmd=$2; from=${3:-}; to=${4:-}; tdir=$5; budget=$6
    [[ -n $from ]] && chunk=$(<"$from")
    for ((i = 0; i < 5; i++)); do
      [[ -n $from ]] && printf "%s\n" "$chunk" >>"$to"
      bash -c "$cmd" >/dev/null 2>&1 || true
    done
    times >"$tdir/t0"; w0=$EPOCHREALTIME
    end=$(( ${w0%.*} + budget ))
    for ((i = 0; i < n; i++)); do
      (( ${EPOCHREALTIME%.*} >= end )) && break
      [[ -n $from ]] && printf "%s\n" "$chunk" >>"$to"
      bash -c "$cmd" >/dev/null 2>&1 || true
    done
    w1=$EPOCHREALTIME; times >"$tdir/t1"
    echo "$w0 $w1 $i" >"$tdir/w"
  ' _ "$1" "$2" "${3:-}" "${4:-}" "$WORK" "$SHELL_BUDGET_S"
  # `times` line 2: children user and sys, like 0m1.234s 0m0.567s.
  python3 - "$WORK" "$1" <<'PY'
import re, sys
d = sys.argv[1]
def ch(p):
    line = open(p).read().splitlines()[1]
    return sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", line))
w0, w1, n = open(d + "/w").read().split()
w0, w1, n = float(w0), float(w1), max(int(n), 1)
print(f"{(ch(d + '/t1') - ch(d + '/t0')) / n * 1e6:.1f} {(w1 - w0) / n * 1e6:.1f} {n}")
PY
}

ROWS=()
# bench NAME VIGIL_N "DRIVER ARGS" "SHELL PIPELINE" [APPEND_FROM APPEND_TO]
bench() {
  local name=$1 vn=$2 dargs=$3 pipeline=$4 from=${5:-} to=${6:-}
  local la0 vline vcpu vwall vpass sres scpu swall la1 ratio met
  la0=$(loadavg)
  local socks; socks=$(awk '/^TCP:/ {print $3}' /proc/net/sockstat)
  socks=$((socks + $(awk '/^TCP6:/ {print $3}' /proc/net/sockstat6 2>/dev/null || echo 0)))
  # shellcheck disable=SC2086
  vline=$("$DRIVER" $dargs)
  echo "$name | $vline" >>"$RAW"
  vcpu=$(sed -E 's/.* cpu_us=([0-9.]+).*/\1/' <<<"$vline")
  vwall=$(sed -E 's/.* wall_us=([0-9.]+).*/\1/' <<<"$vline")
  vpass=$(sed -E 's/.* passed=([0-9]+).*/\1/' <<<"$vline")
  vn=$(sed -E 's/.* n=([0-9]+) .*/\1/' <<<"$vline")
  sres=$(shell_cpu "$SHELL_N" "$pipeline" "$from" "$to")
  local sn
  read -r scpu swall sn <<<"$sres"
  echo "$name | shell: $pipeline | cpu_us=$scpu wall_us=$swall n=$sn" >>"$RAW"
  la1=$(loadavg)
  ratio=$(python3 -c "print(f'{$scpu / $vcpu:.0f}')")
  met=$(python3 -c "print('yes' if $scpu / $vcpu >= 50 else 'NO')")
  ROWS+=("| $name | $vcpu | $vwall | $vpass/$vn | \`$pipeline\` | $scpu | $swall | $sn | ${ratio}x | $met | $socks | $la0 → $la1 |")
  echo "$name: vigil ${vcpu}us cpu, ${vwall}us wall; shell ${scpu}us cpu; ${ratio}x ($met)" >&2
}

want() { [[ " $KINDS " == *" $1 "* ]]; }

HTTP_PORT=$(free_port)
"$FLAKY" --port "$HTTP_PORT" &
PIDS+=($!)
wait_port "$HTTP_PORT"
URL=http://127.0.0.1:$HTTP_PORT/health

if want http; then
  bench http "$VIGIL_N" "http $VIGIL_N $WARMUP $URL" \
    "curl -s -o /dev/null -w '%{http_code}' -m 5 $URL"
fi

if want http_socks5h; then
  SOCKS_PORT=$(free_port)
  microsocks -i 127.0.0.1 -p "$SOCKS_PORT" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_port "$SOCKS_PORT"
  bench http_socks5h "$VIGIL_N" "http $VIGIL_N $WARMUP $URL socks5h://127.0.0.1:$SOCKS_PORT" \
    "curl -s -o /dev/null -w '%{http_code}' -m 5 -x socks5h://127.0.0.1:$SOCKS_PORT $URL"
fi

if want tcp; then
  bench tcp "$VIGIL_N" "tcp $VIGIL_N $WARMUP 127.0.0.1 $HTTP_PORT" \
    "timeout 5 bash -c '</dev/tcp/127.0.0.1/$HTTP_PORT'"
fi

if want listening; then
  bench listening "$VIGIL_N" "listening $VIGIL_N $WARMUP $HTTP_PORT" \
    "ss -tln | grep -q :$HTTP_PORT"
fi

if want exec; then
  bench exec "$VIGIL_N" "exec $VIGIL_N $WARMUP true" "true"
fi

if want redis && command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no >/dev/null 2>&1 &
  PIDS+=($!)
  wait_port "$REDIS_PORT"
  bench redis "$VIGIL_N" "redis $VIGIL_N $WARMUP 127.0.0.1 $REDIS_PORT" \
    "redis-cli -p $REDIS_PORT ping"
fi

if want tls_cert; then
  TLS_PORT=$(free_port)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
  openssl s_server -accept "127.0.0.1:$TLS_PORT" -cert "$WORK/cert.pem" \
    -key "$WORK/key.pem" -www -quiet </dev/null >/dev/null 2>&1 &
  PIDS+=($!)
  wait_port "$TLS_PORT"
  bench tls_cert "$VIGIL_N" "tls_cert $VIGIL_N $WARMUP 127.0.0.1 $TLS_PORT" \
    "echo | openssl s_client -connect 127.0.0.1:$TLS_PORT -servername localhost 2>/dev/null | openssl x509 -noout -enddate"
fi

if want log; then
  # 10 MB of log lines (about 1 in 200 says "error"), plus a 100 KB chunk appended per run.
  python3 - "$WORK" <<'PY'
import sys
d = sys.argv[1]
def lines(n, start):
    out = []
    for i in range(start, start + n):
        lvl = "error" if i % 200 == 0 else "info"
        out.append(f"2025-01-01T00:00:{i % 60:02d}Z app[{1000 + i % 7}]: {lvl}: request {i} served in {i % 97} ms path=/api/v1/items/{i % 1000}\n")
    return "".join(out)
big = lines(140000, 0)
while len(big) < 10 * 1024 * 1024:
    big += lines(1000, len(big))
big = big[: 10 * 1024 * 1024]
big = big[: big.rfind("\n") + 1]
chunk = lines(1400, 7)
while len(chunk) < 100 * 1024:
    chunk += lines(10, 99)
chunk = chunk[: 100 * 1024]
chunk = chunk[: chunk.rfind("\n") + 1]
for name in ("vigil.log", "shell.log"):
    open(f"{d}/{name}", "w").write(big)
# The shell side appends with printf "%s\n" (which restores the newline $(<f) strips).
open(f"{d}/chunk.txt", "w").write(chunk)
PY
  bench log "$LOG_VIGIL_N" "log $LOG_VIGIL_N $WARMUP $WORK/vigil.log $WORK/chunk.txt" \
    "grep -c error $WORK/shell.log" "$WORK/chunk.txt" "$WORK/shell.log"
  rm -f "$WORK/vigil.log" "$WORK/shell.log"
fi

if want sockets; then
  # CONNS established loopback connections to SOCK_PORT; 20 of them closed by the client
  # so the server's ends sit in CLOSE-WAIT (seed 001's leak).
  SOCK_PORT=$(free_port)
  python3 - "$SOCK_PORT" "$CONNS" "$WORK/sockets.ready" <<'PY' &
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(4096)
clients, servers = [], []
for _ in range(n):
    clients.append(socket.create_connection(("127.0.0.1", port)))
    servers.append(srv.accept()[0])
for c in clients[:20]:
    c.close()
open(ready, "w").write("ok\n")
while True:
    time.sleep(3600)
PY
  PIDS+=($!)
  for ((i = 0; i < 200; i++)); do [[ -e $WORK/sockets.ready ]] && break; sleep 0.1; done
  [[ -e $WORK/sockets.ready ]] || { echo "checks.sh: socket holder not ready" >&2; exit 1; }
  echo "sockets: $(ss -tn | wc -l) TCP sockets on the host, $(ss -tn state close-wait "( sport = :$SOCK_PORT )" | tail -n +2 | wc -l) CLOSE-WAIT on :$SOCK_PORT" >&2
  bench sockets "$VIGIL_N" "sockets $VIGIL_N $WARMUP $SOCK_PORT close-wait" \
    "ss -tn state close-wait '( sport = :$SOCK_PORT )' | wc -l"
  bench sockets_grep "$VIGIL_N" "sockets $VIGIL_N $WARMUP $SOCK_PORT close-wait" \
    "ss -tn | grep :$SOCK_PORT | grep -c CLOSE-WAIT"
  if want listening; then
    bench "listening (+${CONNS} conns)" "$VIGIL_N" "listening $VIGIL_N $WARMUP $HTTP_PORT" \
      "ss -tln | grep -q :$HTTP_PORT"
  fi
fi

{
  echo "# Vigil check CPU vs shell pipelines"
  echo
  echo "$(date -u +%FT%TZ) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))," \
    "kernel $(uname -r). Vigil: ${VIGIL_N} measured runs per kind (log: ${LOG_VIGIL_N}) (or ${VIGIL_BENCH_BUDGET_S:-20} s) after ${WARMUP} warm-up runs;" \
    "shell: up to ${SHELL_N} runs (or ${SHELL_BUDGET_S} s) of \`bash -c PIPELINE\` after 5 warm-up runs. CPU = user+sys per run, µs."
  echo
  echo "| kind | Vigil CPU µs/run | Vigil wall µs/run | passed | shell twin | shell CPU µs/run | shell wall µs/run | shell runs | ratio | ≥50x | host TCP sockets in use | load avg (1/5/15) before → after |"
  echo "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---|"
  printf '%s\n' "${ROWS[@]}"
} >"$OUT/checks.md"
cat "$OUT/checks.md"
