#!/usr/bin/env bash
# What 100 open dashboards cost the daemon, with server-sent events (GET /v1/live, what
# the page uses) and, for comparison, with the page polling /v1/status + /v1/history once
# a second instead. Vigil's CPU is read from /proc/PID/stat (utime + stime, every thread)
# over each phase, its RSS from /proc/PID/status; the load average is printed beside it
# (the machine is shared). Whether checks keep their schedule meanwhile: a `canary`
# service's exec check, every 1 s, appends the time of each run to a file; each phase
# reports its runs and the largest gap between two runs.
#
# Usage: bench/dashboard.sh            (CARGO_TARGET_DIR is honoured)
# Knobs: CLIENTS (100), SERVICES (100), WARMUP (10 s), MEASURE (60 s), PROFILE (release),
#        PHASES ("idle sse poll").
# Needs curl and python3. Only loopback; every process started is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-100}
SERVICES=${SERVICES:-100}
WARMUP=${WARMUP:-10}
MEASURE=${MEASURE:-60}
PROFILE=${PROFILE:-release}
PHASES=${PHASES:-idle sse poll}

cargo build --offline --profile "$PROFILE" -p vigild --bin vigil >&2
target=${CARGO_TARGET_DIR:-target}
vigil=$target/$PROFILE/vigil

dir=$(mktemp -d /tmp/vigil-dashboard-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# SERVICES command services, each with two exec checks every 10 s; one in four also has a
# scheduled restart every 30 s, so the ledger grows while the bench runs (as it does on a
# real host: polling /v1/history reads all of it, the feed only its last entries).
printf 'bench-token\n' > "$dir/token"
{
  printf '[vigil]\nstate_dir = "%s/state"\nhttp_listen = "127.0.0.1:0"\nhttp_token_file = "%s/token"\n\n' "$dir" "$dir"
  printf '[defaults.guard]\ncooldown = "1s"\nmax_restarts = 1000\n\n'
  for i in $(seq 1 "$SERVICES"); do
    printf '[services.svc%d]\ndriver = "command"\nrestart_command = ["true"]\n' "$i"
    printf '[services.svc%d.checks.up]\nkind = "exec"\ncommand = ["true"]\nevery = "10s"\n' "$i"
    printf '[services.svc%d.checks.port]\nkind = "exec"\ncommand = ["true"]\nevery = "10s"\n' "$i"
    if (( i % 4 == 0 )); then printf '[[services.svc%d.schedule]]\nevery = "30s"\n' "$i"; fi
    printf '\n'
  done
  printf '[services.canary]\ndriver = "command"\nrestart_command = ["true"]\n'
  printf '[services.canary.checks.tick]\nkind = "exec"\ncommand = ["sh", "-c", "date +%%s.%%N >> %s/canary"]\nevery = "1s"\n' "$dir"
} > "$dir/vigil.toml"

"$vigil" run -c "$dir/vigil.toml" 2> "$dir/daemon.log" &
vpid=$!
pids+=("$vpid")
for _ in $(seq 200); do grep -q "vigil running" "$dir/daemon.log" && break; sleep 0.1; done
addr=$(grep -o 'http listener on http://[0-9.:]*' "$dir/daemon.log" | sed 's|.*http://||')
[ -n "$addr" ] || { cat "$dir/daemon.log" >&2; exit 1; }
hz=$(getconf CLK_TCK)

ticks() { awk '{print $14 + $15}' "/proc/$vpid/stat"; }
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$vpid/status"; }

# Prints "cpu% of one core" over MEASURE seconds.
measure() {
  local t0 t1 s0 s1
  t0=$(ticks); s0=$(date +%s.%N)
  sleep "$MEASURE"
  t1=$(ticks); s1=$(date +%s.%N)
  echo "$s0 $s1" > "$dir/window"
  awk -v a="$t0" -v b="$t1" -v s="$s0" -v e="$s1" -v hz="$hz" 'BEGIN { printf "%.3f", 100 * (b - a) / hz / (e - s) }'
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

# "RUNS runs, largest gap G s" of the canary check between wall times $1 and $2.
canary() {
  awk -v s="$1" -v e="$2" '$1 >= s && $1 <= e { n++; if (p && $1 - p > g) g = $1 - p; p = $1 }
    END { printf "%d canary runs (every 1 s), largest gap %.2f s", n, g }' "$dir/canary"
}

cat > "$dir/poll.py" <<'PY'
# CLIENTS pollers, each on one keep-alive connection: GET /v1/status then /v1/history,
# once a second (what a polling page would do). Prints requests, 503s and bytes.
import http.client, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
clients, seconds = int(sys.argv[2]), float(sys.argv[3])
stats = {"requests": 0, "ok": 0, "busy": 0, "other": 0, "bytes": 0}
lock = threading.Lock()
stop = time.monotonic() + seconds
def poller(i):
    time.sleep(i / clients)  # spread over the second, as independent pages would be
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    while time.monotonic() < stop:
        started = time.monotonic()
        for path in ("/v1/status", "/v1/history"):
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
            except Exception:
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                with lock: stats["other"] += 1
                continue
            with lock:
                stats["requests"] += 1
                stats["bytes"] += len(body)
                if r.status == 200: stats["ok"] += 1
                elif r.status == 503: stats["busy"] += 1
                else: stats["other"] += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
threads = [threading.Thread(target=poller, args=(i,), daemon=True) for i in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
print(" ".join(f"{k}={v}" for k, v in stats.items()))
PY

echo "vigil $("$vigil" --version 2>/dev/null | head -1) ($PROFILE), $SERVICES services, $CLIENTS clients, measure ${MEASURE}s, listener $addr"
printf '| phase | vigil CPU (%% of one core) | RSS (MiB) | load before | load after | checks on schedule | notes |\n|---|---|---|---|---|---|---|\n'

for phase in $PHASES; do
  case $phase in
    idle)
      sleep "$WARMUP"
      l0=$(load); cpu=$(measure); l1=$(load)
      printf '| idle (no client) | %s | %s | %s | %s | %s | |\n' "$cpu" "$(rss_mib)" "$l0" "$l1" "$(canary $(cat "$dir/window"))"
      ;;
    sse)
      cpids=()
      # Started 20 ms apart, as pages opening would be (the listener answers at most 8
      # requests at once; a live stream's slot is free once its head is sent).
      for i in $(seq 1 "$CLIENTS"); do
        curl -sN "http://$addr/v1/live" -o "$dir/sse.$i" &
        cpids+=($!); pids+=($!)
        sleep 0.02
      done
      sleep "$WARMUP"
      before=$(cat "$dir"/sse.* | grep -cE '^event: (snapshot|changes)' || true)
      l0=$(load); cpu=$(measure); l1=$(load)
      after=$(cat "$dir"/sse.* | grep -cE '^event: (snapshot|changes)' || true)
      bytes=$(cat "$dir"/sse.* | wc -c)
      rss=$(rss_mib)
      for p in "${cpids[@]}"; do kill "$p" 2>/dev/null || true; done
      wait "${cpids[@]}" 2>/dev/null || true
      per=$(awk -v n="$((after - before))" -v c="$CLIENTS" -v s="$MEASURE" 'BEGIN { printf "%.2f", n / c / s }')
      connected=$(grep -l '^event: hello' "$dir"/sse.* | wc -l)
      printf '| %d SSE clients (/v1/live) | %s | %s | %s | %s | %s | %d connected; %d ticks received in the window (%s per client per s), %d bytes in all |\n' \
        "$CLIENTS" "$cpu" "$rss" "$l0" "$l1" "$(canary $(cat "$dir/window"))" "$connected" "$((after - before))" "$per" "$bytes"
      ;;
    poll)
      python3 "$dir/poll.py" "$addr" "$CLIENTS" "$((WARMUP + MEASURE + 2))" > "$dir/poll.out" &
      ppid=$!; pids+=("$ppid")
      sleep "$WARMUP"
      l0=$(load); cpu=$(measure); l1=$(load)
      rss=$(rss_mib)
      wait "$ppid" || true
      printf '| %d pollers (/v1/status + /v1/history every 1 s) | %s | %s | %s | %s | %s | %s (whole run, warm-up included) |\n' \
        "$CLIENTS" "$cpu" "$rss" "$l0" "$l1" "$(canary $(cat "$dir/window"))" "$(cat "$dir/poll.out")"
      ;;
    *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
rows=$(curl -s "http://$addr/v1/history" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["entries"]))')
echo "ledger entries at the end: $rows; peak RSS $(awk '/^VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$vpid/status")"
