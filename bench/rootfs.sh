#!/usr/bin/env bash
# Build (once) and cache a Debian root filesystem with debootstrap --variant=minbase:
#   bench/rootfs.sh SUITE DEST [INCLUDE]
# The test beds share what they can: the systemd bed (bench/nspawn-up.sh) and the package
# bed (bench/pkg-up.sh) both start from bookworm's, the static binary's test runs in
# bullseye's. A stamp file beside DEST names what went in; DEST is rebuilt when it
# changes. An exclusive lock on DEST.lock makes concurrent callers wait for one build
# (CI starts beds in parallel). Prints nothing on stdout; progress goes to stderr.
set -euo pipefail

SUITE=${1:?usage: rootfs.sh SUITE DEST [INCLUDE]}
DEST=${2:?usage: rootfs.sh SUITE DEST [INCLUDE]}
INCLUDE=${3:-}
STAMP="$SUITE ${INCLUDE:-minbase} v1"

log() { echo "rootfs: $*" >&2; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 ))ms; }

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v flock >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >&2 \
    || { apt-get update -q -o DPkg::Lock::Timeout=600 >&2 \
         && apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >&2; }
fi

mkdir -p "$(dirname "$DEST")"
exec 9>"$DEST.lock"
flock 9
if [ -x "$DEST/bin/sh" ] && [ "$(cat "$DEST.stamp" 2>/dev/null)" = "$STAMP" ]; then
  exit 0
fi
# The same mirror apt uses on this machine.
mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
log "building $DEST ($SUITE${INCLUDE:+, $INCLUDE}) from $mirror; this takes 1-2 minutes"
t0=$(date +%s%N)
rm -rf "$DEST.new"
debootstrap --variant=minbase ${INCLUDE:+--include="$INCLUDE"} "$SUITE" "$DEST.new" "$mirror" \
  >"$DEST.debootstrap.log" 2>&1 \
  || { log "debootstrap failed; last lines:"; tail -20 "$DEST.debootstrap.log" >&2; exit 1; }
rm -rf "$DEST"
mv "$DEST.new" "$DEST"
echo "$STAMP" > "$DEST.stamp"
log "$DEST ready in $(ms_since "$t0") ($(du -sh "$DEST" | cut -f1))"
