#!/usr/bin/env python3
"""Benchmarks of `driver = "exec"` (issue 3): crash-to-restart latency, watchdog hang
detection, and 500 idle supervised processes (Vigil's PSS, CPU, time to start all).

Run through bench/exec.sh (which builds the release binaries). Every process started here
is stopped by PID; only local files and sockets are used. Results: $OUT/exec/*.json and a
Markdown summary on stdout.
"""
import json, os, select, signal, statistics, subprocess, sys, tempfile, time

# .get: bench/exec-systemd.py imports this module for its crasher, statistics and /proc
# helpers, without a vigil binary.
VIGIL = os.environ.get("VIGIL", "vigil")
HELPERS = os.environ.get("HELPERS", "")
OUT = os.environ.get("OUT", "bench-out")
CRASHES = int(os.environ.get("CRASHES", "1000"))
HANGS = int(os.environ.get("HANGS", "50"))
IDLE_N = int(os.environ.get("IDLE_N", "500"))
IDLE_MEASURE = int(os.environ.get("IDLE_MEASURE", "60"))
SCENARIOS = os.environ.get("SCENARIOS", "crash crash-glibc crash-tmpfs watchdog idle").split()
os.makedirs(f"{OUT}/exec", exist_ok=True)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def summary(xs):
    return {
        "n": len(xs),
        "median": statistics.median(xs) if xs else None,
        "p90": pct(xs, 90),
        "p99": pct(xs, 99),
        "max": max(xs) if xs else None,
        "min": min(xs) if xs else None,
    }


class Vigil:
    def __init__(self, dirpath, config, state_dir):
        self.dir = dirpath
        self.cfg = os.path.join(dirpath, "vigil.toml")
        with open(self.cfg, "w") as f:
            f.write(f'[vigil]\nstate_dir = "{state_dir}"\nlog_format = "json"\n\n{config}')
        self.log = open(os.path.join(dirpath, "daemon.log"), "w")
        self.t_spawn = time.time()
        self.p = subprocess.Popen([VIGIL, "run", "-c", self.cfg], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=self.log)

    def status(self):
        out = subprocess.run([VIGIL, "status", "--json", "-c", self.cfg], capture_output=True)
        return json.loads(out.stdout)

    def stop(self, timeout=60):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def wait_for(what, cond, limit=60.0, step=0.005):
    end = time.time() + limit
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise SystemExit(f"timed out waiting for {what}")


def children(pid):
    n = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                n.extend(f.read().split())
    except OSError:
        pass
    return n


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                out[parts[0][:-1]] = int(parts[1])
    return out


def pss_kib(pid):
    return rollup(pid).get("Pss")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


CRASHER_C = r'''#include <stdio.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
/* Appends "S <ns>" when main starts and "E <ns>" just before it exits 1 (CLOCK_REALTIME,
   shared with the host and any container). Linked statically, so the time from exec to
   main is the kernel's, not the dynamic loader's. */
static void stamp(int fd, char tag) {
  struct timespec t; clock_gettime(CLOCK_REALTIME, &t);
  char buf[64]; int n = snprintf(buf, sizeof buf, "%c %lld\n", tag, (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
  write(fd, buf, n);
}
int main(int argc, char **argv) {
  int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
  stamp(fd, 'S');
  stamp(fd, 'E');
  return 1;
}
'''


CRASHER_NOLIBC_C = r'''/* The crasher without libc (x86_64 Linux): "S <ns>" at its first instruction, "E <ns>"
   just before exit_group(1), through raw system calls. A static glibc program spends a
   few hundred microseconds before main probing the CPU (CPUID, which traps to the
   hypervisor on a VM): the program's own start-up, not its supervisor's restart. */
#define SYS_write 1
#define SYS_open 2
#define SYS_clock_gettime 228
#define SYS_exit_group 231
struct ts { long sec; long nsec; };
static long sys3(long n, long a, long b, long c) {
  long r;
  __asm__ volatile ("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}
static void stamp(long fd, char tag) {
  struct ts t;
  sys3(SYS_clock_gettime, 0 /* CLOCK_REALTIME */, (long)&t, 0);
  unsigned long ns = (unsigned long)t.sec * 1000000000UL + (unsigned long)t.nsec;
  char buf[32]; int i = 31; buf[i--] = '\n';
  do { buf[i--] = (char)('0' + ns % 10); ns /= 10; } while (ns);
  buf[i--] = ' '; buf[i] = tag;
  sys3(SYS_write, fd, (long)&buf[i], 32 - i);
}
__attribute__((used)) static void start_c(long *sp) {
  char **argv = (char **)(sp + 1);
  long fd = sys3(SYS_open, (long)argv[1], 02000 | 01 | 0100 /* O_APPEND|O_WRONLY|O_CREAT */, 0644);
  stamp(fd, 'S');
  stamp(fd, 'E');
  sys3(SYS_exit_group, 1, 0, 0);
}
__asm__(".globl _start\n_start:\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call start_c\n  hlt\n");
'''

# kind -> (source, extra gcc flags). "nolibc" is the headline crasher; "glibc" (static)
# also counts glibc's start-up before main.
CRASHERS = {
    "nolibc": (CRASHER_NOLIBC_C, ["-nostdlib", "-fno-stack-protector", "-fno-pie", "-no-pie"]),
    "glibc": (CRASHER_C, []),
}


def crasher(d, kind="nolibc"):
    """Builds the crasher of `kind` as d/crash; returns its path."""
    source, flags = CRASHERS[kind]
    src = os.path.join(d, "crash.c")
    binp = os.path.join(d, "crash")
    with open(src, "w") as f:
        f.write(source)
    subprocess.run(["gcc", "-O2", "-static", *flags, "-o", binp, src], check=True)
    return binp


def crash_figures(path, n):
    """From a crasher's stamp file: crash-to-restart (an instance's last moment, E, to
    the next one's first, S) and the whole cycle (S to S), in ms, the first n of each."""
    starts, ends = [], []
    with open(path) as f:
        for line in f:
            tag, ns = line.split()
            (starts if tag == "S" else ends).append(int(ns))
    gaps = [(s - e) / 1e6 for e, s in zip(ends, starts[1:])][:n]
    cycles = [(b - a) / 1e6 for a, b in zip(starts, starts[1:])][:n]
    return gaps, cycles


def bench_crash(tmpfs, kind="nolibc"):
    """A process that stamps its start and its exit (exit 1 at once), restart = always,
    restart_delay = 0: crash-to-restart is from one instance's exit stamp to the next
    one's start stamp (the exit itself, Vigil noticing it, the policy, the guard with its
    ledger intent, the spawn and the exec; with the glibc crasher also glibc's start-up)."""
    d = tempfile.mkdtemp(prefix="vigil-bench-crash-")
    state = tempfile.mkdtemp(prefix="vigil-bench-state-", dir="/dev/shm") if tmpfs else os.path.join(d, "state")
    binp = crasher(d, kind)
    starts = os.path.join(d, "starts")
    cfg = f'''[defaults.guard]
cooldown = "0s"
max_restarts = 1000000
window = "5s"

[services.crash]
driver = "exec"
command = ["{binp}", "{starts}"]
restart = "always"
restart_delay = "0"
stdout = "null"
stderr = "null"
'''
    v = Vigil(d, cfg, state)
    def count():
        try:
            with open(starts) as f:
                return sum(1 for l in f if l.startswith("S"))
        except OSError:
            return 0
    wait_for("crashes", lambda: count() >= CRASHES + 1, limit=600, step=0.05)
    v.stop()
    gaps, cycles = crash_figures(starts, CRASHES)
    # Vigil's own share: exit observed -> next spawn returned (`since_exit_us` in its log).
    internal = []
    with open(os.path.join(d, "daemon.log")) as f:
        for line in f:
            if '"since_exit_us"' in line:
                internal.append(json.loads(line)["since_exit_us"] / 1000)
    name = "crash-tmpfs" if tmpfs else ("crash" if kind == "nolibc" else "crash-" + kind)
    res = {"scenario": name, "crasher": kind, "state_dir": state,
           "latency_ms": summary(gaps), "cycle_ms": summary(cycles),
           "vigil_internal_ms": summary(internal[:CRASHES]),
           "loadavg": open("/proc/loadavg").read().split()[:3]}
    return res


def main_pids(path):
    """The pids vigil-notify-client logged as "main PID" lines in its pid file."""
    try:
        with open(path) as f:
            return [int(l.split()[1]) for l in f if l.startswith("main ")]
    except OSError:
        return []


def hang(pid, wait_s, pings, wd_ms):
    """Lets the pinging `pid` run for wait_s, SIGSTOPs it and waits (pidfd, up to 10 s)
    until it is dead. Returns (lateness in ms: death - (last ping + wd_ms), whether it
    died, the moment of death in CLOCK_MONOTONIC ns)."""
    fd = os.pidfd_open(pid)
    time.sleep(wait_s)
    os.kill(pid, signal.SIGSTOP)
    died = bool(select.select([fd], [], [], 10)[0])
    t_dead, mono_dead = time.time_ns(), time.monotonic_ns()
    os.close(fd)
    with open(pings) as f:
        last = int(f.read().split()[-1])
    return (t_dead - last) / 1e6 - wd_ms, died, mono_dead


def bench_watchdog():
    """A service pinging every 20 ms with watchdog = 200 ms is SIGSTOPped; the lateness is
    the time from (last ping + watchdog) until the process is dead (seen via a pidfd)."""
    d = tempfile.mkdtemp(prefix="vigil-bench-wd-")
    pings = os.path.join(d, "pings")
    pidf = os.path.join(d, "pids")
    client = os.path.join(HELPERS, "vigil-notify-client")
    wd_ms = 200
    cfg = f'''[defaults.guard]
cooldown = "0s"
max_restarts = 1000000
window = "5s"

[services.hang]
driver = "exec"
command = ["{client}", "--pid-file", "{pidf}", "--ready-after-ms", "0", "--ping-ms", "20", "--ping-log", "{pings}"]
ready = "notify"
watchdog = "{wd_ms}ms"
restart = "on-watchdog"
restart_delay = "0"
stdout = "null"
'''
    v = Vigil(d, cfg, os.path.join(d, "state"))
    late = []
    seen = set()
    for i in range(HANGS):
        def newpid():
            return next((p for p in main_pids(pidf) if p not in seen and os.path.exists(f"/proc/{p}")), None)
        pid = wait_for("a new instance", newpid, limit=30)
        seen.add(pid)
        # Let it ping a while (random phase against the 20 ms ping period).
        late.append(hang(pid, 0.3 + (i % 7) * 0.013, pings, wd_ms)[0])
    v.stop()
    return {"scenario": "watchdog", "watchdog_ms": wd_ms, "lateness_ms": summary(late),
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def bench_idle():
    """IDLE_N services running `sleep`, outputs into Vigil's log (two pipes each):
    time until all are spawned, then Vigil's PSS and CPU while idle, then stop time."""
    d = tempfile.mkdtemp(prefix="vigil-bench-idle-")
    cfg = "".join(
        f'\n[services.s{i:03}]\ndriver = "exec"\ncommand = ["/bin/sleep", "100000"]\n'
        for i in range(IDLE_N))
    t0 = time.time()
    v = Vigil(d, cfg, os.path.join(d, "state"))
    wait_for("all started", lambda: len(children(v.p.pid)) >= IDLE_N, limit=120, step=0.002)
    t_all = time.time() - t0
    # Wait until the ledger has every state row (startup writes), then measure idle.
    wait_for("states written", lambda: sum(1 for s in v.status()["services"] if s["exec"]["state"] == "running") >= IDLE_N, limit=120, step=0.2)
    time.sleep(5)
    c0, w0 = cpu_secs(v.p.pid), time.time()
    samples = []
    end = w0 + IDLE_MEASURE
    while time.time() < end:
        samples.append((pss_kib(v.p.pid), rss_kib(v.p.pid)))
        time.sleep(1)
    c1, w1 = cpu_secs(v.p.pid), time.time()
    parts = rollup(v.p.pid)
    # After activity: one service is SIGKILLed and restarted. The restart maps code back
    # in (PSS right after); Vigil gives it back at its next 30 s look (PSS 35 s later).
    victim = children(v.p.pid)[0]
    os.kill(int(victim), signal.SIGKILL)
    wait_for("the restart", lambda: len(children(v.p.pid)) >= IDLE_N and victim not in children(v.p.pid), limit=30)
    time.sleep(1)
    pss_after_crash = pss_kib(v.p.pid) / 1024
    time.sleep(35)
    pss_after_35s = pss_kib(v.p.pid) / 1024
    t_stop0 = time.time()
    v.stop()
    t_stop = time.time() - t_stop0
    leftover = subprocess.run(["pgrep", "-f", "^/bin/sleep 100000$"], capture_output=True).stdout.split()
    return {"scenario": "idle", "services": IDLE_N, "start_all_s": t_all,
            "pss_mib_max": max(s[0] for s in samples) / 1024,
            "rss_mib_max": max(s[1] for s in samples) / 1024,
            "pss_anon_mib": parts.get("Pss_Anon", 0) / 1024, "pss_file_mib": parts.get("Pss_File", 0) / 1024,
            "cpu_percent": 100 * (c1 - c0) / (w1 - w0), "measure_s": w1 - w0,
            "pss_mib_after_crash": pss_after_crash, "pss_mib_35s_after_crash": pss_after_35s,
            "stop_all_s": t_stop, "leftover_sleeps": len(leftover),
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def main():
    results = []
    for s in SCENARIOS:
        print(f"[exec bench] {s} (load {open('/proc/loadavg').read().split()[0]})", file=sys.stderr)
        r = {"crash": lambda: bench_crash(False), "crash-tmpfs": lambda: bench_crash(True),
             "crash-glibc": lambda: bench_crash(False, "glibc"),
             "watchdog": bench_watchdog, "idle": bench_idle}[s]()
        with open(f"{OUT}/exec/{s}.json", "w") as f:
            json.dump(r, f, indent=2)
        results.append(r)
        print(json.dumps(r), file=sys.stderr)

    print("| scenario | figure | target | result |\n|---|---|---|---|")
    for r in results:
        if r["scenario"].startswith("crash"):
            l = r["latency_ms"]
            where = "ledger on /dev/shm (no fsync cost)" if r["scenario"] == "crash-tmpfs" else "ledger on disk"
            where += ", static glibc crasher (counts its start-up)" if r["crasher"] == "glibc" else ", crasher without libc"
            print(f"| {r['scenario']} ({where}, n={l['n']}, load {' '.join(r['loadavg'])}) | crash-to-restart (exit stamp to next start stamp) median / p99 / max | <1 ms / <5 ms | {l['median']:.2f} / {l['p99']:.2f} / {l['max']:.2f} ms |")
            c = r["cycle_ms"]
            print(f"| {r['scenario']} | whole cycle (start to start) median / p99 | - | {c['median']:.2f} / {c['p99']:.2f} ms |")
            v = r["vigil_internal_ms"]
            if v["n"]:
                print(f"| {r['scenario']} | of which inside Vigil (exit observed to spawn returned) median / p99 | - | {v['median']:.2f} / {v['p99']:.2f} ms |")
        elif r["scenario"] == "watchdog":
            l = r["lateness_ms"]
            print(f"| watchdog ({r['watchdog_ms']} ms, n={l['n']}, load {' '.join(r['loadavg'])}) | death after last ping + watchdog, median / p99 / max | p99 < 20 ms | {l['median']:.1f} / {l['p99']:.1f} / {l['max']:.1f} ms |")
        else:
            print(f"| idle {r['services']} (load {' '.join(r['loadavg'])}) | start all | < 1 s | {r['start_all_s']:.3f} s |")
            print(f"| idle {r['services']} | Vigil PSS (max over {r['measure_s']:.0f} s) | < 8 MiB | {r['pss_mib_max']:.1f} MiB (anon {r['pss_anon_mib']:.1f}, file {r['pss_file_mib']:.1f}; RSS {r['rss_mib_max']:.1f}) |")
            print(f"| idle {r['services']} | Vigil CPU | < 0.1 % | {r['cpu_percent']:.3f} % |")
            print(f"| idle {r['services']} | Vigil PSS 1 s / 35 s after one service crashed and was restarted | - | {r['pss_mib_after_crash']:.1f} / {r['pss_mib_35s_after_crash']:.1f} MiB |")
            print(f"| idle {r['services']} | stop all (SIGTERM to vigil until exit) | - | {r['stop_all_s']:.2f} s, {r['leftover_sleeps']} left |")


if __name__ == "__main__":
    main()
