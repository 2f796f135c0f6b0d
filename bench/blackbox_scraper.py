#!/usr/bin/env python3
"""A minimal scraper for bench/blackbox.sh: asks blackbox_exporter to probe TARGETS
URLs, each once per INTERVAL seconds (fixed rate, spread evenly, as Prometheus spreads
its scrapes), over THREADS keep-alive connections to the exporter. It stops after
DURATION seconds and prints one line of key=value pairs: probes asked, probes that
succeeded (`probe_success 1` in the answer), failures, and late probes (started more
than half an interval after their slot). Its own CPU is measured by the caller.

usage: blackbox_scraper.py EXPORTER_PORT SINK_PORT TARGETS INTERVAL DURATION THREADS
"""

import http.client
import sys
import threading
import time


def main():
    exporter_port, sink_port, targets, interval, duration, threads = sys.argv[1:7]
    exporter_port, sink_port, targets = int(exporter_port), int(sink_port), int(targets)
    interval, duration, threads = float(interval), float(duration), int(threads)
    start = time.monotonic() + 0.2
    end = start + duration
    counts = {"asked": 0, "ok": 0, "failed": 0, "late": 0}
    lock = threading.Lock()

    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", exporter_port, timeout=10)
        mine = list(range(k, targets, threads))
        step = interval / targets
        asked = ok = failed = late = 0
        n = 0
        while True:
            i = mine[n % len(mine)]
            due = start + (n // len(mine)) * interval + i * step
            if due >= end:
                break
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            elif now - due > interval / 2:
                late += 1
            path = (
                "/probe?module=http_2xx&target=http://127.0.0.1:%d/t%d" % (sink_port, i)
            )
            try:
                conn.request("GET", path)
                body = conn.getresponse().read()
                asked += 1
                if b"\nprobe_success 1" in body:
                    ok += 1
                else:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", exporter_port, timeout=10)
            n += 1
        with lock:
            counts["asked"] += asked
            counts["ok"] += ok
            counts["failed"] += failed
            counts["late"] += late

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(" ".join("%s=%d" % kv for kv in counts.items()))


if __name__ == "__main__":
    main()
