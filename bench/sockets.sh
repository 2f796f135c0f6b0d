#!/bin/sh
# Times the `sockets` check's counting against ~100k loopback TCP sockets (50k
# connections held by 7 python processes: 4 x 7500 on port 41001 over 127.0.0.1-4,
# 7500 + 5000 on 41002, 10 on 41003, 7500 on [::1]:41004), then the whole probe's CPU
# per run (`vigil-bench-checks sockets`, the daemon's current-thread runtime, release;
# RUNS runs, default 200), then `ss` for comparison.
# Needs python3 and ~15k fds per process (the hard RLIMIT_NOFILE); changes no sysctl.
# Usage: bench/sockets.sh   (CARGO_TARGET_DIR is honoured; the load is stopped on exit)
set -eu
dir=$(mktemp -d /tmp/vigil-sockets-bench.XXXXXX)
cat > "$dir/load.py" <<'PY'
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
addr, args, held = sys.argv[2], sys.argv[3:], []
for port, n in zip(args[0::2], args[1::2]):
    port, n = int(port), int(n)
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port)); ls.listen(4096); held.append(ls)
    done = 0
    while done < n:
        batch = min(1000, n - done)
        for i in range(batch):
            c = socket.socket(fam, socket.SOCK_STREAM); c.connect((addr, port)); held.append(c)
        for i in range(batch):
            held.append(ls.accept()[0])
        done += batch
print("ready", flush=True)
while True: time.sleep(3600)
PY
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
n=0
start() { n=$((n + 1)); python3 "$dir/load.py" "$@" > "$dir/log.$n" 2>&1 & pids="$pids $!"; }
for a in 1 2 3 4; do start 4 127.0.0.$a 41001 7500; done
start 4 127.0.0.1 41002 7500 41003 10
start 4 127.0.0.2 41002 5000
start 6 ::1 41004 7500
for _ in $(seq 180); do [ "$(grep -l ready "$dir"/log.* 2>/dev/null | wc -l)" -ge "$n" ] && break; sleep 1; done
[ "$(grep -l ready "$dir"/log.* | wc -l)" -ge "$n" ] || { cat "$dir"/log.*; exit 1; }
ss -s | sed -n 2p
uptime
VIGIL_SOCKETS_BENCH=1 VIGIL_SOCKETS_BENCH_PORTS=41001,41003,41004 \
    cargo test --release -p vigil-checks --test sockets -- --nocapture bench 2>&1 | grep '^bench'
cargo build --release -q -p vigil-bench-checks
driver=${CARGO_TARGET_DIR:-target}/release/vigil-bench-checks
for p in 41001 41003 41004; do
    for _ in 1 2 3; do
        VIGIL_BENCH_RT=current "$driver" sockets "${RUNS:-200}" 10 "$p" established
    done
done
for p in 41001 41003; do
    /usr/bin/time -f "ss sport :$p: %e s" sh -c "ss -tn state established '( sport = :$p )' | wc -l"
done
uptime
