#!/usr/bin/env bash
# Bring up a private dockerd for Vigil's docker tests (research/testbeds.md §2).
#
# Idempotent. The host network is left alone: no bridge, no iptables, no ip
# forwarding; containers use NetworkMode "none". The daemon listens on a
# private socket (not /var/run/docker.sock) so nothing else on the machine
# sees it. The test image `vigil-busybox:latest` is imported from a
# busybox-static rootfs, so no registry is needed.
#
# On success prints the line to eval:
#   export DOCKER_HOST=unix:///tmp/vigil-docker/docker.sock
set -euo pipefail

ROOT=${VIGIL_DOCKER_ROOT:-/tmp/vigil-docker}
SOCK=$ROOT/docker.sock
PIDFILE=$ROOT/dockerd.pid
LOG=$ROOT/dockerd.log
IMAGE_REPO=vigil-busybox
IMAGE_TAG=latest

log() { echo "docker-up: $*" >&2; }

mkdir -p "$ROOT"

need=()
[ -x /usr/sbin/dockerd ] || need+=(docker.io)
[ -x /bin/busybox ] && ldd /bin/busybox >/dev/null 2>&1 && need+=(busybox-static)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >&2 \
    || { apt-get update -q -o DPkg::Lock::Timeout=600 >&2 \
         && apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >&2; }
fi

api() { curl -sf --max-time 30 --unix-socket "$SOCK" "$@"; }

running=false
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && api http://d/_ping >/dev/null 2>&1; then
  running=true
  log "dockerd already running (pid $(cat "$PIDFILE"))"
fi

if ! $running; then
  rm -f "$SOCK"
  log "starting dockerd on $SOCK"
  setsid /usr/sbin/dockerd \
    --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false \
    --data-root "$ROOT/data" --exec-root "$ROOT/exec" \
    -H "unix://$SOCK" --pidfile "$PIDFILE" \
    >"$LOG" 2>&1 </dev/null &
  DPID=$!
  deadline=$((SECONDS + 60))
  until api http://d/_ping >/dev/null 2>&1; do
    if ! kill -0 "$DPID" 2>/dev/null; then
      log "dockerd exited; last log lines:"; tail -20 "$LOG" >&2; exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "dockerd not ready after 60s; last log lines:"; tail -20 "$LOG" >&2; exit 1
    fi
    sleep 0.1
  done
  log "dockerd ready (pid $DPID)"
fi

if api "http://d/images/$IMAGE_REPO:$IMAGE_TAG/json" >/dev/null 2>&1; then
  log "image $IMAGE_REPO:$IMAGE_TAG present"
else
  log "importing $IMAGE_REPO:$IMAGE_TAG from busybox-static"
  IMG=$ROOT/imgroot
  rm -rf "$IMG"; mkdir -p "$IMG/bin" "$IMG/tmp"
  cp /bin/busybox "$IMG/bin/"
  for a in sh sleep true false echo cat ls; do ln -s busybox "$IMG/bin/$a"; done
  tar -C "$IMG" -c . | curl -sf --max-time 120 --unix-socket "$SOCK" -X POST \
      -H 'Content-Type: application/x-tar' --data-binary @- \
      "http://d/images/create?fromSrc=-&repo=$IMAGE_REPO&tag=$IMAGE_TAG" >/dev/null
  api "http://d/images/$IMAGE_REPO:$IMAGE_TAG/json" >/dev/null \
    || { log "image import failed"; exit 1; }
  rm -rf "$IMG"
fi

echo "export DOCKER_HOST=unix://$SOCK"
