#!/usr/bin/env bash
# Bring up the package test bed: a pristine Debian 12 booted with systemd 252 in
# systemd-nspawn, where crates/vigild/tests/package_e2e.rs installs the .deb as a user
# would. It stands beside the systemd bed (bench/nspawn-up.sh) with its own machine name,
# its own private network (only its own lo: nothing leaves it) and its own run directory.
# Never touches the host's root.
#
# The root filesystem is the systemd bed's cached bookworm rootfs (bench/rootfs.sh; built
# once, shared), copied once to $CACHE/pkg-rootfs with what a minimal Debian lacks and
# the test needs: procps (priority "important": on every Debian but a minbase one; the
# package's one dependency beyond libc), man-db (`man vigil`), bash-completion,
# libnss-extrausers (users that only NSS knows). Their .debs are downloaded once into $CACHE/pkg-debs with the host's
# apt (resolved against the copy's installed packages) and installed offline in the copy.
# The container boots with --volatile=overlay: its changes live in memory, so every boot
# starts from the same pristine system, whatever the last test installed or purged.
#
# Idempotent: when the container is already up, only prints the exports again.
# On success prints the line to eval:
#   export VIGIL_TEST_PACKAGE_LEADER=<the container's PID 1, as seen from the host>
set -euo pipefail

CACHE=${VIGIL_NSPAWN_CACHE:-/var/cache/vigil-nspawn}
RUN=${VIGIL_PKG_RUN:-/tmp/vigil-pkg}
NAME=vigil-pkg
SUITE=bookworm
# The systemd bed's rootfs (same SUITE and INCLUDE as bench/nspawn-up.sh: one debootstrap).
BASE_INCLUDE=systemd,systemd-sysv,dbus,busybox
BASE=$CACHE/rootfs
EXTRA=(procps man-db bash-completion libnss-extrausers)
ROOT=$CACHE/pkg-rootfs
DEBS=$CACHE/pkg-debs
STAMP="$SUITE $BASE_INCLUDE + ${EXTRA[*]} v1"
PIDFILE=$RUN/nspawn.pid
LEADERFILE=$RUN/leader.pid
CONSOLE=$RUN/console.log

log() { echo "pkg-up: $*" >&2; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 ))ms; }
# A pid that exists and is not a zombie (orphans are reaped late on this machine kind).
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit !($3 == "Z" || $3 == "X") }' "/proc/$1/stat" 2>/dev/null; }
in_ct() { nsenter -t "$(cat "$LEADERFILE")" -a "$@"; }

print_exports() {
  echo "export VIGIL_TEST_PACKAGE_LEADER=$(cat "$LEADERFILE")"
}

# ---------------------------------------------------------------- already up?
if [ -f "$PIDFILE" ] && [ -f "$LEADERFILE" ] && alive "$(cat "$PIDFILE")" \
   && [[ "$(in_ct systemctl is-system-running 2>/dev/null)" =~ ^(running|degraded)$ ]]; then
  log "container already running (nspawn pid $(cat "$PIDFILE"), leader $(cat "$LEADERFILE"))"
  print_exports
  exit 0
fi

# ---------------------------------------------------------------- packages
need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
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
bash "$(dirname "$0")/rootfs.sh" "$SUITE" "$BASE" "$BASE_INCLUDE"
exec 8>"$ROOT.lock"
flock 8
if [ ! -x "$ROOT/lib/systemd/systemd" ] || [ "$(cat "$ROOT.stamp" 2>/dev/null)" != "$STAMP" ]; then
  t0=$(date +%s%N)
  # The .debs a minimal bookworm lacks for EXTRA, as apt resolves them against the
  # rootfs's own package database (the host is bookworm too, with its lists).
  mkdir -p "$DEBS/partial"
  download() {
    apt-get -q -y --download-only --no-install-recommends \
      -o Dir::State::status="$BASE/var/lib/dpkg/status" \
      -o Dir::Cache::archives="$DEBS" -o Debug::NoLocking=1 \
      install "${EXTRA[@]}" >"$CACHE/pkg-debs.log" 2>&1
  }
  download || { apt-get update -q -o DPkg::Lock::Timeout=600 >&2 && download; } \
    || { log "downloading ${EXTRA[*]} failed:"; tail -20 "$CACHE/pkg-debs.log" >&2; exit 1; }
  log "copying the rootfs and installing ${EXTRA[*]} offline"
  rm -rf "$ROOT.new"
  (exec 9>"$BASE.lock"; flock -s 9; cp -a "$BASE" "$ROOT.new")
  # Installed in the copy by its own dpkg, in a throwaway container with no network.
  systemd-nspawn -q -D "$ROOT.new" --register=no --keep-unit --private-network \
    --bind-ro="$DEBS:/mnt/debs" \
    /bin/sh -c 'DEBIAN_FRONTEND=noninteractive dpkg -i /mnt/debs/*.deb' \
    >"$CACHE/pkg-rootfs.log" 2>&1 </dev/null \
    || { log "installing the .debs failed:"; tail -20 "$CACHE/pkg-rootfs.log" >&2; exit 1; }
  # What the systemd bed adds to its rootfs is not part of a pristine system.
  rm -f "$ROOT.new"/etc/systemd/system/vigil-*.service
  # A volatile journal, as in the systemd bed.
  mkdir -p "$ROOT.new/etc/systemd/journald.conf.d"
  printf '[Journal]\nStorage=volatile\n' > "$ROOT.new/etc/systemd/journald.conf.d/vigil.conf"
  rm -rf "$ROOT.new/var/log/journal"/*
  rm -rf "$ROOT"
  mv "$ROOT.new" "$ROOT"
  echo "$STAMP" > "$ROOT.stamp"
  log "package rootfs ready in $(ms_since "$t0") ($(du -sh "$ROOT" | cut -f1))"
fi
flock -u 8

# ---------------------------------------------------------------- boot
if [ -f "$PIDFILE" ]; then bash "$(dirname "$0")/pkg-down.sh" >&2 || true; fi
rm -f "$LEADERFILE"
log "booting $NAME"
t0=$(date +%s%N)
# --register=no --keep-unit: there is no host systemd/machined to register with.
# --volatile=overlay: the rootfs stays read-only, changes go to a tmpfs overlay.
setsid systemd-nspawn -q -D "$ROOT" -M "$NAME" -b --register=no --keep-unit \
  --private-network --volatile=overlay --console=read-only \
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
  state=$(in_ct systemctl is-system-running 2>/dev/null || true)
  [ "$state" = degraded ] && fail "the container booted degraded: $(in_ct systemctl --failed --no-legend 2>&1 | tr '\n' ' ')"
  [ "$state" = running ] || sleep 0.1
done
log "container running in $(ms_since "$t0") (nspawn pid $NSPAWN, leader $L)"

print_exports | tee "$RUN/env"
