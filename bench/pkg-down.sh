#!/usr/bin/env bash
# Tear down the container started by bench/pkg-up.sh: ask its systemd to power off, else
# SIGTERM systemd-nspawn (which halts the container gracefully), wait (bounded), SIGKILL
# as a last resort. Its changes were in memory only (--volatile=overlay): nothing to clean.
# The cached rootfs stays. Safe to run when nothing is up.
set -uo pipefail

RUN=${VIGIL_PKG_RUN:-/tmp/vigil-pkg}
PIDFILE=$RUN/nspawn.pid
LEADERFILE=$RUN/leader.pid

log() { echo "pkg-down: $*" >&2; }
# Orphans are reaped late on this machine kind: a zombie counts as gone.
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit !($3 == "Z" || $3 == "X") }' "/proc/$1/stat" 2>/dev/null; }

if [ -f "$PIDFILE" ]; then
  pid=$(cat "$PIDFILE")
  if [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd-nspawn ]; then
    log "powering off the container (nspawn pid $pid)"
    leader=$(cat "$LEADERFILE" 2>/dev/null || true)
    { [ -n "$leader" ] && timeout 10 nsenter -t "$leader" -a systemctl poweroff --no-block >/dev/null 2>&1; } \
      || kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 150); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      log "still up after 15s, sending SIGTERM"
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 1 150); do alive "$pid" || break; sleep 0.1; done
    fi
    if alive "$pid"; then
      log "still up after 30s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDFILE"
fi
rm -f "$LEADERFILE" "$RUN/env"
log "down"
