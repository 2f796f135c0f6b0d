#!/usr/bin/env bash
# The kernel's floor for the checks below, side by side with vigil's probe
# (crates/vigil-bench-checks, current-thread runtime as in the daemon), alternating:
#
#   tcp        bench/floors/connect.c: blocking connect + close to a loopback listener
#              (bench/floors/acceptor.c), and with SO_LINGER 0, a reset, for reference,
#              vs `vigil-bench-checks tcp`
#   listening  bench/floors/listen_dump.c: sock_diag dumps of LISTEN sockets on a kept
#              netlink socket, both families in one legacy dump as vigil asks (and one
#              dump per family, for reference) vs `vigil-bench-checks listening`
#   sockets    the same dump of CLOSE-WAIT sockets, which walks every bucket of the
#              established hash however few sockets there are, vs `vigil-bench-checks
#              sockets PORT close-wait` (SOCK_N runs, default 500)
#   process    bench/floors/proc_scan.c: a scan of /proc by name (comm, cmdline when comm
#              differs, stat of a match) vs `vigil-bench-checks process name sleep`
#              (PROC_N scans, default 500; a `sleep` started here is the one to find)
#   pid file   bench/floors/pid_file.c: a pid file read and the named process's stat
#              (kept open), plain (open/read/close) and with cached_fs's guards, vs
#              `vigil-bench-checks process pid_file` on the same file
#   exec       bench/floors/spawn.c: `true` run as vigil's spawn site runs it (two pipes,
#              posix_spawn in its own process group, a pidfd, a group kill, waitid),
#              waiting by poll and, for reference, by epoll as a runtime does, vs
#              `vigil-bench-checks exec true`
#
#   bench/floors.sh                   # builds vigil-bench-checks (release), ~1 minute
#   BIN=target/release bench/floors.sh
#
# Knobs: N (20000 runs per measurement), TCP_N (5000 per tcp measurement), EXEC_N (5000
# per exec measurement), SOCK_N (500 per sockets measurement), ROUNDS (3), OUT
# (bench-out). Needs gcc and ss (iproute2).
# Loopback only; the listener (bench/floors/acceptor.c) and the `sleep` started here are
# stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${CARGO_TARGET_DIR:=$ROOT/target}"
export CARGO_TARGET_DIR
N=${N:-20000}
TCP_N=${TCP_N:-5000}
EXEC_N=${EXEC_N:-5000}
SOCK_N=${SOCK_N:-500}
TRUE=$(type -P true)
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$ROOT/bench-out}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
if [[ -z ${BIN:-} ]]; then
  echo "building vigil-bench-checks (release) ..." >&2
  cargo build -q --release -p vigil-bench-checks -p vigil-bench
  BIN=$CARGO_TARGET_DIR/release
fi
mkdir -p "$OUT/floors"
WORK=$(mktemp -d /tmp/vigil-floors.XXXXXX)
SINK=
SLEEPER=
PROC_N=${PROC_N:-500}
cleanup() {
  [[ -n $SINK ]] && { kill "$SINK" 2>/dev/null || true; wait "$SINK" 2>/dev/null || true; }
  [[ -n $SLEEPER ]] && { kill "$SLEEPER" 2>/dev/null || true; wait "$SLEEPER" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

for c in acceptor connect listen_dump proc_scan pid_file spawn; do gcc -O2 -o "$WORK/$c" "$ROOT/bench/floors/$c.c"; done
# A listener that accepts every connection, fast enough that its accept queue never
# overflows, and closes it after its client has (`bench/floors/acceptor.c`).
"$WORK/acceptor" "$WORK/port" &
SINK=$!
for _ in $(seq 100); do [[ -s $WORK/port ]] && break; sleep 0.05; done
PORT=$(<"$WORK/port")
sleep 3600 &
SLEEPER=$!
echo "$SLEEPER" >"$WORK/sleep.pid"

load() { cut -d' ' -f1 /proc/loadavg; }
# Each loopback connect leaves its client port in TIME_WAIT for 60 s, and a port may be
# reused only once its TIME_WAIT is 1 s old: runs back to back would each find the last
# one's ports in the way, and the kernel's search for a free port then costs more than
# the connect (53 µs instead of 9.9 per run, measured). So every tcp measurement starts
# with no TIME_WAIT left towards the listener, and makes TCP_N connects, well under the
# ephemeral range.
drain() {
  for _ in $(seq 75); do
    [[ $(ss -Htan state time-wait "( dport = :$PORT )" | wc -l) -eq 0 ]] && return
    sleep 1
  done
}
tcp_runs() { # the tcp measurements, each after a drain
  drain; echo "tcp-floor $("$WORK/connect" "$PORT" "$TCP_N")"
  drain; echo "tcp-floor-rst $("$WORK/connect" "$PORT" "$TCP_N" rst)"
  drain; echo "tcp-vigil $(vigil "$TCP_N" tcp 127.0.0.1 "$PORT")"
}
vigil() { # vigil RUNS KIND ARGS...: CPU per run of vigil's probe
  VIGIL_BENCH_RT=current "$BIN/vigil-bench-checks" "$2" "$1" $(($1 / 10)) "${@:3}"
}
results=$OUT/floors/results.txt
: >"$results"
echo "$(nproc) cores, kernel $(uname -r), $(date -u +%FT%TZ)" | tee -a "$results"
for ((r = 1; r <= ROUNDS; r++)); do
  while IFS= read -r line; do
    echo "round=$r $line load=$(load)" | tee -a "$results"
  done < <(tcp_runs)
  for line in \
    "listening-floor $("$WORK/listen_dump" "$N")" \
    "listening-floor-per-family $("$WORK/listen_dump" "$N" v2)" \
    "listening-vigil $(vigil "$N" listening "$PORT")" \
    "sockets-floor $("$WORK/listen_dump" "$SOCK_N" legacy 8)" \
    "sockets-vigil $(vigil "$SOCK_N" sockets "$PORT" close-wait)" \
    "process-name-floor $("$WORK/proc_scan" sleep "$PROC_N")" \
    "process-name-vigil $(vigil "$PROC_N" process name sleep)" \
    "pid-file-floor $("$WORK/pid_file" "$WORK/sleep.pid" "$N")" \
    "pid-file-floor-guarded $("$WORK/pid_file" "$WORK/sleep.pid" "$N" guarded)" \
    "pid-file-vigil $(vigil "$N" process pid_file "$WORK/sleep.pid")" \
    "exec-floor $("$WORK/spawn" "$TRUE" "$EXEC_N")" \
    "exec-floor-epoll $("$WORK/spawn" "$TRUE" "$EXEC_N" epoll)" \
    "exec-vigil $(vigil "$EXEC_N" exec true)"; do
    echo "round=$r $line load=$(load)" | tee -a "$results"
  done
done
