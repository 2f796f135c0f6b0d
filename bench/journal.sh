#!/usr/bin/env bash
# The journal log source (`kind = "log"`, `journal_unit`) against a real systemd-journald:
#  1. scan throughput: one run that reads SCAN new entries (all of the unit's, then 10 %
#     of them the unit's), in MB/s of journal data written and entries/s, per CPU second;
#  2. CPU per run: each run reads the K entries of the unit (+ NOISE_K of another unit)
#     written since the previous run, vs the shell twin
#     `journalctl -u UNIT --since <previous run> | grep -c error` over the same entries,
#     measured in the same run with `perf stat` (task-clock, children included) and with
#     bash's `times` (children user+sys) like bench/checks.sh.
#
#   bench/journal.sh                       # ~2 minutes on 2 cores
#
# journald is the host's /lib/systemd/systemd-journald in a private mount namespace
# (tmpfs over /run and /var/log, its own journald.conf: volatile storage, no rate limit,
# 128 MiB files); entries reach it over its native socket with SCM_CREDENTIALS naming a
# `sleep` in cgroup system.slice/bench-app.service (or bench-sidecar.service), so journald
# stamps _SYSTEMD_UNIT and ~20 fields itself. Needs root. Everything started here is
# stopped by PID on exit.
#
# Environment: CARGO_TARGET_DIR (honoured), HISTORY (300000 entries written first: the
# journal's past, 10 % the unit's), SCAN (200000), K (100), NOISE_K (900), VIGIL_N (300),
# SHELL_N (100), OUT (bench-out); the per-run part is measured for K/NOISE_K and again for
# a quieter unit (K/10 of the unit's entries per run). Results: $OUT/journal.md and $OUT/journal-raw.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${CARGO_TARGET_DIR:=$ROOT/target}"
export CARGO_TARGET_DIR
HISTORY=${HISTORY:-300000}
SCAN=${SCAN:-200000}
K=${K:-100}
NOISE_K=${NOISE_K:-900}
VIGIL_N=${VIGIL_N:-300}
SHELL_N=${SHELL_N:-100}
OUT=${OUT:-$ROOT/bench-out}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
mkdir -p "$OUT"
RAW=$OUT/journal-raw.txt
: >"$RAW"
WORK=$(mktemp -d /tmp/vigil-bench-journal.XXXXXX)
UNIT=bench-app.service
NOISE=bench-sidecar.service

PIDS=()
CGROUPS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${CGROUPS[@]}"; do rmdir "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "building (release) ..." >&2
cargo build --release -q -p vigil-bench-checks
DRIVER=$CARGO_TARGET_DIR/release/vigil-bench-checks

cat >"$WORK/journald.conf" <<'EOF'
[Journal]
Storage=volatile
ReadKMsg=no
RateLimitIntervalSec=0
RuntimeMaxUse=8G
RuntimeKeepFree=0
RuntimeMaxFileSize=128M
SplitMode=none
EOF
# The journal files live in $WORK/log (bind-mounted over the namespace's /run/log), so both
# sides read them at an ordinary path, as they would /var/log/journal.
mkdir -p "$WORK/log"
unshare --mount --propagation private sh -c "mount --make-rprivate /; mount -t tmpfs tmpfs /run; \
  mkdir -p /run/log; mount --bind $WORK/log /run/log; mount -t tmpfs tmpfs /var/log; \
  mount --bind $WORK/journald.conf /etc/systemd/journald.conf; \
  exec /lib/systemd/systemd-journald" </dev/null >/dev/null 2>&1 &
JD=$!
PIDS+=("$JD")
SOCK=/proc/$JD/root/run/systemd/journal/socket
JROOT=$WORK/log/journal
for ((i = 0; i < 500; i++)); do [[ -S $SOCK ]] && break; sleep 0.02; done
[[ -S $SOCK ]] || { echo "journal.sh: journald did not start" >&2; exit 1; }

# One sleeping process per unit, in that unit's cgroup (every hierarchy journald may read).
in_unit() { # UNIT -> pid of a `sleep` in system.slice/UNIT
  local join="" root cg
  for root in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd /sys/fs/cgroup; do
    [[ -e $root/cgroup.procs ]] || continue
    cg=$root/system.slice/$1
    mkdir -p "$cg"
    CGROUPS+=("$cg")
    join+="echo \$\$ > $cg/cgroup.procs; "
  done
  sh -c "${join}exec sleep 3600" &
  PIDS+=($!)
  LAST_PID=$!
}
in_unit "$UNIT"
APP=$LAST_PID
in_unit "$NOISE"
SIDE=$LAST_PID
sleep 0.2

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD0=$(loadavg)

echo "writing the journal's history: $HISTORY entries ..." >&2
"$DRIVER" journal-fill "$JROOT" "$SOCK" "$APP" "$SIDE" "$HISTORY" 100 | tee -a "$RAW" >&2

field() { sed -E "s/.* $1=([^ ]+).*/\1/" <<<"$2"; }

SCANS=()
for permille in 1000 100; do
  echo "scan: $SCAN new entries, $permille/1000 the unit's ..." >&2
  line=$("$DRIVER" journal-scan "$JROOT" "$SOCK" "$UNIT" "$APP" "$SIDE" "$SCAN" "$permille")
  echo "$line" | tee -a "$RAW" >&2
  SCANS+=("| $SCAN | $(field unit_entries "$line") | $(field journal_bytes "$line") | $(field cpu_us "$line") | $(field wall_us "$line") | $(field mb_per_s "$line") | $(field entries_per_s "$line") | $(field unit_entries_per_s "$line") |")
done

PERRUN=()
per_run() { # K NOISE_K: one per-run comparison, appended to PERRUN
  local K=$1 NOISE_K=$2
  echo "per run: $K entries of the unit + $NOISE_K others before each of $VIGIL_N runs ..." >&2
  vline=$(VIGIL_BENCH_BUDGET_S=120 "$DRIVER" journal "$VIGIL_N" 5 "$JROOT" "$SOCK" "$UNIT" "$APP" "$SIDE" "$K" "$NOISE_K")
  echo "vigil | $vline" | tee -a "$RAW" >&2
  vcpu=$(field cpu_us "$vline")
  vwall=$(field wall_us "$vline")
  vn=$(field n "$vline")
  T=$(field last_batch_us "$vline")
  SINCE="@$((T / 1000000)).$(printf %06d $((T % 1000000)))"
  PIPE="journalctl -D $JROOT -u $UNIT --since $SINCE -o cat -q --no-pager | grep -c error"
  shell_count=$(bash -c "$PIPE" || true)
  echo "shell twin: $PIPE -> $shell_count" | tee -a "$RAW" >&2
  total_entries=$(journalctl -D "$JROOT" -q --no-pager -o cat | wc -l)
  journal_mb=$(du -sm "$JROOT" | cut -f1)

  # perf stat: task-clock of `bash -c PIPE` and all its children, SHELL_N runs.
  perf stat -x, -e task-clock -r "$SHELL_N" bash -c "$PIPE >/dev/null" 2>"$WORK/perf" >/dev/null || true
  cat "$WORK/perf" >>"$RAW"
  perf_ms=$(awk -F, '/task-clock/ {print $1}' "$WORK/perf")
  perf_us=$(python3 -c "print(f'{float(\"$perf_ms\") * 1000:.0f}')")

  # bash `times`: children user+sys over SHELL_N runs (bench/checks.sh's method).
  bash -c '
    n=$1; cmd=$2; d=$3
    for ((i = 0; i < 3; i++)); do bash -c "$cmd" >/dev/null 2>&1 || true; done
    times >"$d/t0"; w0=$EPOCHREALTIME
    for ((i = 0; i < n; i++)); do bash -c "$cmd" >/dev/null 2>&1 || true; done
    w1=$EPOCHREALTIME; times >"$d/t1"; echo "$w0 $w1 $n" >"$d/w"
  ' _ "$SHELL_N" "$PIPE" "$WORK"
  read -r times_us swall_us < <(python3 - "$WORK" <<'PY'
import re, sys
d = sys.argv[1]
def ch(p):
    line = open(p).read().splitlines()[1]
    return sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", line))
w0, w1, n = open(d + "/w").read().split()
n = int(n)
print(f"{(ch(d + '/t1') - ch(d + '/t0')) / n * 1e6:.0f} {(float(w1) - float(w0)) / n * 1e6:.0f}")
PY
  )
  echo "shell | perf task-clock ${perf_us}us/run, times ${times_us}us/run, wall ${swall_us}us/run" | tee -a "$RAW" >&2
  local ratio_perf ratio_times
  ratio_perf=$(python3 -c "print(f'{$perf_us / $vcpu:.0f}')")
  ratio_times=$(python3 -c "print(f'{$times_us / $vcpu:.0f}')")
  local vcount
  vcount=$(field last_reason "$vline" | grep -oE '^"?[0-9]+' | tr -d '"' || echo 0)
  PERRUN+=("| $K + $NOISE_K | $vcpu | $vwall | $vn | $perf_us | $times_us | $swall_us | $SHELL_N | $vcount / $shell_count | **${ratio_perf}x** | ${ratio_times}x |")
}
per_run "$K" "$NOISE_K"
per_run "$((K / 10))" "$((NOISE_K / 10))"
LOAD1=$(loadavg)

{
  echo "# Journal log source: bench/journal.sh ($(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD))"
  echo
  echo "journal: $total_entries entries, $journal_mb MB in $(ls "$JROOT"/*/ | wc -l) files; load $LOAD0 → $LOAD1"
  echo
  echo "## Scan throughput (one run reading every new entry)"
  echo
  echo "| new entries | of the unit | journal bytes written | CPU µs | wall µs | MB/s (journal data per CPU s) | entries/s | unit entries/s |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${SCANS[@]}"
  echo
  echo "## CPU per run: Vigil vs \`journalctl -u UNIT --since <previous run> -o cat | grep -c error\`"
  echo
  echo "| new entries per run (unit + other) | Vigil CPU µs/run | Vigil wall µs/run | Vigil runs | shell CPU µs/run (perf stat task-clock) | shell CPU µs/run (times) | shell wall µs/run | shell runs | errors counted (Vigil / shell) | ratio (perf) | ratio (times) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
  printf '%s\n' "${PERRUN[@]}"
} >"$OUT/journal.md"
cat "$OUT/journal.md"
