#!/usr/bin/env bash
# Tear down the container started by bench/nspawn-up.sh: ask its systemd to power off
# over the bus, else SIGTERM systemd-nspawn (which halts the container gracefully), wait
# (bounded), SIGKILL as a last resort. Removes the veth pair's host side if it survived.
# The cached rootfs stays. Safe to run when nothing is up.
set -uo pipefail

RUN=${VIGIL_NSPAWN_RUN:-/tmp/vigil-nspawn}
PIDFILE=$RUN/nspawn.pid
ADDRESS=unix:path=$RUN/dbus/system_bus_socket
HOST_IF=vigil-tb0

log() { echo "nspawn-down: $*" >&2; }
# Orphans are reaped late on this machine kind: a zombie counts as gone.
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit !($3 == "Z" || $3 == "X") }' "/proc/$1/stat" 2>/dev/null; }

if [ -f "$PIDFILE" ]; then
  pid=$(cat "$PIDFILE")
  if [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd-nspawn ]; then
    log "powering off the container (nspawn pid $pid)"
    busctl --address="$ADDRESS" --timeout=5 call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
      org.freedesktop.systemd1.Manager PowerOff >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null
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
rm -f "$RUN/leader.pid" "$RUN/env" "$RUN/dbus/system_bus_socket"
ip link del "$HOST_IF" 2>/dev/null || true
log "down"
