#!/usr/bin/env python3
"""systemd's own figures for the `driver = "exec"` benchmarks (issue 3: "Report each figure
beside systemd's own (in the nspawn container) measured in the same run"): the scenarios
of bench/exec.py, with systemd 252 as the supervisor, inside the container that
bench/nspawn-up.sh boots.

  systemd-crash     exec.py's crasher without libc (exit 1 at once), Restart=always,
                    RestartSec=0: crash-to-restart (exit stamp to next start stamp), cycle
  systemd-crash-glibc  the same with exec.py's static glibc crasher
  systemd-watchdog  vigil-notify-client pinging every 20 ms, WatchdogSec=200ms,
                    Restart=on-watchdog: SIGSTOP it, time from (last ping + 200 ms) until dead
  systemd-idle      IDLE_N instances of a template unit running `sleep` (outputs into the
                    journal, systemd's default): time until all run, then PSS and CPU of the
                    container's PID 1 and of its systemd-journald, idle (PID 1 also before)

Run through bench/exec-systemd.sh (which brings the test bed up and builds the helpers).
Units and files go into the container's rootfs (host writes under $ROOTFS are visible
inside); the host talks to the container's systemd over its system bus with busctl. Every
unit and file created here is removed at the end, also on failure (the container is shared
with the test suite). Results: $OUT/exec/systemd-*.json and a Markdown summary on stdout.
"""
import json, os, random, subprocess, sys, time

BUS = os.environ["VIGIL_TEST_SYSTEMD_BUS"]
LEADER = int(os.environ["VIGIL_TEST_SYSTEMD_LEADER"])  # the container's PID 1, host pid
HELPERS = os.environ["HELPERS"]
ROOTFS = os.environ.get("ROOTFS", "/var/cache/vigil-nspawn/rootfs")
SCENARIOS = os.environ.get("SCENARIOS", "crash crash-glibc watchdog idle").split()
# 1: add a random 0-250 ms to each hang's wait, so the hangs fall at random phases of
# systemd's 250 ms timer grid (see bench_watchdog); 0 (default): exactly exec.py's waits.
WD_RANDOM_PHASE = os.environ.get("WD_RANDOM_PHASE", "0") == "1"

# What the container sees as /opt/vigil-bench and /etc/systemd/system.
CT_DIR = "/opt/vigil-bench"
HOST_DIR = ROOTFS + CT_DIR
UNIT_DIR = ROOTFS + "/etc/systemd/system"
CRASH_UNIT = "vigil-bench-crash.service"
WD_UNIT = "vigil-bench-wd.service"
IDLE_TEMPLATE = "vigil-bench-idle@.service"
IDLE_TARGET = "vigil-bench-idle.target"
UNIT_FILES = [CRASH_UNIT, WD_UNIT, IDLE_TEMPLATE, IDLE_TARGET]

# The crasher, the statistics and the /proc helpers are bench/exec.py's own, so that both
# sides are built and computed the same way.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# OUT, CRASHES, HANGS, IDLE_N and IDLE_MEASURE are read from the environment there too.
from exec import (CRASHES, HANGS, IDLE_MEASURE, IDLE_N, OUT, children, cpu_secs,  # noqa: E402
                  crash_figures, crasher, hang, main_pids, rollup, rss_kib, summary,
                  wait_for)


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


# ---------------------------------------------------------------- the container's systemd

def busctl(*args, check=True):
    """One busctl call on the container's system bus; its stdout."""
    p = subprocess.run(["busctl", f"--address={BUS}", "--timeout=30", *args],
                       capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"busctl {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def manager(method, sig="", *args, check=True):
    return busctl("call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                  "org.freedesktop.systemd1.Manager", method, *([sig, *args] if sig else []),
                  check=check)


def unit_path(name):
    """The unit's object path (sd-bus label escaping: [A-Za-z0-9] kept, the rest _XX)."""
    return "/org/freedesktop/systemd1/unit/" + "".join(
        c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in name)


def unit_prop(name, iface, prop):
    """A unit's property as busctl prints it, without the type: `active`, `1000`."""
    out = busctl("get-property", "org.freedesktop.systemd1", unit_path(name),
                 f"org.freedesktop.systemd1.{iface}", prop).strip()
    return out.split(" ", 1)[1].strip('"')


def manager_prop(prop):
    return busctl("get-property", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                  "org.freedesktop.systemd1.Manager", prop).strip().split(" ", 1)[1].strip('"')


def start(unit):
    manager("StartUnit", "ss", unit, "replace")


def stop(unit, check=True):
    manager("StopUnit", "ss", unit, "replace", check=check)


def write_unit(name, text):
    with open(os.path.join(UNIT_DIR, name), "w") as f:
        f.write(text)
    manager("Reload")  # replies once the reload is done


def cleanup():
    """Stops every unit this script creates, removes their files and /opt/vigil-bench.
    Also run first, for whatever an interrupted earlier run left behind."""
    present = [u for u in UNIT_FILES if os.path.exists(os.path.join(UNIT_DIR, u))]
    for u in (IDLE_TARGET, CRASH_UNIT, WD_UNIT):
        if u in present:
            stop(u, check=False)
    if IDLE_TEMPLATE in present:
        # Instances the target no longer reaches (PartOf= covers the normal case).
        listed = json.loads(busctl("--json=short", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                   "org.freedesktop.systemd1.Manager", "ListUnitsByPatterns", "asas",
                                   "0", "1", "vigil-bench-idle@*"))
        for u in listed["data"][0]:
            stop(u[0], check=False)
        wait_for("idle instances stopped", lambda: not sleeps(), limit=120, step=0.1)
    for u in present:
        if u != IDLE_TEMPLATE:  # a template has no state of its own
            wait_for(f"{u} stopped", lambda: unit_prop(u, "Unit", "ActiveState") in ("inactive", "failed"),
                     limit=60, step=0.05)
        os.unlink(os.path.join(UNIT_DIR, u))
    if present:
        manager("ResetFailed", check=False)
        manager("Reload")
    subprocess.run(["rm", "-rf", HOST_DIR], check=True)


# ---------------------------------------------------------------- /proc, seen from the host

def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def sleeps():
    """Host pids of the container's `/bin/sleep 100000` (children of its PID 1, so never a
    sleep of Vigil's own bench on the host). Between fork and exec systemd's child is
    called "(sleep)", so these have exec'd."""
    out = []
    for c in children(LEADER):
        try:
            with open(f"/proc/{c}/cmdline", "rb") as f:
                if f.read() == b"/bin/sleep\x00100000\x00":
                    out.append(c)
        except OSError:
            pass
    return out


def host_pid(ct_pid):
    """The host pid of a process the container knows as ct_pid: the one whose NSpid
    line ends with ct_pid, in the container's pid namespace. Services are children of
    the container's PID 1, so those are looked at first; then all of /proc."""
    ns = os.readlink(f"/proc/{LEADER}/ns/pid")
    for cands in (children(LEADER), (p for p in os.listdir("/proc") if p.isdigit())):
        for p in cands:
            try:
                with open(f"/proc/{p}/status") as f:
                    nspid = next(l.split()[1:] for l in f if l.startswith("NSpid:"))
                if len(nspid) > 1 and int(nspid[-1]) == ct_pid and os.readlink(f"/proc/{p}/ns/pid") == ns:
                    return int(p)
            except (OSError, StopIteration):
                pass
    return None



def run_secs(pid):
    """CPU time from the scheduler (ns resolution; utime + stime count 10 ms ticks, too
    coarse for a process that is idle for a minute), summed over the process's threads."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9




def journald():
    """The host pid of the container's systemd-journald (comm is cut at 15 characters)."""
    return next(int(c) for c in children(LEADER) if comm(c) == "systemd-journal")


def measure_idle(pids, seconds, watch=()):
    """PSS/RSS (max of 1 s samples) and CPU (utime + stime over the span) of each pid;
    and the fewest of the `watch` pids (the sleeps) seen alive at a sample."""
    c0, r0, w0 = {p: cpu_secs(p) for p in pids}, {p: run_secs(p) for p in pids}, time.time()
    samples = {p: [] for p in pids}
    alive_min = len(watch)
    end = w0 + seconds
    while time.time() < end:
        for p in pids:
            samples[p].append((rollup(p).get("Pss"), rss_kib(p)))
        if watch:
            alive_min = min(alive_min, len(set(watch) & set(sleeps())))
        time.sleep(1)
    c1, r1, w1 = {p: cpu_secs(p) for p in pids}, {p: run_secs(p) for p in pids}, time.time()
    out = {}
    for p in pids:
        parts = rollup(p)
        out[p] = {"pss_mib_max": max(s[0] for s in samples[p]) / 1024,
                  "rss_mib_max": max(s[1] for s in samples[p]) / 1024,
                  "pss_anon_mib": parts.get("Pss_Anon", 0) / 1024, "pss_file_mib": parts.get("Pss_File", 0) / 1024,
                  # journald's journal files in /run are tmpfs: shared memory.
                  "pss_shmem_mib": parts.get("Pss_Shmem", 0) / 1024,
                  "cpu_percent": 100 * (c1[p] - c0[p]) / (w1 - w0),
                  "cpu_percent_schedstat": 100 * (r1[p] - r0[p]) / (w1 - w0), "measure_s": w1 - w0}
    return out, alive_min


# ---------------------------------------------------------------- scenarios

def bench_crash(kind="nolibc"):
    """A crasher of bench/exec.py as a unit with Restart=always, RestartSec=0 and no start
    limit: crash-to-restart is from one instance's exit stamp to the next one's start stamp
    (the exit, systemd's SIGCHLD handling, the auto-restart timer, the restart job, the
    fork and the exec; with the glibc crasher also glibc's start-up)."""
    crasher(HOST_DIR, kind)
    starts = os.path.join(HOST_DIR, "starts")
    if os.path.exists(starts):
        os.remove(starts)
    write_unit(CRASH_UNIT, f'''[Unit]
Description=Vigil bench: crash loop
StartLimitIntervalSec=0
[Service]
ExecStart={CT_DIR}/crash {CT_DIR}/starts
Restart=always
RestartSec=0
StandardOutput=null
StandardError=null
''')
    start(CRASH_UNIT)
    def count():
        try:
            with open(starts) as f:
                return sum(1 for l in f if l.startswith("S"))
        except OSError:
            return 0
    wait_for("crashes", lambda: count() >= CRASHES + 1, limit=600, step=0.05)
    # systemd's view, read before StopUnit resets it: its restart counter and why the
    # last instance ended ("exit-code"; a start limit would show as "start-limit-hit").
    n_restarts = int(unit_prop(CRASH_UNIT, "Service", "NRestarts"))
    result = unit_prop(CRASH_UNIT, "Service", "Result")
    stop(CRASH_UNIT)
    wait_for("crash unit stopped", lambda: unit_prop(CRASH_UNIT, "Unit", "ActiveState") in ("inactive", "failed"), step=0.05)
    gaps, cycles = crash_figures(starts, CRASHES)
    return {"scenario": "systemd-crash" + ("" if kind == "nolibc" else "-" + kind), "crasher": kind,
            "supervisor": "systemd " + manager_prop("Version"),
            "latency_ms": summary(gaps), "cycle_ms": summary(cycles),
            "systemd_nrestarts": n_restarts, "systemd_result": result, "loadavg": loadavg()}


def bench_watchdog():
    """vigil-notify-client (pings every 20 ms) under WatchdogSec=200ms is SIGSTOPped; the
    lateness is the time from (last ping + watchdog) until the process is dead (seen via
    a pidfd on its host pid). systemd sends WatchdogSignal (SIGABRT) and SIGCONT; core
    dumps are off (the container's DefaultLimitCORE soft limit is 0, as the host's)."""
    client = os.path.join(HOST_DIR, "vigil-notify-client")
    subprocess.run(["cp", os.path.join(HELPERS, "vigil-notify-client"), client], check=True)
    pings = os.path.join(HOST_DIR, "pings")
    pidf = os.path.join(HOST_DIR, "pids")
    wd_ms = 200
    write_unit(WD_UNIT, f'''[Unit]
Description=Vigil bench: watchdog
StartLimitIntervalSec=0
[Service]
Type=notify
NotifyAccess=main
ExecStart={CT_DIR}/vigil-notify-client --pid-file {CT_DIR}/pids --ready-after-ms 0 --ping-ms 20 --ping-log {CT_DIR}/pings
WatchdogSec={wd_ms}ms
Restart=on-watchdog
RestartSec=0
StandardOutput=null
''')
    start(WD_UNIT)
    late = []
    phase = []  # CLOCK_MONOTONIC of each death modulo 250 ms, see below
    not_dead = 0
    seen = set()
    for i in range(HANGS):
        def newpid():
            for p in main_pids(pidf):
                if p not in seen:
                    h = host_pid(p)
                    if h is not None:
                        return p, h
            return None
        pid, hpid = wait_for("a new instance", newpid, limit=30)
        seen.add(pid)
        # Let it ping a while (random phase against the 20 ms ping period). The instance
        # was started right after systemd's previous watchdog firing, i.e. at a fixed
        # phase of its 250 ms grid, so these waits hit that grid at nearly fixed phases
        # too: WD_RANDOM_PHASE=1 spreads them.
        wait = 0.3 + (i % 7) * 0.013 + (random.uniform(0, 0.25) if WD_RANDOM_PHASE else 0)
        lateness, died, mono_dead = hang(hpid, wait, pings, wd_ms)
        not_dead += not died
        phase.append(mono_dead % 250_000_000 / 1e6)
        late.append(lateness)
    n_restarts = int(unit_prop(WD_UNIT, "Service", "NRestarts"))  # before StopUnit resets it
    stop(WD_UNIT)
    wait_for("watchdog unit stopped", lambda: unit_prop(WD_UNIT, "Unit", "ActiveState") in ("inactive", "failed"), step=0.05)
    return {"scenario": "systemd-watchdog", "supervisor": "systemd " + manager_prop("Version"),
            "watchdog_ms": wd_ms, "random_phase": WD_RANDOM_PHASE,
            "lateness_ms": summary(late), "not_dead_after_10s": not_dead,
            # systemd arms the watchdog timer with sd-event's default accuracy (250 ms):
            # it fires on a fixed per-boot phase of a 250 ms grid of CLOCK_MONOTONIC
            # (shared with the container), so these cluster (wrapping around at 250).
            "death_monotonic_mod_250ms": summary(phase),
            "systemd_nrestarts": n_restarts, "loadavg": loadavg()}


def bench_idle():
    """IDLE_N instances of a template unit running `sleep` (stdout/stderr into the journal),
    all wanted by one target: time from StartUnit(target) until all sleeps run, then PSS
    and CPU of PID 1 and journald while idle (PID 1 and journald also before, as the
    baseline), then StopUnit(target) (the instances are PartOf= it) until none is left."""
    write_unit(IDLE_TEMPLATE, f'''[Unit]
Description=Vigil bench: idle %i
PartOf={IDLE_TARGET}
[Service]
ExecStart=/bin/sleep 100000
''')
    names = [f"vigil-bench-idle@{i:03}.service" for i in range(IDLE_N)]
    wants = "".join("Wants=" + " ".join(names[k:k + 50]) + "\n" for k in range(0, IDLE_N, 50))
    write_unit(IDLE_TARGET, f"[Unit]\nDescription=Vigil bench: {IDLE_N} idle services\n{wants}")
    jd = journald()
    # Baseline: the same figures with none of the IDLE_N running.
    time.sleep(5)
    base, _ = measure_idle([LEADER, jd], IDLE_MEASURE)
    forked_before = len(children(LEADER))
    t0 = time.time()
    start(IDLE_TARGET)
    # Forked (children of PID 1, as exec.py counts Vigil's), then all exec'd into sleep.
    wait_for("all forked", lambda: len(children(LEADER)) >= forked_before + IDLE_N, limit=120, step=0.002)
    t_forked = time.time() - t0
    wait_for("all started", lambda: len(sleeps()) >= IDLE_N, limit=120, step=0.002)
    t_all = time.time() - t0
    # Until systemd has no job left (every instance `active`), then measure idle.
    wait_for("jobs done", lambda: manager_prop("NJobs") == "0", limit=120, step=0.2)
    t_jobs = time.time() - t0
    time.sleep(5)
    # The sleeps are watched while measuring: anything else on the host that kills them
    # (a pattern kill, a stale process group) would make PID 1 busy and the figures
    # meaningless; such a run is marked "disturbed".
    running = sleeps()
    busy, alive_min = measure_idle([LEADER, jd], IDLE_MEASURE, watch=running)
    before_stop = len(set(running) & set(sleeps()))
    t_stop0 = time.time()
    stop(IDLE_TARGET)
    wait_for("all stopped", lambda: not sleeps(), limit=120, step=0.002)
    t_stop = time.time() - t_stop0
    time.sleep(1)
    # None left: neither a child of the container's PID 1 nor any `sleep 100000` in the
    # container's pid namespace anywhere on the host.
    ns = os.readlink(f"/proc/{LEADER}/ns/pid")
    leftover = []
    for p in subprocess.run(["pgrep", "-f", "^/bin/sleep 100000$"], capture_output=True, text=True).stdout.split():
        try:
            if os.readlink(f"/proc/{p}/ns/pid") == ns:
                leftover.append(p)
        except OSError:
            pass
    return {"scenario": "systemd-idle", "supervisor": "systemd " + manager_prop("Version"),
            "services": IDLE_N, "start_all_s": t_all, "fork_all_s": t_forked, "jobs_done_s": t_jobs,
            "pid1": busy[LEADER], "pid1_baseline": base[LEADER],
            "journald": busy[jd], "journald_baseline": base[jd],
            "stop_all_s": t_stop, "leftover_sleeps": len(leftover) + len(sleeps()),
            "sleeps_measured": len(running), "sleeps_alive_min_during_measure": alive_min,
            "sleeps_alive_before_stop": before_stop,
            "disturbed": min(alive_min, before_stop) < IDLE_N,
            "loadavg": loadavg()}


results = []
cleanup()
os.makedirs(HOST_DIR)
try:
    for s in SCENARIOS:
        print(f"[exec-systemd bench] {s} (load {open('/proc/loadavg').read().split()[0]})", file=sys.stderr)
        r = {"crash": bench_crash, "crash-glibc": lambda: bench_crash("glibc"),
             "watchdog": bench_watchdog, "idle": bench_idle}[s]()
        with open(f"{OUT}/exec/systemd-{s}.json", "w") as f:
            json.dump(r, f, indent=2)
        results.append(r)
        print(json.dumps(r), file=sys.stderr)
finally:
    cleanup()

print("| scenario | figure | target | result |\n|---|---|---|---|")
for r in results:
    if r["scenario"].startswith("systemd-crash"):
        l = r["latency_ms"]
        which = "static glibc crasher (counts its start-up)" if r["crasher"] == "glibc" else "crasher without libc"
        print(f"| {r['scenario']} (systemd {r['supervisor'].split()[1]}, {which}, n={l['n']}, load {' '.join(r['loadavg'])}) | crash-to-restart (exit stamp to next start stamp) median / p99 / max | <1 ms / <5 ms | {l['median']:.2f} / {l['p99']:.2f} / {l['max']:.2f} ms |")
        c = r["cycle_ms"]
        print(f"| {r['scenario']} | whole cycle (start to start) median / p99 | - | {c['median']:.2f} / {c['p99']:.2f} ms |")
    elif r["scenario"] == "systemd-watchdog":
        l = r["lateness_ms"]
        print(f"| systemd-watchdog ({r['watchdog_ms']} ms, {'random phase, ' if r['random_phase'] else ''}n={l['n']}, load {' '.join(r['loadavg'])}) | death after last ping + watchdog, median / p99 / max | p99 < 20 ms | {l['median']:.1f} / {l['p99']:.1f} / {l['max']:.1f} ms |")
    else:
        n = r["services"]
        if r["disturbed"]:
            print(f"| systemd-idle {n} | **DISTURBED**: only {min(r['sleeps_alive_min_during_measure'], r['sleeps_alive_before_stop'])} of {n} sleeps survived the measurement (killed from outside); figures below are not valid | - | - |")
        print(f"| systemd-idle {n} (load {' '.join(r['loadavg'])}) | start all | < 1 s | {r['start_all_s']:.3f} s (all forked {r['fork_all_s']:.3f} s, every job done {r['jobs_done_s']:.3f} s) |")
        for key, who in (("pid1", "systemd PID 1"), ("journald", "systemd-journald")):
            m, b = r[key], r[key + "_baseline"]
            print(f"| systemd-idle {n} | {who} PSS (max over {m['measure_s']:.0f} s) | < 8 MiB | {m['pss_mib_max']:.1f} MiB (anon {m['pss_anon_mib']:.1f}, file {m['pss_file_mib']:.1f}, shmem {m['pss_shmem_mib']:.1f}; RSS {m['rss_mib_max']:.1f}); with none running {b['pss_mib_max']:.1f} MiB |")
            print(f"| systemd-idle {n} | {who} CPU | < 0.1 % | {m['cpu_percent']:.3f} % (schedstat {m['cpu_percent_schedstat']:.4f} %); with none running {b['cpu_percent']:.3f} % ({b['cpu_percent_schedstat']:.4f} %) |")
        print(f"| systemd-idle {n} | stop all (StopUnit on the target until no sleep is left) | - | {r['stop_all_s']:.2f} s, {r['leftover_sleeps']} left |")
