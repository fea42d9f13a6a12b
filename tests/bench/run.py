#!/usr/bin/python3
"""kioskd benchmarks: one run, one table of measured values next to
baselines measured in the same run.  See tests/bench/README.md.

    /usr/bin/python3 tests/bench/run.py --build /abs/path/to/build [--json FILE]

Exit status: 0 when every benchmark ran (whether or not it met its
target: benchmarks report, they do not assert), 1 on a harness failure
(the daemon did not start, a bench program failed, ...).
Standard library only.
"""

import argparse
import configparser
import glob
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONF = os.path.join(REPO, "conf", "kioskd.conf")

# Targets (see README.md).
HELLO_RATIO_MAX = 2.0
FANOUT_P99_MAX_US = 1000.0
RSS_MAX_MIB = 8.0
READY_MAX_MS = 100.0
WAKEUP_SLACK = 2

WATCHDOG_USEC = 2000000  # the daemon pings at half of it: every second
RSS_DELAY_S = 2.0
IDLE_WINDOW_S = 10.0
READY_STARTS = 20
FANOUT_SUBSCRIBERS = 32
FANOUT_EVENTS = 500
HELLO_COUNT = 20000


class HarnessError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- the NOTIFY_SOCKET side of systemd ------------------------------------


class Notify:
    """A datagram socket standing in for systemd's notify socket.  A thread
    drains it all the time (a full queue would block the daemon's
    sd_notify) and stamps every datagram with CLOCK_MONOTONIC on arrival."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.q = queue.Queue()
        self.log = []  # (t_ns, pid, text), every datagram
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        credsz = struct.calcsize("iII")
        while not self.stop:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(credsz))
            except OSError:
                return
            t = time.monotonic_ns()
            pid = 0
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:credsz])[0]
            msg = (t, pid, data.decode(errors="replace"))
            self.log.append(msg)
            self.q.put(msg)

    def wait_for(self, pid, key, timeout, alive=lambda: True):
        """The arrival time of the first datagram from pid holding key=1;
        None after timeout or once alive() says the sender is gone."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                t, p, text = self.q.get(timeout=min(left, 0.1))
            except queue.Empty:
                if not alive():
                    return None
                continue
            if p == pid and key + "=1" in text.split("\n"):
                return t

    def drain(self):
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                return

    def count(self, pid, key, t0, t1):
        return sum(1 for t, p, text in list(self.log)
                   if p == pid and t0 <= t <= t1 and key + "=1" in text.split("\n"))

    def close(self):
        self.stop = True
        self.sock.close()


# --- the daemon -------------------------------------------------------------


class Daemon:
    def __init__(self, build, tmp, notify, conf, env_extra=None, name="kioskd"):
        self.build, self.tmp, self.notify, self.conf = build, tmp, notify, conf
        self.run_dir = os.path.join(tmp, "run")
        self.state_dir = os.path.join(tmp, "state")
        self.logpath = os.path.join(tmp, name + ".log")
        self.env = dict(os.environ)
        for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC",
                  "WATCHDOG_PID", "JOURNAL_STREAM"):
            self.env.pop(k, None)
        self.env["NOTIFY_SOCKET"] = notify.path
        self.env.update(env_extra or {})
        self.proc = None

    def start(self, timeout=10.0):
        """Start and wait for READY=1: nanoseconds from just before the
        fork/exec to the READY datagram's arrival."""
        logf = open(self.logpath, "ab")
        argv = [os.path.join(self.build, "kioskd"), "--config", self.conf,
                "--runtime-dir", self.run_dir, "--state-dir", self.state_dir]
        self.notify.drain()
        t0 = time.monotonic_ns()
        self.proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf)
        t = self.notify.wait_for(self.proc.pid, "READY", timeout,
                                 lambda: self.proc.poll() is None)
        logf.close()
        if t is None:
            rc = self.proc.poll()
            self.kill()
            raise HarnessError("kioskd did not send READY=1 (%s)\n%s" % (
                "exited with status %s" % rc if rc is not None
                else "still running after %.0f s" % timeout,
                self.log_tail()))
        self.ready_ns = t
        return t - t0

    def stop(self, timeout=5.0):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HarnessError("kioskd did not stop within %.0f s of SIGTERM" % timeout)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n=15):
        try:
            with open(self.logpath, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid


# --- /proc ------------------------------------------------------------------


def proc_status(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def kib(v):
    return int(v.split()[0])


def ctxt_switches(pid):
    """{tid: (name, voluntary, nonvoluntary)} over every thread."""
    out = {}
    for d in glob.glob("/proc/%d/task/*" % pid):
        try:
            st = proc_status(os.path.join(d, "status"))
        except OSError:
            continue  # the thread just went away
        out[int(os.path.basename(d))] = (st.get("Name", "?"),
                                         int(st["voluntary_ctxt_switches"]),
                                         int(st["nonvoluntary_ctxt_switches"]))
    return out


# --- configuration ------------------------------------------------------------


def read_conf(path):
    """The configuration as kioskd reads it: the file, then *.conf drop-ins
    from kioskd.conf.d/ and conf.d/ beside it, later values winning."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), strict=False,
                                   interpolation=None)
    files = [path]
    for d in ("kioskd.conf.d", "conf.d"):
        files += sorted(glob.glob(os.path.join(os.path.dirname(path), d, "*.conf")))
    cp.read(files)
    return cp


def periodic_timers(cp):
    """[(what, period_ms)] of the timers the configuration arms while idle."""
    out = []
    for sec in cp.sections():
        if not sec.startswith("device "):
            continue
        s = cp[sec]
        if s.get("class") == "sensor" and s.get("plugin", "sim") == "sim":
            out.append(("sensor %s" % sec[7:], max(50, int(s.get("interval_ms", "1000")))))
        if s.get("class") == "locker" and int(s.get("auto_close_ms", "0") or 0):
            pass  # one-shot, only after a door opens: not an idle timer
    return out


# --- the C benches -----------------------------------------------------------


def run_bench(build, name, args, timeout=60):
    exe = os.path.join(build, "tests", "bench", name)
    if not os.access(exe, os.X_OK):
        raise HarnessError("%s is missing: run 'make tests' (or 'make bench')" % exe)
    try:
        p = subprocess.run([exe] + args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HarnessError("%s did not finish within %d s" % (name, timeout))
    if p.returncode != 0:
        raise HarnessError("%s failed (exit %d): %s" % (name, p.returncode, p.stderr.strip()))
    try:
        return json.loads(p.stdout)
    except ValueError:
        raise HarnessError("%s printed no JSON: %r" % (name, p.stdout[:200]))


# --- the measurements ---------------------------------------------------------


def idle_measurements(d, timers, res):
    """RSS 2 s after READY, then context switches over 10 idle seconds."""
    time.sleep(max(0.0, RSS_DELAY_S - (time.monotonic_ns() - d.ready_ns) / 1e9))
    st = proc_status("/proc/%d/status" % d.pid)
    res["rss"] = {k: kib(st[k]) for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem",
                                          "VmHWM", "VmSize") if k in st}
    res["rss"]["threads"] = int(st["Threads"])

    before = ctxt_switches(d.pid)
    t0 = time.monotonic_ns()
    time.sleep(IDLE_WINDOW_S)
    after = ctxt_switches(d.pid)
    t1 = time.monotonic_ns()
    per = {}
    for tid, (name, vol, inv) in after.items():
        _, v0, i0 = before.get(tid, (name, 0, 0))
        per["%s/%d" % (name, tid)] = (vol - v0, inv - i0)
    window = (t1 - t0) / 1e9
    pings_expected = int(IDLE_WINDOW_S * 1e6 // (WATCHDOG_USEC / 2))
    expected = pings_expected + sum(int(IDLE_WINDOW_S * 1000 // ms) for _, ms in timers)
    res["wakeups"] = {
        "window_s": window,
        "measured": sum(v + i for v, i in per.values()),
        "voluntary": sum(v for v, _ in per.values()),
        "nonvoluntary": sum(i for _, i in per.values()),
        "per_thread": per,
        "expected": expected,
        "expected_watchdog": pings_expected,
        "expected_timers": [(w, ms, int(IDLE_WINDOW_S * 1000 // ms)) for w, ms in timers],
        "watchdog_pings_seen": d.notify.count(d.pid, "WATCHDOG", t0, t1),
    }


def set_affinity(pid, cpus):
    for tid in os.listdir("/proc/%d/task" % pid):
        os.sched_setaffinity(int(tid), cpus)


def hello_measurements(build, d, ui):
    """bench_hello with the daemon pinned to the last CPU: once with the
    client on that CPU too, once with the client on the first CPU.  The raw
    server is pinned where the daemon is, so that each ratio compares one
    placement with the same placement (left alone, the scheduler keeps the
    raw pair on one CPU but often splits kioskd from its client, and the
    ratio then swings between 2x and 4x from run to run)."""
    cpus = sorted(os.sched_getaffinity(0))
    out = {}
    placements = [("same", cpus[-1])]
    if len(cpus) > 1:
        placements.append(("cross", cpus[0]))
    set_affinity(d.pid, {cpus[-1]})
    try:
        for name, client in placements:
            out[name] = run_bench(build, "bench_hello", [
                "--socket", ui, "--count", str(HELLO_COUNT), "--warmup", "5000",
                "--block", "100", "--client-cpu", str(client),
                "--server-cpu", str(cpus[-1])])
            out[name]["cpus"] = (client, cpus[-1])
    finally:
        set_affinity(d.pid, set(cpus))
    return out


def ready_measurements(build, tmp, notify, res):
    """READY_STARTS starts of kioskd and as many runs of /bin/true,
    alternating, both timed from just before Popen."""
    ready, true = [], []
    d = Daemon(build, tmp, notify, CONF, name="kioskd-starts")
    for _ in range(READY_STARTS):
        t0 = time.monotonic_ns()
        subprocess.Popen(["/bin/true"]).wait()
        true.append((time.monotonic_ns() - t0) / 1e6)
        ready.append(d.start() / 1e6)
        rc = d.stop()
        if rc != 0:
            raise HarnessError("kioskd exited with status %s after SIGTERM\n%s" % (
                rc, d.log_tail()))
    res["ready"] = {"ms": ready, "true_ms": true}


def is_asan(exe):
    with open(exe, "rb") as f:
        return b"__asan_init" in f.read()


# --- the table ------------------------------------------------------------------


def fmt(v, nd=1):
    return "%.*f" % (nd, v)


def table(res, build):
    rows = []

    def row(metric, val, base, ratio, target, ok):
        rows.append((metric, val, base, ratio, target,
                     "-" if ok is None else ("ok" if ok else "MISSED")))

    for name, label in (("same", "same CPU"), ("cross", "cross CPU")):
        if name not in res["hello"]:
            continue
        h = res["hello"][name]
        k50, r50 = h["kioskd"]["p50_us"], h["raw"]["p50_us"]
        k99, r99 = h["kioskd"]["p99_us"], h["raw"]["p99_us"]
        row("hello p50, %s (us)" % label, fmt(k50), fmt(r50) + " (raw)",
            "%.2fx" % (k50 / r50), "<= %.1fx" % HELLO_RATIO_MAX, k50 / r50 <= HELLO_RATIO_MAX)
        row("hello p99, %s (us)" % label, fmt(k99), fmt(r99) + " (raw)",
            "%.2fx" % (k99 / r99), "-", None)

    f = res["fanout"]
    d50, d99 = f["delivery"]["p50_us"], f["delivery"]["p99_us"]
    i50, i99 = f["inject_rtt"]["p50_us"], f["inject_rtt"]["p99_us"]
    n = f["subscribers"]
    row("fan-out x%d p50 (us)" % n, fmt(d50), fmt(i50) + " (inject)", "%.1fx" % (d50 / i50),
        "-", None)
    row("fan-out x%d p99 (us)" % n, fmt(d99), fmt(i99) + " (inject)", "%.1fx" % (d99 / i99),
        "<= %.0f us" % FANOUT_P99_MAX_US, d99 <= FANOUT_P99_MAX_US)

    rss = res["rss"]["VmRSS"] / 1024.0
    row("idle RSS (MiB)", fmt(rss, 2), "-", "-", "<= %.1f MiB" % RSS_MAX_MIB, rss <= RSS_MAX_MIB)

    rm = statistics.median(res["ready"]["ms"])
    tm = statistics.median(res["ready"]["true_ms"])
    row("start to READY median (ms)", fmt(rm, 2), fmt(tm, 2) + " (true)",
        "%.1fx" % (rm / tm), "<= %.0f ms" % READY_MAX_MS, rm <= READY_MAX_MS)

    w = res["wakeups"]
    row("wake-ups in %.0f s idle" % IDLE_WINDOW_S, str(w["measured"]),
        "%d (timers)" % w["expected"], "%.2fx" % (w["measured"] / max(1, w["expected"])),
        "<= %d" % (w["expected"] + WAKEUP_SLACK), w["measured"] <= w["expected"] + WAKEUP_SLACK)

    widths = [max(len(r[i]) for r in rows + [HEADER]) + 2 for i in range(len(HEADER))]
    out = ["kioskd benchmarks (build: %s%s, %d cores, load average %s at start)" % (
        build, ", ASan: NOT representative" if res["asan"] else "", os.cpu_count(),
        res["loadavg"])]
    for r in [HEADER] + rows:
        out.append("".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(out)


HEADER = ("metric", "kioskd", "baseline", "ratio", "target", "verdict")


def details(res):
    f, r, w = res["fanout"], res["rss"], res["wakeups"]
    rd = res["ready"]
    lines = [""]
    for name, h in res["hello"].items():
        lines.append(
            "hello (%s: client on CPU %d, kioskd and raw server on CPU %d): %d round trips "
            "each, %d-byte request, %d-byte reply; min/p90/p99.9 kioskd %.1f/%.1f/%.1f us, "
            "raw %.1f/%.1f/%.1f us" % (
                name, h["cpus"][0], h["cpus"][1], h["kioskd"]["n"], h["request_bytes"],
                h["reply_bytes"], h["kioskd"]["min_us"], h["kioskd"]["p90_us"],
                h["kioskd"]["p999_us"], h["raw"]["min_us"], h["raw"]["p90_us"],
                h["raw"]["p999_us"]))
    lines += [
        "fan-out: %d events x %d subscribers (%d deliveries), %d us apart; first subscriber "
        "p50/p99 %.1f/%.1f us, last subscriber p50/p99 %.1f/%.1f us, max %.1f us" % (
            f["events"], f["subscribers"], f["delivery"]["n"], f["gap_us"],
            f["first"]["p50_us"], f["first"]["p99_us"], f["last"]["p50_us"],
            f["last"]["p99_us"], f["delivery"]["max_us"]),
        "RSS: VmRSS %d KiB = anon %d + file %d + shmem %d KiB; VmHWM %d KiB; %d threads" % (
            r["VmRSS"], r.get("RssAnon", 0), r.get("RssFile", 0), r.get("RssShmem", 0),
            r.get("VmHWM", 0), r["threads"]),
        "READY: %d starts, min/median/max %.2f/%.2f/%.2f ms; /bin/true %.2f/%.2f/%.2f ms" % (
            len(rd["ms"]), min(rd["ms"]), statistics.median(rd["ms"]), max(rd["ms"]),
            min(rd["true_ms"]), statistics.median(rd["true_ms"]), max(rd["true_ms"])),
        "wake-ups: %d voluntary + %d involuntary over %.2f s; expected %d = %d watchdog pings"
        " (WATCHDOG_USEC=%d)%s; pings seen on NOTIFY_SOCKET: %d" % (
            w["voluntary"], w["nonvoluntary"], w["window_s"], w["expected"],
            w["expected_watchdog"], WATCHDOG_USEC,
            "".join(" + %d %s samples (%d ms)" % (n, what, ms)
                    for what, ms, n in w["expected_timers"]),
            w["watchdog_pings_seen"]),
        "  per thread: " + ", ".join("%s %d+%d" % (t, v, i)
                                     for t, (v, i) in sorted(w["per_thread"].items())),
    ]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="absolute path of the build directory")
    ap.add_argument("--json", help="also write every measurement to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    exe = os.path.join(build, "kioskd")
    if not os.access(exe, os.X_OK):
        log("run.py: %s is missing: build first (make bench)" % exe)
        return 1

    with open("/proc/loadavg") as f:
        res = {"asan": is_asan(exe), "loadavg": " ".join(f.read().split()[:3])}
    if res["asan"]:
        log("run.py: warning: %s is an ASan build; the numbers will not mean much" % exe)
    cp = read_conf(CONF)
    timers = periodic_timers(cp)

    tmp = tempfile.mkdtemp(prefix="kioskd-bench-")
    notify = Notify(os.path.join(tmp, "notify.sock"))
    d = None
    ok = False
    try:
        t_start = time.monotonic()
        # One daemon, started as systemd would with a 2 s watchdog: the idle
        # measurements first, while it is fresh, then the latency benches.
        log("run.py: starting kioskd (%s)" % CONF)
        d = Daemon(build, os.path.join(tmp, "a"), notify, CONF,
                   {"WATCHDOG_USEC": str(WATCHDOG_USEC)})
        os.makedirs(d.tmp)
        d.start()
        log("run.py: idle RSS after %.0f s, then wake-ups over %.0f s" % (
            RSS_DELAY_S, IDLE_WINDOW_S))
        idle_measurements(d, timers, res)

        ui = os.path.join(d.run_dir, "ui.sock")
        admin = os.path.join(d.run_dir, "admin.sock")
        log("run.py: hello round trips")
        res["hello"] = hello_measurements(build, d, ui)
        log("run.py: event fan-out")
        res["fanout"] = run_bench(build, "bench_fanout", [
            "--ui", ui, "--admin", admin, "--device", "qr0", "--topic", "barcode.*",
            "--subscribers", str(FANOUT_SUBSCRIBERS), "--events", str(FANOUT_EVENTS)])
        if d.proc.poll() is not None:
            raise HarnessError("kioskd died during the benches (status %s)\n%s" % (
                d.proc.returncode, d.log_tail()))
        rc = d.stop()
        if rc != 0:
            raise HarnessError("kioskd exited with status %s after SIGTERM\n%s" % (
                rc, d.log_tail()))
        d = None

        log("run.py: %d starts to READY" % READY_STARTS)
        b = os.path.join(tmp, "b")
        os.makedirs(b)
        ready_measurements(build, b, notify, res)
        res["elapsed_s"] = time.monotonic() - t_start
        ok = True
    except HarnessError as e:
        log("run.py: harness failure: %s" % e)
        if d and d.proc and d.proc.poll() is not None:
            log("run.py: kioskd (pid %d) had exited with status %s, not stopped by run.py "
                "(another process signalled it?); its log ends:\n%s" % (
                    d.pid, d.proc.returncode, d.log_tail()))
    except Exception:  # a bug here or an unexpected system: still a harness failure
        import traceback
        log("run.py: harness failure:\n" + traceback.format_exc())
    finally:
        if d:
            d.kill()
        notify.close()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("run.py: temporary files kept in %s" % tmp)
    if not ok:
        return 1

    print(table(res, build))
    if float(res["loadavg"].split()[0]) >= 0.5:
        print("note: the machine was busy at the start (load average %s): other work "
              "inflates the p99 rows first" % res["loadavg"].split()[0])
    print(details(res))
    print("(%.1f s; benchmarks report, they do not assert: MISSED does not fail the run)"
          % res["elapsed_s"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
