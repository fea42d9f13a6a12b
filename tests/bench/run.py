#!/usr/bin/python3
"""kioskd benchmarks: one run, one table of measured values next to
baselines measured in the same run.  See tests/bench/README.md.

    /usr/bin/python3 tests/bench/run.py --build /abs/path/to/build [--json FILE]
        [--only idle,hello,fanout,ready,store,drain,rss,<plugin>...] [--store-dir DIR]...
        [--backlog N] [--keep]

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
STORE_X1_MIN = 0.7      # 1 client >= 0.7x raw SQLite, one row per commit
STORE_X16_MIN = 5.0     # 16 clients >= 5x raw (group commit)
DRAIN_MIN = 50.0        # draining >= 50x faster than a curl per transaction
BACKLOG_RSS_MAX_MIB = 16.0
BACKLOG_RSS_SLACK_MIB = 2.0  # "the same as with 1,000": within the page cache (2000 KiB)

WATCHDOG_USEC = 2000000  # the daemon pings at half of it: every second
RSS_DELAY_S = 2.0
IDLE_WINDOW_S = 10.0
READY_STARTS = 20
FANOUT_SUBSCRIBERS = 32
FANOUT_EVENTS = 500
HELLO_COUNT = 20000

# the plugin sections come from tests/bench/plugin_<name>.py (see plugin_sections)
CORE_SECTIONS = ("idle", "hello", "fanout", "ready", "store", "drain", "rss")


def plugin_sections():
    """Each tests/bench/plugin_<name>.py is a section <name>: its
    measure(build, tmp, log) returns the rows of the table it adds."""
    here = os.path.dirname(os.path.abspath(__file__))
    return tuple(sorted(os.path.basename(p)[len("plugin_"):-3]
                        for p in glob.glob(os.path.join(here, "plugin_*.py"))))


SECTIONS = CORE_SECTIONS + plugin_sections()

# store: bench_submit / bench_sqlite, alternating, in rounds
STORE_SECONDS = 2.0
STORE_WARMUP_S = 0.5
STORE_ROUNDS = 4       # the free placement moves from round to round: the verdict is of the average
STORE_CLIENTS = (1, 16)
MEMORY_FS = ("tmpfs", "ramfs")

# drain: the backlog, the endpoint section, the curl sample
DRAIN_TXNS = 100000
DRAIN_BATCH_SIZE = 100   # the defaults of [endpoint] (docs/configuration.md)
DRAIN_CONCURRENCY = 2
CURL_SAMPLE = 200
FILL_CLIENTS = 2         # pipelined fills: 2 connections x 2048 requests in flight
FILL_PIPELINE = 2048

# rss: queued transactions with the endpoint down
BACKLOG_SMALL = 1000
BACKLOG_LARGE = 1000000
BACKLOG_FILL_BUDGET_S = 180.0  # a larger fill stops at the 100k step that would pass this
BACKLOG_STEP = 100000


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
    live = []  # every Daemon started: main() kills what is still running

    def __init__(self, build, tmp, notify, conf, env_extra=None, name="kioskd", state_dir=None):
        self.build, self.tmp, self.notify, self.conf = build, tmp, notify, conf
        self.run_dir = os.path.join(tmp, "run")
        self.state_dir = state_dir or os.path.join(tmp, "state")
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
        if self not in Daemon.live:
            Daemon.live.append(self)
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

    def check_alive(self, what):
        if self.proc.poll() is not None:
            raise HarnessError("kioskd died during %s (status %s)\n%s" % (
                what, self.proc.returncode, self.log_tail()))

    def stop_clean(self):
        rc = self.stop()
        if rc != 0:
            raise HarnessError("kioskd exited with status %s after SIGTERM\n%s" % (
                rc, self.log_tail()))


class Client:
    """One JSON-lines connection to ui.sock or admin.sock: call() sends a
    request and returns its result; events that arrive meanwhile are kept
    for event()."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.n = 0
        self.events = []

    def _line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise HarnessError("kioskd closed the connection")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def call(self, cmd, args=None, timeout=30.0):
        self.n += 1
        req = {"id": self.n, "cmd": cmd}
        if args is not None:
            req["args"] = args
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            try:
                m = self._line(deadline)
            except socket.timeout:
                raise HarnessError("no reply to %s within %.0f s" % (cmd, timeout))
            if "event" in m:
                self.events.append((time.monotonic(), m))
            elif m.get("id") == self.n:
                if not m.get("ok"):
                    raise HarnessError("%s failed: %s" % (cmd, m.get("error")))
                return m["result"]

    def event(self, timeout):
        """(arrival time, event), or None after timeout."""
        if self.events:
            return self.events.pop(0)
        try:
            m = self._line(time.monotonic() + timeout)
        except socket.timeout:
            return None
        return (time.monotonic(), m) if "event" in m else self.event(timeout)

    def close(self):
        self.sock.close()


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


def run_bench(build, name, args, timeout=60, cpu=None):
    """Run a C bench (on one CPU if cpu is not None); its JSON."""
    exe = os.path.join(build, "tests", "bench", name)
    if not os.access(exe, os.X_OK):
        raise HarnessError("%s is missing: run 'make tests' (or 'make bench')" % exe)
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    try:
        p = subprocess.run([exe] + args, capture_output=True, text=True, timeout=timeout,
                           preexec_fn=pin)
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


# --- the store, the drain, the backlog ----------------------------------------


def filesystem(path):
    """(fstype, mount point, source) of the filesystem holding path."""
    path = os.path.realpath(path)
    best = ("?", "/", "?")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mnt = left.split()[4].replace("\\040", " ")
            fstype, source = (right.split() + ["?", "?"])[:2]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and \
                    len(mnt) >= len(best[1]):
                best = (fstype, mnt, source)
    return best


def store_dirs(tmp, build, extra):
    """[(label, directory, fstype, mount point)] the store rows run on: the
    temporary directory; when that is in memory (tmpfs: fsync is free), also
    the first disk-backed one of /var/tmp and the build directory; and every
    --store-dir."""
    out = []
    fs = filesystem(tmp)
    out.append((tmp, fs))
    if fs[0] in MEMORY_FS:
        for cand in ("/var/tmp", build):
            if os.path.isdir(cand) and os.access(cand, os.W_OK) and \
                    filesystem(cand)[0] not in MEMORY_FS:
                out.append((tempfile.mkdtemp(prefix="kioskd-bench-", dir=cand),
                            filesystem(cand)))
                break
    for d in extra:
        os.makedirs(d, exist_ok=True)
        out.append((tempfile.mkdtemp(prefix="kioskd-bench-", dir=d), filesystem(d)))
    return out


def bench_conf(tmp, drop_in):
    """conf/kioskd.conf and its drop-ins, copied unmodified into tmp/conf,
    plus drop_in as the last drop-in; the path of the copy."""
    d = os.path.join(tmp, "conf")
    os.makedirs(os.path.join(d, "conf.d"), exist_ok=True)
    shutil.copy(CONF, os.path.join(d, "kioskd.conf"))
    for sub in ("kioskd.conf.d", "conf.d"):
        for f in glob.glob(os.path.join(os.path.dirname(CONF), sub, "*.conf")):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
            shutil.copy(f, os.path.join(d, sub, os.path.basename(f)))
    with open(os.path.join(d, "conf.d", "zzzz-bench.conf"), "w") as f:
        f.write(drop_in)
    return os.path.join(d, "kioskd.conf")


def endpoint_drop_in(ep, **keys):
    return ep.conf("bench", **keys) + "\n[route]\n* = bench\n"


def store_placements():
    """(name, client CPU, server CPU) for the store rows; None: unpinned.
    The first, "free" (left to the scheduler, as a kiosk runs), is the one
    the targets are judged on.  The two pinned ones explain it: "cross",
    the client on the first CPU, kioskd and raw SQLite on the last, so
    that every request wakes a task on the other CPU; "same", the client
    on kioskd's CPU: the cheapest wake-ups, but at x16 the client then
    takes CPU time from kioskd that raw SQLite has to itself.  On the
    2-vCPU VM the x1 ratio is 0.76-0.96x "same" and 0.57-0.78x "cross": a
    wake-up across CPUs costs tens of microseconds there."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [("free", None, None)]
    return [("free", None, None), ("cross", cpus[0], cpus[-1]), ("same", cpus[-1], cpus[-1])]


def store_measurements(build, tmp, notify, dirs, res):
    """Per directory: one kioskd with the shipped configuration (no route:
    nothing is delivered, nothing but the submissions is written) and its
    database there; bench_submit with 1 and 16 clients and bench_sqlite
    with 1 and 16 writers next to it, alternating, STORE_ROUNDS rounds,
    in each placement of store_placements() (raw SQLite runs where kioskd
    does)."""
    out = []
    places = store_placements()
    allcpus = sorted(os.sched_getaffinity(0))
    for i, (d, fs) in enumerate(dirs):
        log("run.py: store on %s (%s at %s): txn.submit x%s against raw SQLite, %d rounds" % (
            d, fs[0], fs[1], "/x".join(map(str, STORE_CLIENTS)), STORE_ROUNDS))
        dm = Daemon(build, os.path.join(tmp, "store%d" % i), notify, CONF,
                    name="kioskd-store", state_dir=os.path.join(d, "state"))
        os.makedirs(dm.tmp)
        dm.start()
        kdb = os.path.join(dm.state_dir, "kioskd.db")
        raw = os.path.join(d, "raw.db")
        ui = os.path.join(dm.run_dir, "ui.sock")
        runs = {}
        t = ["--seconds", str(STORE_SECONDS), "--warmup", str(STORE_WARMUP_S)]
        for r in range(STORE_ROUNDS):
            for k, (place, client, server) in enumerate(places):
                set_affinity(dm.pid, set(allcpus) if server is None else {server})
                for n in STORE_CLIENTS:
                    fresh = r == 0 and k == 0 and n == 1
                    runs.setdefault("%s/raw%d" % (place, n), []).append(run_bench(
                        build, "bench_sqlite",
                        ["--db", raw, "--schema-from", kdb, "--threads", str(n)] + t +
                        (["--fresh"] if fresh else []), cpu=server))
                    runs.setdefault("%s/kioskd%d" % (place, n), []).append(run_bench(
                        build, "bench_submit", ["--socket", ui, "--clients", str(n)] + t,
                        cpu=client))
                    dm.check_alive("the store bench")
                    if n == 1:
                        runs.setdefault("%s/rawwal1" % place, []).append(run_bench(
                            build, "bench_sqlite",
                            ["--db", os.path.join(d, "rawwal.db"), "--schema-from", kdb,
                             "--walvfs", "--threads", "1"] + t + (["--fresh"] if fresh else []),
                            cpu=server))
                        runs.setdefault("%s/relay1" % place, []).append(relay_run(
                            build, d, kdb, t, client, server, fresh))
        set_affinity(dm.pid, set(allcpus))
        try:
            c = Client(os.path.join(dm.run_dir, "admin.sock"))
            counts = c.call("queue.list", {"limit": 1})["counts"]
            c.close()
        except (OSError, HarnessError) as e:
            raise HarnessError("queue.list after the store bench: %s" % e)
        dm.stop_clean()
        row = {"dir": d, "fstype": fs[0], "mount": fs[1], "source": fs[2],
               "memory": fs[0] in MEMORY_FS, "queued": counts.get("queued"),
               "placements": {}}
        for k, v in runs.items():
            place, what = k.split("/")
            row["placements"].setdefault(place, {})[what] = {
                "rate": sum(x["measured"] for x in v) / sum(x["window_s"] for x in v),
                "rates": [x["rate"] for x in v],
                "p50_us": statistics.median(x["latency"]["p50_us"] for x in v),
                "p99_us": max(x["latency"]["p99_us"] for x in v)}
        row["order"] = [p[0] for p in places]
        row["cpus"] = {p[0]: (p[1], p[2]) for p in places}
        out.append(row)
    res["store"] = out


def relay_run(build, d, kdb, t, client, server, fresh):
    """The floor row: bench_submit x1 against bench_sqlite --serve --walvfs
    (SQLite, writing its WAL as kioskd's store does, behind a Unix socket,
    nothing else), placed as kioskd is; the bench_submit JSON.  Its
    database accumulates rows like raw.db."""
    sock = os.path.join(d, "relay.sock")
    args = ["--db", os.path.join(d, "relay.db"), "--schema-from", kdb, "--walvfs",
            "--serve", sock]
    exe = os.path.join(build, "tests", "bench", "bench_sqlite")
    pin = None if server is None else (lambda: os.sched_setaffinity(0, {server}))
    srv = subprocess.Popen([exe] + args + (["--fresh"] if fresh else []),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=pin)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            if srv.poll() is not None or time.monotonic() > deadline:
                raise HarnessError("bench_sqlite --serve did not listen: %s" % (
                    srv.stderr.read().strip() if srv.poll() is not None else "timeout"))
            time.sleep(0.01)
        r = run_bench(build, "bench_submit", ["--socket", sock, "--clients", "1"] + t,
                      cpu=client)
        out, err = srv.communicate(timeout=30)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    if srv.returncode != 0 or json.loads(out or "{}").get("served") != r["done"]:
        raise HarnessError("bench_sqlite --serve: exit %s, %s (%s)" % (
            srv.returncode, out.strip(), err.strip()))
    return r


def fill(build, ui, n, what, d):
    """n txn.submit through kioskd, pipelined; the bench_submit JSON."""
    r = run_bench(build, "bench_submit", [
        "--socket", ui, "--clients", str(FILL_CLIENTS), "--pipeline", str(FILL_PIPELINE),
        "--count", str(n)], timeout=max(60, n / 1000))
    d.check_alive(what)
    return r


def wait_counts(admin, want, timeout, what):
    """Poll queue.list until its counts match want (a dict); the counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = admin.call("queue.list", {"limit": 1})["counts"]
        if all(counts.get(k) == v for k, v in want.items()):
            return counts
        if time.monotonic() > deadline:
            raise HarnessError("%s: queue counts %s after %.0f s, want %s" % (
                what, counts, timeout, want))
        time.sleep(0.01)


def drain_measurements(build, tmp, notify, ep, res, batch_size=DRAIN_BATCH_SIZE,
                       concurrency=DRAIN_CONCURRENCY):
    """DRAIN_TXNS queued while the endpoint is down, then timed from
    "up + sync.kick" until the queue is empty; next to curl, one process
    and one POST per transaction, on CURL_SAMPLE transactions."""
    ep.reset()
    ep.down()
    conf = bench_conf(os.path.join(tmp, "drain"), endpoint_drop_in(
        ep, batch_size=batch_size, concurrency=concurrency, startup_delay_ms=0))
    d = Daemon(build, os.path.join(tmp, "drain"), notify, conf, name="kioskd-drain")
    d.start()
    try:
        ui = os.path.join(d.run_dir, "ui.sock")
        log("run.py: drain: %d transactions queued with the endpoint down" % DRAIN_TXNS)
        f = fill(build, ui, DRAIN_TXNS, "the drain fill", d)
        admin = Client(os.path.join(d.run_dir, "admin.sock"))
        wait_counts(admin, {"queued": DRAIN_TXNS, "sending": 0}, 30, "before the drain")
        sub = Client(ui)
        sub.call("events.subscribe", {"topics": ["sync.*"]})
        log("run.py: drain: endpoint up, sync.kick, until nothing is queued or sending")
        ep.up()
        cpu0 = (cpu_s(d.pid), cpu_s(ep.pid))
        t0 = time.monotonic()
        admin.call("sync.kick")
        delivered, rejected, t_events, first = 0, 0, None, None
        deadline = t0 + 300
        while delivered + rejected < DRAIN_TXNS:
            ev = sub.event(max(0.1, deadline - time.monotonic()))
            if ev is None or time.monotonic() > deadline:
                raise HarnessError("drain: %d delivered after %.0f s" % (delivered, 300))
            t, m = ev
            if m["event"] == "sync.delivered":
                delivered += m["data"]["count"]
                first = first or t
            elif m["event"] == "sync.rejected":
                rejected += 1
        t_events = time.monotonic()
        counts = wait_counts(admin, {"queued": 0, "sending": 0}, 60, "after the drain")
        t1 = time.monotonic()
        cpu1 = (cpu_s(d.pid), cpu_s(ep.pid))
        d.check_alive("the drain")
        sub.close()
        admin.close()
        rss = proc_status("/proc/%d/status" % d.pid)
        d.stop_clean()
    finally:
        d.kill()
    st = ep.stats()
    out = {"txns": DRAIN_TXNS, "batch_size": batch_size,
           "concurrency": concurrency, "fill_s": f["wall_s"], "fill_rate": f["rate"],
           "drain_s": t1 - t0, "events_s": t_events - t0, "first_s": (first or t1) - t0,
           "delivered_events": delivered, "rejected": rejected, "counts": counts,
           "endpoint": {k: st.get(k) for k in ("applied", "received", "batches", "requests",
                                              "connections", "items_ok", "items_duplicate")},
           "violations": st.get("violations", 0),
           "vmhwm_kib": kib(rss["VmHWM"]),
           "cpu_kioskd_s": cpu1[0] - cpu0[0], "cpu_endpoint_s": cpu1[1] - cpu0[1]}
    if st.get("applied") != DRAIN_TXNS:
        raise HarnessError("drain: the endpoint applied %s transactions, want %d" % (
            st.get("applied"), DRAIN_TXNS))
    out["curl"] = curl_loop(tmp, ep)
    res["drain"] = out


def curl_loop(tmp, ep):
    """The baseline: CURL_SAMPLE transactions of the same shape, each a
    batch of one in its own `curl` process (mTLS, the contract's headers),
    in a shell loop; the loop's wall time."""
    import hashlib
    d = os.path.join(tmp, "curl")
    os.makedirs(d)
    script = ["set -e"]
    before = ep.stats().get("items_ok", 0)
    for i in range(CURL_SAMPLE):
        tid = "CURL%022d" % i
        body = {"kiosk": "K0001", "transactions": [{
            "id": tid, "type": "bench.topup", "created": "2026-12-04T15:20:00.000Z",
            "payload": {"card": "8860012345", "amount_fen": 5000, "order": "P-C%07d" % i}}]}
        path = os.path.join(d, "%d.json" % i)
        with open(path, "w") as f:
            json.dump(body, f, separators=(",", ":"))
        key = hashlib.sha256((tid + "\n").encode()).hexdigest()
        script.append(
            "curl -sS --fail -o /dev/null -w '%%{http_code}\\n' --cacert %s --cert %s --key %s "
            "-H 'Content-Type: application/json' -H 'X-Kiosk-Id: K0001' "
            "-H 'Idempotency-Key: %s' --data-binary @%s %s/transactions" % (
                ep.ca_file, ep.client_cert, ep.client_key, key, path, ep.url))
    sh = os.path.join(d, "loop.sh")
    with open(sh, "w") as f:
        f.write("\n".join(script) + "\n")
    log("run.py: drain baseline: %d curl processes, one transaction each" % CURL_SAMPLE)
    t0 = time.monotonic()
    p = subprocess.run(["/bin/sh", sh], capture_output=True, text=True, timeout=600)
    t = time.monotonic() - t0
    codes = p.stdout.split()
    if p.returncode != 0 or codes != ["200"] * CURL_SAMPLE:
        raise HarnessError("the curl loop failed (exit %d): %s %s" % (
            p.returncode, p.stderr.strip()[:300], " ".join(sorted(set(codes)))))
    ok = ep.stats().get("items_ok", 0) - before
    if ok != CURL_SAMPLE:
        raise HarnessError("the curl loop: %d items ok at the endpoint, want %d" % (
            ok, CURL_SAMPLE))
    return {"n": CURL_SAMPLE, "s": t, "per_txn_ms": t / CURL_SAMPLE * 1000,
            "version": subprocess.run(["curl", "--version"], capture_output=True,
                                      text=True).stdout.split("\n")[0]}


def cpu_s(pid):
    """User + system CPU seconds of a process (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_reading(pid):
    st = proc_status("/proc/%d/status" % pid)
    return {k: kib(st[k]) for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")
            if k in st}


def backlog_measurements(build, tmp, notify, ep, target, res):
    """For BACKLOG_SMALL and then target transactions queued (the endpoint
    down all along, so nothing leaves): fill through kioskd, restart it on
    that database, and read VmRSS 2 s after READY, then after status,
    queue.list and a sync.kick (a delivery attempt that fails)."""
    ep.down()
    out = []
    for n in (BACKLOG_SMALL, target):
        base = os.path.join(tmp, "backlog%d" % n)
        conf = bench_conf(base, endpoint_drop_in(ep, startup_delay_ms=0))
        d = Daemon(build, base, notify, conf, name="kioskd-backlog")
        d.start()
        ui = os.path.join(d.run_dir, "ui.sock")
        log("run.py: rss: %d transactions queued with the endpoint down" % n)
        t0 = time.monotonic()
        done, stopped = 0, None
        while done < n:
            step = min(BACKLOG_STEP, n - done)
            fill(build, ui, step, "the backlog fill", d)
            done += step
            el = time.monotonic() - t0
            if done < n and el * (done + step) / done > BACKLOG_FILL_BUDGET_S:
                stopped = el
                break
        fill_s = time.monotonic() - t0
        filling = rss_reading(d.pid)
        d.stop_clean()
        size = sum(os.path.getsize(p) for p in glob.glob(
            os.path.join(d.state_dir, "kioskd.db*")))
        log("run.py: rss: restart on %d queued" % done)
        ready_ms = d.start(timeout=300) / 1e6
        try:
            time.sleep(RSS_DELAY_S)
            after_start = rss_reading(d.pid)
            admin = Client(os.path.join(d.run_dir, "admin.sock"))
            t = time.monotonic()
            admin.call("status")
            status_ms = (time.monotonic() - t) * 1000
            t = time.monotonic()
            counts = admin.call("queue.list")["counts"]
            list_ms = (time.monotonic() - t) * 1000
            after_calls = rss_reading(d.pid)
            admin.call("sync.kick")
            time.sleep(0.5)
            admin.call("sync.status")
            after_kick = rss_reading(d.pid)
            admin.close()
            d.check_alive("the backlog readings")
            d.stop_clean()
        finally:
            d.kill()
        if counts.get("queued", 0) + counts.get("sending", 0) != done:
            raise HarnessError("rss: %d submitted, queue counts %s" % (done, counts))
        out.append({"n": done, "wanted": n, "stopped_at_s": stopped, "fill_s": fill_s,
                    "fill_rate": done / fill_s, "db_bytes": size, "filling": filling,
                    "ready_ms": ready_ms, "status_ms": status_ms, "queue_list_ms": list_ms,
                    "after_start": after_start, "after_calls": after_calls,
                    "after_kick": after_kick, "counts": counts,
                    "rss_kib": max(after_start["VmRSS"], after_calls["VmRSS"],
                                   after_kick["VmRSS"])})
    res["rss_backlog"] = out


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
        if name not in res.get("hello", {}):
            continue
        h = res["hello"][name]
        k50, r50 = h["kioskd"]["p50_us"], h["raw"]["p50_us"]
        k99, r99 = h["kioskd"]["p99_us"], h["raw"]["p99_us"]
        row("hello p50, %s (us)" % label, fmt(k50), fmt(r50) + " (raw)",
            "%.2fx" % (k50 / r50), "<= %.1fx" % HELLO_RATIO_MAX, k50 / r50 <= HELLO_RATIO_MAX)
        row("hello p99, %s (us)" % label, fmt(k99), fmt(r99) + " (raw)",
            "%.2fx" % (k99 / r99), "-", None)

    if "fanout" in res:
        f = res["fanout"]
        d50, d99 = f["delivery"]["p50_us"], f["delivery"]["p99_us"]
        i50, i99 = f["inject_rtt"]["p50_us"], f["inject_rtt"]["p99_us"]
        n = f["subscribers"]
        row("fan-out x%d p50 (us)" % n, fmt(d50), fmt(i50) + " (inject)",
            "%.1fx" % (d50 / i50), "-", None)
        row("fan-out x%d p99 (us)" % n, fmt(d99), fmt(i99) + " (inject)",
            "%.1fx" % (d99 / i99), "<= %.0f us" % FANOUT_P99_MAX_US, d99 <= FANOUT_P99_MAX_US)

    if "rss" in res:
        rss = res["rss"]["VmRSS"] / 1024.0
        row("idle RSS (MiB)", fmt(rss, 2), "-", "-", "<= %.1f MiB" % RSS_MAX_MIB,
            rss <= RSS_MAX_MIB)

    if "ready" in res:
        rm = statistics.median(res["ready"]["ms"])
        tm = statistics.median(res["ready"]["true_ms"])
        row("start to READY median (ms)", fmt(rm, 2), fmt(tm, 2) + " (true)",
            "%.1fx" % (rm / tm), "<= %.0f ms" % READY_MAX_MS, rm <= READY_MAX_MS)

    if "wakeups" in res:
        w = res["wakeups"]
        row("wake-ups in %.0f s idle" % IDLE_WINDOW_S, str(w["measured"]),
            "%d (timers)" % w["expected"], "%.2fx" % (w["measured"] / max(1, w["expected"])),
            "<= %d" % (w["expected"] + WAKEUP_SLACK),
            w["measured"] <= w["expected"] + WAKEUP_SLACK)

    for st in res.get("store", []):
        # on tmpfs fsync is free: the rows are shown, but they say nothing
        # about durability, so they carry no verdict; the other placements
        # than the first are shown next to it, without one either
        fs = "%s %s" % (st["fstype"], os.path.dirname(st["dir"]))
        for i, place in enumerate(st["order"]):
            pl = st["placements"][place]
            judged = not st["memory"] and i == 0
            why = "- (tmpfs)" if st["memory"] else "-"
            r1, r16 = pl["raw1"]["rate"], pl["raw16"]["rate"]
            k1, k16 = pl["kioskd1"]["rate"], pl["kioskd16"]["rate"]
            row("submits/s x1, %s CPU, %s" % (place, fs), fmt(k1, 0), fmt(r1, 0) + " (raw x1)",
                "%.2fx" % (k1 / r1), ">= %.1fx" % STORE_X1_MIN if judged else why,
                k1 / r1 >= STORE_X1_MIN if judged else None)
            rw = pl["rawwal1"]["rate"]
            row("submits/s x1, raw SQLite with kioskd's WAL writer, %s CPU, %s" % (place, fs),
                fmt(rw, 0), fmt(r1, 0) + " (raw x1)", "%.2fx" % (rw / r1), "-", None)
            rl = pl["relay1"]["rate"]
            row("submits/s x1, that behind a socket, %s CPU, %s" % (place, fs),
                fmt(rl, 0), fmt(r1, 0) + " (raw x1)", "%.2fx" % (rl / r1), "- (floor)", None)
            best, lab = (r1, "raw x1") if r1 >= r16 else (r16, "raw x16")
            row("submits/s x16, %s CPU, %s" % (place, fs), fmt(k16, 0),
                "%s (%s)" % (fmt(best, 0), lab), "%.1fx" % (k16 / best),
                ">= %.0fx" % STORE_X16_MIN if judged else why,
                k16 / best >= STORE_X16_MIN if judged else None)

    if "drain" in res:
        dr = res["drain"]
        curl = dr["curl"]["s"] / dr["curl"]["n"] * dr["txns"]
        row("drain %dk backlog (s)" % (dr["txns"] // 1000), fmt(dr["drain_s"], 2),
            "%s (curl, est.)" % fmt(curl, 0), "%.0fx" % (curl / dr["drain_s"]),
            ">= %.0fx faster" % DRAIN_MIN, curl / dr["drain_s"] >= DRAIN_MIN)

    if "rss_backlog" in res:
        small, large = res["rss_backlog"]
        a, b = small["rss_kib"] / 1024.0, large["rss_kib"] / 1024.0
        row("RSS, %s queued (MiB)" % count_label(large["n"]), fmt(b, 2),
            "%s (%s queued)" % (fmt(a, 2), count_label(small["n"])), "%.2fx" % (b / a),
            "<= %.0f, +<= %.0f MiB" % (BACKLOG_RSS_MAX_MIB, BACKLOG_RSS_SLACK_MIB),
            b <= BACKLOG_RSS_MAX_MIB and b - a <= BACKLOG_RSS_SLACK_MIB)

    for name in sorted(res.get("plugins", {})):
        for r in res["plugins"][name]:
            ratio = r.get("ratio")
            row(r["metric"], r["value"], r.get("baseline") or "-",
                "-" if ratio is None else "%.2fx" % ratio, r.get("target") or "-", r.get("ok"))

    widths = [max(len(r[i]) for r in rows + [HEADER]) + 2 for i in range(len(HEADER))]
    out = ["kioskd benchmarks (build: %s%s, %d cores, load average %s at start)" % (
        build, ", ASan: NOT representative" if res["asan"] else "", os.cpu_count(),
        res["loadavg"])]
    for r in [HEADER] + rows:
        out.append("".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(out)


HEADER = ("metric", "kioskd", "baseline", "ratio", "target", "verdict")


def count_label(n):
    if n % 1000000 == 0:
        return "%dM" % (n // 1000000)
    if n % 1000 == 0:
        return "%dk" % (n // 1000)
    return str(n)


def details(res):
    lines = [""]
    for name, h in res.get("hello", {}).items():
        lines.append(
            "hello (%s: client on CPU %d, kioskd and raw server on CPU %d): %d round trips "
            "each, %d-byte request, %d-byte reply; min/p90/p99.9 kioskd %.1f/%.1f/%.1f us, "
            "raw %.1f/%.1f/%.1f us" % (
                name, h["cpus"][0], h["cpus"][1], h["kioskd"]["n"], h["request_bytes"],
                h["reply_bytes"], h["kioskd"]["min_us"], h["kioskd"]["p90_us"],
                h["kioskd"]["p999_us"], h["raw"]["min_us"], h["raw"]["p90_us"],
                h["raw"]["p999_us"]))
    if "fanout" in res:
        f = res["fanout"]
        lines.append(
            "fan-out: %d events x %d subscribers (%d deliveries), %d us apart; first subscriber "
            "p50/p99 %.1f/%.1f us, last subscriber p50/p99 %.1f/%.1f us, max %.1f us" % (
                f["events"], f["subscribers"], f["delivery"]["n"], f["gap_us"],
                f["first"]["p50_us"], f["first"]["p99_us"], f["last"]["p50_us"],
                f["last"]["p99_us"], f["delivery"]["max_us"]))
    if "rss" in res:
        r = res["rss"]
        lines.append(
            "RSS: VmRSS %d KiB = anon %d + file %d + shmem %d KiB; VmHWM %d KiB; %d threads" % (
                r["VmRSS"], r.get("RssAnon", 0), r.get("RssFile", 0), r.get("RssShmem", 0),
                r.get("VmHWM", 0), r["threads"]))
    if "ready" in res:
        rd = res["ready"]
        lines.append(
            "READY: %d starts, min/median/max %.2f/%.2f/%.2f ms; /bin/true %.2f/%.2f/%.2f ms" % (
                len(rd["ms"]), min(rd["ms"]), statistics.median(rd["ms"]), max(rd["ms"]),
                min(rd["true_ms"]), statistics.median(rd["true_ms"]), max(rd["true_ms"])))
    if "wakeups" in res:
        w = res["wakeups"]
        lines += [
            "wake-ups: %d voluntary + %d involuntary over %.2f s; expected %d = %d watchdog "
            "pings (WATCHDOG_USEC=%d)%s; pings seen on NOTIFY_SOCKET: %d" % (
                w["voluntary"], w["nonvoluntary"], w["window_s"], w["expected"],
                w["expected_watchdog"], WATCHDOG_USEC,
                "".join(" + %d %s samples (%d ms)" % (n, what, ms)
                        for what, ms, n in w["expected_timers"]),
                w["watchdog_pings_seen"]),
            "  per thread: " + ", ".join("%s %d+%d" % (t, v, i)
                                         for t, (v, i) in sorted(w["per_thread"].items())),
        ]
    for st in res.get("store", []):
        lines.append(
            "store on %s (%s, %s at %s%s): %d rounds of %.0f s (+%.1f s warm-up) each, "
            "alternating; %s rows queued in kioskd's store at the end" % (
                st["dir"], st["fstype"], st["source"], st["mount"],
                ", in memory: fsync is free, not a durability figure" if st["memory"] else "",
                STORE_ROUNDS, STORE_SECONDS, STORE_WARMUP_S, st["queued"]))
        for place in st["order"]:
            pl, (client, server) = st["placements"][place], st["cpus"][place]
            lines.append(
                "  %s (client on CPU %s, kioskd and raw on CPU %s): per round submits/s "
                "kioskd x1 %s, x16 %s; raw x1 %s, x16 %s; raw with kioskd's WAL writer x1 %s; "
                "that behind a socket x1 %s; "
                "p50/p99 (ms) kioskd x1 %.2f/%.2f, x16 %.2f/%.2f; raw x1 %.2f/%.2f, "
                "x16 %.2f/%.2f; raw with kioskd's WAL writer x1 %.2f/%.2f; "
                "that behind a socket x1 %.2f/%.2f" % (
                    place, "any" if client is None else client,
                    "any" if server is None else server,
                    "/".join(fmt(x, 0) for x in pl["kioskd1"]["rates"]),
                    "/".join(fmt(x, 0) for x in pl["kioskd16"]["rates"]),
                    "/".join(fmt(x, 0) for x in pl["raw1"]["rates"]),
                    "/".join(fmt(x, 0) for x in pl["raw16"]["rates"]),
                    "/".join(fmt(x, 0) for x in pl["rawwal1"]["rates"]),
                    "/".join(fmt(x, 0) for x in pl["relay1"]["rates"]),
                    pl["kioskd1"]["p50_us"] / 1e3, pl["kioskd1"]["p99_us"] / 1e3,
                    pl["kioskd16"]["p50_us"] / 1e3, pl["kioskd16"]["p99_us"] / 1e3,
                    pl["raw1"]["p50_us"] / 1e3, pl["raw1"]["p99_us"] / 1e3,
                    pl["raw16"]["p50_us"] / 1e3, pl["raw16"]["p99_us"] / 1e3,
                    pl["rawwal1"]["p50_us"] / 1e3, pl["rawwal1"]["p99_us"] / 1e3,
                    pl["relay1"]["p50_us"] / 1e3, pl["relay1"]["p99_us"] / 1e3))
    if "drain" in res:
        dr, c = res["drain"], res["drain"]["curl"]
        e = dr["endpoint"]
        lines.append(
            "drain: %d queued with the endpoint down (fill %.1f s, %.0f/s), then up + sync.kick:"
            " first batch delivered after %.3f s, last sync.delivered at %.2f s, queue empty "
            "at %.2f s (%.0f txn/s); [endpoint bench] batch_size = %d, concurrency = %d; "
            "endpoint: %s applied, %s received, %s requests on %s connections, %s violations; "
            "kioskd VmHWM %d KiB" % (
                dr["txns"], dr["fill_s"], dr["fill_rate"], dr["first_s"], dr["events_s"],
                dr["drain_s"], dr["txns"] / dr["drain_s"], dr["batch_size"], dr["concurrency"],
                e["applied"], e["received"], e["requests"], e["connections"], dr["violations"],
                dr["vmhwm_kib"]))
        lines.append(
            "  CPU during the drain: kioskd %.2f s (%.0f%% of one core), endpoint (Python) "
            "%.2f s (%.0f%%), over %.2f s" % (
                dr["cpu_kioskd_s"], 100 * dr["cpu_kioskd_s"] / dr["drain_s"],
                dr["cpu_endpoint_s"], 100 * dr["cpu_endpoint_s"] / dr["drain_s"],
                dr["drain_s"]))
        lines.append(
            "  curl baseline: %d transactions, one curl process each (mTLS, batch of one): "
            "%.2f s, %.1f ms per transaction -> %.0f s for %d; %s" % (
                c["n"], c["s"], c["per_txn_ms"], c["per_txn_ms"] * dr["txns"] / 1000,
                dr["txns"], c["version"]))
    for b in res.get("rss_backlog", []):
        note = ""
        if b["n"] != b["wanted"]:
            note = " (STOPPED at %d of %d: the fill would pass %.0f s)" % (
                b["n"], b["wanted"], BACKLOG_FILL_BUDGET_S)
        lines.append(
            "backlog %d%s: fill %.1f s (%.0f/s), database %.1f MiB, RSS at the end of the fill "
            "%d KiB (anon %d, VmHWM %d KiB); restart: READY after %.0f ms, RSS %d KiB "
            "(anon %d + file %d + shmem %d); status %.1f ms, queue.list %.1f ms -> RSS %d KiB; "
            "sync.kick (endpoint down) -> RSS %d KiB, VmHWM %d KiB; counts %s" % (
                b["n"], note, b["fill_s"], b["fill_rate"], b["db_bytes"] / 2**20,
                b["filling"]["VmRSS"], b["filling"].get("RssAnon", 0), b["filling"]["VmHWM"],
                b["ready_ms"],
                b["after_start"]["VmRSS"], b["after_start"].get("RssAnon", 0),
                b["after_start"].get("RssFile", 0), b["after_start"].get("RssShmem", 0),
                b["status_ms"], b["queue_list_ms"], b["after_calls"]["VmRSS"],
                b["after_kick"]["VmRSS"], b["after_kick"]["VmHWM"],
                json.dumps(b["counts"], separators=(",", ":"))))
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------


def plugin_measurements(build, tmp, only, res):
    """The plugin sections: each module starts the real component it
    measures against (pcscd, the SANE test backend, ...) itself."""
    import importlib
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    for name in plugin_sections():
        if name not in only:
            continue
        log("run.py: plugin bench %s (tests/bench/plugin_%s.py)" % (name, name))
        d = os.path.join(tmp, "plugin-" + name)
        os.makedirs(d)
        mod = importlib.import_module("plugin_" + name)
        try:
            rows = mod.measure(build, d, log)
        except Exception as e:  # a broken component: a harness failure of this section
            raise HarnessError("plugin bench %s: %s: %s" % (name, type(e).__name__, e))
        res.setdefault("plugins", {})[name] = rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="absolute path of the build directory")
    ap.add_argument("--json", help="also write every measurement to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help="comma-separated sections to run (default: all): " + ",".join(SECTIONS))
    ap.add_argument("--store-dir", action="append", default=[],
                    help="also run the store rows with the databases in a new directory "
                         "under this one (repeatable)")
    ap.add_argument("--drain-batch-size", type=int, default=DRAIN_BATCH_SIZE,
                    help="batch_size of the drain's endpoint (default %d)" % DRAIN_BATCH_SIZE)
    ap.add_argument("--drain-concurrency", type=int, default=DRAIN_CONCURRENCY,
                    help="concurrency of the drain's endpoint (default %d)" % DRAIN_CONCURRENCY)
    ap.add_argument("--backlog", type=int, default=BACKLOG_LARGE,
                    help="queued transactions of the large RSS case (default %d)" % BACKLOG_LARGE)
    args = ap.parse_args()
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in only if x not in SECTIONS]
    if bad or not only:
        log("run.py: --only: unknown section %s (sections: %s)" % (
            ",".join(bad) or "(none)", ",".join(SECTIONS)))
        return 1
    if args.backlog < 2 * BACKLOG_SMALL:
        log("run.py: --backlog: at least %d" % (2 * BACKLOG_SMALL))
        return 1
    build = os.path.abspath(args.build)
    exe = os.path.join(build, "kioskd")
    if not os.access(exe, os.X_OK):
        log("run.py: %s is missing: build first (make bench)" % exe)
        return 1

    with open("/proc/loadavg") as f:
        res = {"asan": is_asan(exe), "loadavg": " ".join(f.read().split()[:3]),
               "sections": only}
    if res["asan"]:
        log("run.py: warning: %s is an ASan build; the numbers will not mean much" % exe)
    cp = read_conf(CONF)
    timers = periodic_timers(cp)

    tmp = tempfile.mkdtemp(prefix="kioskd-bench-")
    notify = Notify(os.path.join(tmp, "notify.sock"))
    d = None
    ep = None
    dirs = []
    ok = False
    try:
        t_start = time.monotonic()
        if {"idle", "hello", "fanout"} & set(only):
            # One daemon, started as systemd would with a 2 s watchdog: the
            # idle measurements first, while it is fresh, then the latency
            # benches.
            log("run.py: starting kioskd (%s)" % CONF)
            d = Daemon(build, os.path.join(tmp, "a"), notify, CONF,
                       {"WATCHDOG_USEC": str(WATCHDOG_USEC)})
            os.makedirs(d.tmp)
            d.start()
            if "idle" in only:
                log("run.py: idle RSS after %.0f s, then wake-ups over %.0f s" % (
                    RSS_DELAY_S, IDLE_WINDOW_S))
                idle_measurements(d, timers, res)
            ui = os.path.join(d.run_dir, "ui.sock")
            admin = os.path.join(d.run_dir, "admin.sock")
            if "hello" in only:
                log("run.py: hello round trips")
                res["hello"] = hello_measurements(build, d, ui)
            if "fanout" in only:
                log("run.py: event fan-out")
                res["fanout"] = run_bench(build, "bench_fanout", [
                    "--ui", ui, "--admin", admin, "--device", "qr0", "--topic", "barcode.*",
                    "--subscribers", str(FANOUT_SUBSCRIBERS), "--events", str(FANOUT_EVENTS)])
            d.check_alive("the benches")
            d.stop_clean()
            d = None

        if "ready" in only:
            log("run.py: %d starts to READY" % READY_STARTS)
            b = os.path.join(tmp, "b")
            os.makedirs(b)
            ready_measurements(build, b, notify, res)

        if "store" in only:
            dirs = store_dirs(tmp, build, args.store_dir)
            store_measurements(build, tmp, notify, dirs, res)

        if {"drain", "rss"} & set(only):
            sys.path.insert(0, os.path.join(REPO, "tests", "endpoint"))
            from endpoint import Endpoint
            log("run.py: starting the reference endpoint (tests/endpoint)")
            ep = Endpoint(os.path.join(tmp, "endpoint")).start()
            if "drain" in only:
                drain_measurements(build, tmp, notify, ep, res, args.drain_batch_size,
                                   args.drain_concurrency)
            if "rss" in only:
                backlog_measurements(build, tmp, notify, ep, args.backlog, res)
            if ep.stop() != 0:
                raise HarnessError("the reference endpoint did not stop cleanly:\n" +
                                   ep.log_tail())
            ep = None
        plugin_measurements(build, tmp, only, res)
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
        for x in Daemon.live:
            x.kill()
        if ep:
            ep.kill()
        notify.close()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
            for sd, _ in dirs[1:]:
                shutil.rmtree(sd, ignore_errors=True)
        else:
            log("run.py: temporary files kept in %s" % " ".join(
                [tmp] + [sd for sd, _ in dirs[1:]]))
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
