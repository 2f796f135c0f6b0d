#!/bin/sh
# A deliberately flaky demo service for examples/quickstart.toml.
#
# `restart` stops the previous instance (by its pid file) and starts a small HTTP server on
# 127.0.0.1:18555 that crashes by itself after a few seconds, so that Vigil has something
# to check, restart, and eventually refuse to restart again.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
run="${VIGIL_DEMO_RUN:-/tmp/vigil-quickstart}"
mkdir -p "$run"
pidfile="$run/flaky-web.pid"
lifetime="${VIGIL_DEMO_LIFETIME:-5}"

stop() {
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

case "${1:-}" in
  stop) stop ;;
  start|restart)
    stop
    # setsid: the server outlives this script (and its process group); `timeout` is the
    # built-in crash: the server dies after $lifetime seconds.
    setsid timeout "$lifetime" python3 -m http.server 18555 --bind 127.0.0.1 \
      --directory "$here/www" >"$run/flaky-web.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    # Wait (bounded) until it accepts connections, like a real start script would.
    i=0
    while [ $i -lt 50 ]; do
      if python3 -c 'import socket; socket.create_connection(("127.0.0.1", 18555), 0.1)' 2>/dev/null; then
        echo "flaky-web started (pid $(cat "$pidfile"), crashes in ${lifetime}s)"
        exit 0
      fi
      i=$((i + 1)); sleep 0.1
    done
    echo "flaky-web did not come up" >&2
    exit 1
    ;;
  status) [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null ;;
  *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
