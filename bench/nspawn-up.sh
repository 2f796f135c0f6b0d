#!/usr/bin/env bash
# Bring up systemd 252 as PID 1 in systemd-nspawn for Vigil's systemd tests
# (research/testbeds.md §1). Never touches the host's root: the container boots a
# debootstrap rootfs (built once, cached), with its own network namespace, /run and /tmp.
#
# Idempotent: when the container is already up, only prints the exports again.
#
# What the tests get:
# - the container's system bus on a fixed host path (the live socket, through
#   `--bind=$RUN/dbus:/run/dbus`), so Vigil on the host talks to the container's
#   systemd exactly as it would to the host's;
# - template units (one instance per test, so parallel tests never share a unit):
#     vigil-sleep@X   a plain service (sleep), no start limit
#     vigil-web@PORT  busybox httpd on 0.0.0.0:PORT serving /health ("ok") from
#                     /run/vigil-web-PORT, recreated by ExecStartPre on every start
#     vigil-limit@X   a plain service with StartLimitBurst=3 per hour, so the 4th start
#                     within the hour is refused with Result=start-limit-hit
#     vigil-fail@X    exits with status 3 right after starting (Result=exit-code)
#     vigil-crash@X   exits 3, Restart=on-failure every 100ms, until its start limit
#                     (3 per hour) trips: failed with Result=start-limit-hit, NRestarts>0
#     vigil-slow@SECS sleeps SECS in ExecStartPre: `activating` for that long
# - a veth pair we create ourselves: host side $HOST_IF 10.254.52.1/30, container side
#   10.254.52.2/30. Traffic stays on that private link (it never leaves the machine), so
#   Vigil's http probe on the host reaches a unit's server inside the container's netns.
#
# On success prints the lines to eval:
#   export VIGIL_TEST_SYSTEMD_BUS=unix:path=/tmp/vigil-nspawn/dbus/system_bus_socket
#   export VIGIL_TEST_SYSTEMD_LEADER=<the container's PID 1, as seen from the host>
#   export VIGIL_TEST_SYSTEMD_ADDR=10.254.52.2
set -euo pipefail

CACHE=${VIGIL_NSPAWN_CACHE:-/var/cache/vigil-nspawn}
RUN=${VIGIL_NSPAWN_RUN:-/tmp/vigil-nspawn}
NAME=vigil-tb
SUITE=bookworm
INCLUDE=systemd,systemd-sysv,dbus,busybox
# The rootfs is rebuilt when what goes into it changes.
STAMP="$SUITE $INCLUDE v1"
ROOT=$CACHE/rootfs
BUS=$RUN/dbus
PIDFILE=$RUN/nspawn.pid
LEADERFILE=$RUN/leader.pid
CONSOLE=$RUN/console.log
HOST_IF=vigil-tb0
HOST_ADDR=10.254.52.1
CT_ADDR=10.254.52.2
PREFIX=30
ADDRESS=unix:path=$BUS/system_bus_socket

log() { echo "nspawn-up: $*" >&2; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 ))ms; }

bus() { busctl --address="$ADDRESS" --timeout=10 "$@"; }
system_state() {
  bus get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
    org.freedesktop.systemd1.Manager SystemState 2>/dev/null | sed -n 's/^s "\(.*\)"$/\1/p'
}
# A pid that exists and is not a zombie (orphans are reaped late on this machine kind).
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit !($3 == "Z" || $3 == "X") }' "/proc/$1/stat" 2>/dev/null; }

print_exports() {
  echo "export VIGIL_TEST_SYSTEMD_BUS=$ADDRESS"
  echo "export VIGIL_TEST_SYSTEMD_LEADER=$(cat "$LEADERFILE")"
  echo "export VIGIL_TEST_SYSTEMD_ADDR=$CT_ADDR"
}

# ---------------------------------------------------------------- already up?
if [ -f "$PIDFILE" ] && [ -f "$LEADERFILE" ] && alive "$(cat "$PIDFILE")" \
   && [[ "$(system_state)" =~ ^(running|degraded)$ ]]; then
  # degraded: tests leave failed units behind (vigil-fail@...), which is expected.
  log "container already running (nspawn pid $(cat "$PIDFILE"), leader $(cat "$LEADERFILE"))"
  print_exports
  exit 0
fi

# ---------------------------------------------------------------- packages
need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v busctl >/dev/null || need+=(systemd)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >&2 \
    || { apt-get update -q -o DPkg::Lock::Timeout=600 >&2 \
         && apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >&2; }
fi

# ---------------------------------------------------------------- rootfs (cached)
mkdir -p "$CACHE" "$RUN"
# Shared with bench/pkg-up.sh (which copies it): built once, under a lock.
# (A rootfs cached before bench/rootfs.sh existed kept its stamp in $CACHE/stamp.)
if [ ! -f "$ROOT.stamp" ] && [ "$(cat "$CACHE/stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "$STAMP" > "$ROOT.stamp"
fi
bash "$(dirname "$0")/rootfs.sh" "$SUITE" "$ROOT" "$INCLUDE"

# ---------------------------------------------------------------- test units
U=$ROOT/etc/systemd/system
cat > "$U/vigil-sleep@.service" <<'EOF'
[Unit]
Description=Vigil test: plain service %i
StartLimitIntervalSec=0
[Service]
ExecStart=/bin/sleep infinity
EOF
cat > "$U/vigil-web@.service" <<'EOF'
[Unit]
Description=Vigil test: HTTP server on port %i
StartLimitIntervalSec=0
[Service]
RuntimeDirectory=vigil-web-%i
ExecStartPre=/bin/sh -c 'echo ok > /run/vigil-web-%i/health'
ExecStart=/bin/busybox httpd -f -p %i -h /run/vigil-web-%i
EOF
cat > "$U/vigil-limit@.service" <<'EOF'
[Unit]
Description=Vigil test: start limit 3 per hour (%i)
StartLimitIntervalSec=1h
StartLimitBurst=3
[Service]
ExecStart=/bin/sleep infinity
EOF
cat > "$U/vigil-fail@.service" <<'EOF'
[Unit]
Description=Vigil test: exits 3 (%i)
StartLimitIntervalSec=0
[Service]
ExecStart=/bin/sh -c 'exit 3'
EOF
cat > "$U/vigil-crash@.service" <<'EOF'
[Unit]
Description=Vigil test: crash loop until the start limit trips (%i)
StartLimitIntervalSec=1h
StartLimitBurst=3
[Service]
ExecStart=/bin/sh -c 'exit 3'
Restart=on-failure
RestartSec=100ms
EOF
cat > "$U/vigil-slow@.service" <<'EOF'
[Unit]
Description=Vigil test: activating for %i seconds
StartLimitIntervalSec=0
[Service]
ExecStartPre=/bin/sleep %i
ExecStart=/bin/sleep infinity
TimeoutStartSec=infinity
EOF
# A volatile journal: nothing piles up in the cached rootfs across boots.
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' > "$ROOT/etc/systemd/journald.conf.d/vigil.conf"
rm -rf "$ROOT/var/log/journal"/*

# ---------------------------------------------------------------- boot
# A container left from an earlier run that is no longer healthy goes first.
if [ -f "$PIDFILE" ]; then bash "$(dirname "$0")/nspawn-down.sh" >&2 || true; fi
mkdir -p "$BUS"
rm -f "$BUS/system_bus_socket" "$LEADERFILE"
log "booting $NAME"
t0=$(date +%s%N)
# --register=no --keep-unit: there is no host systemd/machined to register with.
# --private-network: the container has only its own lo (plus the veth added below).
setsid systemd-nspawn -q -D "$ROOT" -M "$NAME" -b --register=no --keep-unit \
  --private-network --console=read-only --bind="$BUS:/run/dbus" \
  >"$CONSOLE" 2>&1 </dev/null &
NSPAWN=$!
echo "$NSPAWN" > "$PIDFILE"

fail() { log "$1; last console lines:"; tail -20 "$CONSOLE" >&2; kill -TERM "$NSPAWN" 2>/dev/null || true; exit 1; }
deadline=$((SECONDS + 60))
L=
until [ -n "$L" ]; do
  alive "$NSPAWN" || fail "systemd-nspawn exited"
  [ $SECONDS -lt $deadline ] || fail "no systemd inside the container after 60s"
  L=$(pgrep -P "$NSPAWN" -x systemd || true)
  [ -n "$L" ] || sleep 0.05
done
echo "$L" > "$LEADERFILE"
state=
until [ "$state" = running ]; do
  alive "$NSPAWN" || fail "systemd-nspawn exited"
  [ $SECONDS -lt $deadline ] || fail "system state is '${state:-unknown}' after 60s, not running"
  state=$(system_state || true)
  [ "$state" = degraded ] && fail "the container booted degraded"
  [ "$state" = running ] || sleep 0.05
done
log "container running in $(ms_since "$t0") (nspawn pid $NSPAWN, leader $L)"

# ---------------------------------------------------------------- private link
ip link del "$HOST_IF" 2>/dev/null || true
if ip -o addr show to "${HOST_ADDR%.*}.0/$PREFIX" | grep -q .; then
  fail "${HOST_ADDR%.*}.0/$PREFIX is already in use on this host"
fi
ip link add "$HOST_IF" type veth peer name vigil-ct0 netns "$L"
ip addr add "$HOST_ADDR/$PREFIX" dev "$HOST_IF"
ip link set "$HOST_IF" up
nsenter -t "$L" -n ip addr add "$CT_ADDR/$PREFIX" dev vigil-ct0
nsenter -t "$L" -n ip link set vigil-ct0 up
nsenter -t "$L" -n ip link set lo up
log "private link $HOST_IF $HOST_ADDR/$PREFIX <-> container $CT_ADDR/$PREFIX"

print_exports | tee "$RUN/env"
