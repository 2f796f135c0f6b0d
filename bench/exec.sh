#!/usr/bin/env bash
# Benchmarks of `driver = "exec"` (issue 3), see bench/exec.py:
#   crash        crash-to-restart latency, restart_delay = 0 (ledger on disk), a crasher
#                without libc (stamps at its first instruction)
#   crash-glibc  the same with a static glibc crasher (also counts glibc's start-up)
#   crash-tmpfs  the same as crash with the ledger on /dev/shm (no disk flush at all)
#   watchdog     hang detection: SIGSTOP a pinging service, time until it is dead
#   idle         500 idle supervised processes: start-all time, Vigil's PSS and CPU,
#                and PSS after one of them crashed and was restarted
# Then bench/exec-systemd.sh: the same scenarios under systemd in nspawn (SYSTEMD=0 skips).
# Environment: SCENARIOS, CRASHES (1000), HANGS (50), IDLE_N (500), IDLE_MEASURE (60),
# OUT (bench-out), CARGO_TARGET_DIR. Needs gcc and python3 (>= 3.9 for os.pidfd_open).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${CARGO_TARGET_DIR:=$ROOT/target}"
export CARGO_TARGET_DIR
# The packages' build (dist profile: fat LTO), as docs/BENCHMARKS.md's figures.
cargo build --profile dist -q -p vigild -p vigil-test-helpers
export VIGIL="$CARGO_TARGET_DIR/dist/vigil" HELPERS="$CARGO_TARGET_DIR/dist"
export OUT=${OUT:-$ROOT/bench-out}
python3 "$ROOT/bench/exec.py"
# The same scenarios with systemd 252 as the supervisor (nspawn test bed), in the same run.
if [ "${SYSTEMD:-1}" = 1 ]; then
  SCENARIOS=$(echo "${SCENARIOS:-crash crash-glibc watchdog idle}" | sed 's/crash-tmpfs//') \
    bash "$ROOT/bench/exec-systemd.sh"
fi
