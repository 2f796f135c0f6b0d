#!/usr/bin/env bash
# systemd's own figures beside bench/exec.sh's (issue 3), see bench/exec-systemd.py:
#   crash     crash-to-restart latency, Restart=always, RestartSec=0 (crasher without libc)
#   crash-glibc  the same with the static glibc crasher
#   watchdog  hang detection: SIGSTOP a pinging Type=notify service, WatchdogSec=200ms
#   idle      500 idle units: start-all time, PSS and CPU of PID 1 and journald
# all with systemd 252 as the supervisor, in the test bed of bench/nspawn-up.sh.
#
# Brings the bed up unless it is already up (and then tears it down on exit; a bed that
# was already up is left as it was), builds vigil-notify-client (release) and runs the
# scenarios. Environment: SCENARIOS ("crash crash-glibc watchdog idle"), CRASHES (1000), HANGS (50),
# IDLE_N (500), IDLE_MEASURE (60), WD_RANDOM_PHASE (0), OUT (bench-out), CARGO_TARGET_DIR.
# Needs gcc (static libc) and python3 (>= 3.9 for os.pidfd_open). Results:
# $OUT/exec/systemd-*.json and a Markdown table on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${CARGO_TARGET_DIR:=$ROOT/target}"
export CARGO_TARGET_DIR
export OUT=${OUT:-$ROOT/bench-out}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac

# nspawn-up.sh is idempotent; it says "container already running" when it was up.
up_log=$(mktemp)
eval "$(bash bench/nspawn-up.sh </dev/null 2>"$up_log")" || { cat "$up_log" >&2; exit 1; }
cat "$up_log" >&2
if ! grep -q 'container already running' "$up_log"; then
  trap 'bash "$ROOT/bench/nspawn-down.sh" >/dev/null 2>&1 || true' EXIT
fi
rm -f "$up_log"

cargo build --release -q -p vigil-test-helpers
export HELPERS="$CARGO_TARGET_DIR/release"
python3 "$ROOT/bench/exec-systemd.py"
