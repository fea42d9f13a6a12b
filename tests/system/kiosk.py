"""A small test harness for kioskd: start a daemon on a private directory,
talk the line protocol to it, stop it and check its log.

Standard library only (Debian's /usr/bin/python3).  Every wait polls with a
deadline; nothing sleeps for a fixed time longer than a few milliseconds.
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BUILD = os.path.abspath(os.environ.get(
    "KIOSKD_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build")))
KIOSKD = os.path.join(BUILD, "kioskd")
TEST_PLUGINS = os.path.join(BUILD, "tests", "plugins")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# A sanitizer build runs several times slower: scale the deadlines.
SAN = os.path.basename(BUILD.rstrip("/")).endswith("asan")
SLOW = 4.0 if SAN else 1.0

# What a sanitizer writes when it finds something.
SANITIZER_PATTERNS = [
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "WARNING: ThreadSanitizer",
]

# Environment a daemon must not inherit from whoever runs the tests.
_SCRUB = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
          "LISTEN_FDNAMES", "JOURNAL_STREAM", "RUNTIME_DIRECTORY", "STATE_DIRECTORY",
          "KIOSKCTL_SOCKET")


def deadline(seconds):
    return time.monotonic() + seconds * SLOW


def wait_until(pred, timeout=5.0, what="condition", interval=0.01):
    """Poll pred() until it returns a true value; return that value."""
    end = deadline(timeout)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


def base_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    # Pass sanitizer settings through; give sane defaults otherwise.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
    return env


def sanitizer_report(text):
    """The first sanitizer finding in text, or None."""
    for p in SANITIZER_PATTERNS:
        i = text.find(p)
        if i >= 0:
            return text[max(0, i - 200):i + 3000]
    return None


def assert_no_sanitizer(text, who="kioskd"):
    rep = sanitizer_report(text)
    assert rep is None, "%s: sanitizer report:\n%s" % (who, rep)


def run_kioskd(args, env=None, timeout=10):
    """Run kioskd to completion (--check-config, --version, ...):
    (returncode, stdout, stderr).  Fails on any sanitizer report."""
    p = subprocess.run([KIOSKD] + list(args), env=base_env(env), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout * SLOW)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    assert_no_sanitizer(err)
    return p.returncode, out, err


class ProtocolEOF(Exception):
    pass


class Client:
    """One connection speaking JSON lines.  Messages read while looking for
    something else are kept in self.inbox (replies, progress) and
    self.events, so nothing is lost."""

    def __init__(self, path, connect=True):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.buf = b""
        self.inbox = []   # replies and progress not yet taken
        self.events = []  # events not yet taken
        self.eof = False
        self.next_id = 1
        if connect:
            self.sock.connect(path)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # --- sending ---
    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw(json.dumps(obj, separators=(",", ":")) + "\n")

    def request(self, cmd, device=None, args=None, timeout_ms=None, id=None):
        if id is None:
            id = self.next_id
            self.next_id += 1
        msg = {"id": id, "cmd": cmd}
        if device is not None:
            msg["device"] = device
        if args is not None:
            msg["args"] = args
        if timeout_ms is not None:
            msg["timeout_ms"] = timeout_ms
        self.send(msg)
        return id

    # --- receiving ---
    def _fill(self, end):
        """Read what is there (waiting until end): False on EOF/timeout."""
        if self.eof:
            raise ProtocolEOF("connection closed by the daemon")
        left = end - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            return False
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            self._split()
            return True
        self.buf += data
        self._split()
        return True

    def _split(self):
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line.decode("utf-8"))
            if isinstance(msg, dict) and "event" in msg:
                self.events.append(msg)
            else:
                self.inbox.append(msg)

    def _take(self, box, pred):
        for i, m in enumerate(box):
            if pred(m):
                return box.pop(i)
        return None

    def wait_msg(self, pred, timeout=5.0, box="inbox", what="message"):
        end = deadline(timeout)
        while True:
            m = self._take(getattr(self, box), pred)
            if m is not None:
                return m
            if self.eof:
                raise ProtocolEOF("EOF while waiting for %s; got %r / events %r"
                                  % (what, self.inbox, self.events[-5:]))
            if not self._fill(end) and time.monotonic() >= end:
                raise AssertionError("timed out waiting for %s; inbox %r" % (what, self.inbox))

    def reply(self, id, timeout=5.0):
        """The final reply (one with "ok") to request id."""
        return self.wait_msg(lambda m: "ok" in m and m.get("id") == id, timeout,
                             what="reply to id %r" % (id,))

    def next_reply(self, timeout=5.0):
        return self.wait_msg(lambda m: "ok" in m, timeout, what="any reply")

    def call(self, cmd, device=None, args=None, timeout_ms=None, timeout=5.0):
        id = self.request(cmd, device, args, timeout_ms)
        return self.reply(id, timeout)

    def ok(self, cmd, device=None, args=None, timeout_ms=None, timeout=5.0):
        """call() that must succeed: returns the result."""
        r = self.call(cmd, device, args, timeout_ms, timeout)
        assert r.get("ok") is True, "%s %s -> %r" % (cmd, device or "", r)
        return r["result"]

    def err(self, cmd, device=None, args=None, timeout_ms=None, timeout=5.0):
        """call() that must fail: returns the error object."""
        r = self.call(cmd, device, args, timeout_ms, timeout)
        assert r.get("ok") is False, "%s %s should fail: %r" % (cmd, device or "", r)
        assert set(r) == {"id", "ok", "error"}, r
        return r["error"]

    def event(self, topic=None, device=None, pred=None, timeout=5.0):
        def match(m):
            return ((topic is None or m["event"] == topic)
                    and (device is None or m.get("device") == device)
                    and (pred is None or pred(m)))
        return self.wait_msg(match, timeout, box="events",
                             what="event %s/%s" % (topic, device))

    def drain(self, quiet=0.05):
        """Read whatever arrives until quiet for `quiet` seconds."""
        while not self.eof and self._fill(time.monotonic() + quiet):
            pass

    def expect_eof(self, timeout=5.0):
        """Read until the daemon closes the connection."""
        end = deadline(timeout)
        while not self.eof:
            if not self._fill(end) and time.monotonic() >= end:
                raise AssertionError("connection not closed by the daemon; inbox %r"
                                     % (self.inbox,))
        return self.inbox


class Daemon:
    """One kioskd on a private directory: tmp/kioskd.conf, tmp/run, tmp/state,
    stderr in tmp/stderr.log, sd_notify datagrams on tmp/notify.sock."""

    def __init__(self, conf="", dropins=None, env=None, args=None, runtime_dir=True,
                 state_dir=True, tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="kd-", dir="/tmp")
        self.conf_path = os.path.join(self.tmp, "kioskd.conf")
        self.run_dir = os.path.join(self.tmp, "run")
        self.state_dir = os.path.join(self.tmp, "state")
        self.log_path = os.path.join(self.tmp, "stderr.log")
        self.notify_path = os.path.join(self.tmp, "notify.sock")
        self.write_conf(conf, dropins)
        self.extra_env = dict(env or {})
        self.extra_args = list(args or [])
        self.use_runtime_arg = runtime_dir
        self.use_state_arg = state_dir
        self.proc = None
        self.stopping = False
        self.notify_sock = None
        self.notifications = []  # every datagram received, in order
        self.returncode = None
        self.clients = []
        self.logfile = None

    # --- configuration ---
    def write_conf(self, conf, dropins=None):
        with open(self.conf_path, "w") as f:
            f.write(conf)
        for rel, text in (dropins or {}).items():
            p = os.path.join(self.tmp, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)

    @property
    def ui_sock(self):
        return os.path.join(self.run_dir, "ui.sock")

    @property
    def admin_sock(self):
        return os.path.join(self.run_dir, "admin.sock")

    @property
    def pid(self):
        return self.proc.pid

    def argv(self):
        a = [KIOSKD, "--config", self.conf_path]
        if self.use_runtime_arg:
            a += ["--runtime-dir", self.run_dir]
        if self.use_state_arg:
            a += ["--state-dir", self.state_dir]
        return a + self.extra_args

    # --- start / stop ---
    def start(self, wait_ready=True, timeout=10.0):
        self.stopping = False
        self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if os.path.exists(self.notify_path):
            os.unlink(self.notify_path)
        self.notify_sock.bind(self.notify_path)
        env = {"NOTIFY_SOCKET": self.notify_path}
        env.update(self.extra_env)
        self.logfile = open(self.log_path, "ab")
        if "JOURNAL_STREAM" in env and env["JOURNAL_STREAM"] == "auto":
            st = os.fstat(self.logfile.fileno())
            env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        self.proc = subprocess.Popen(self.argv(), env=base_env(env), stdin=subprocess.DEVNULL,
                                     stdout=self.logfile, stderr=self.logfile)
        if wait_ready:
            self.wait_notify("READY=1", timeout)
        return self

    def poll_notify(self):
        while True:
            r, _, _ = select.select([self.notify_sock], [], [], 0)
            if not r:
                return
            data = self.notify_sock.recv(4096)
            self.notifications.append(data.decode("utf-8", "replace"))

    def notify_lines(self):
        self.poll_notify()
        return [l for d in self.notifications for l in d.split("\n") if l]

    def wait_notify(self, line, timeout=5.0):
        """Wait for a datagram holding the line `line` (e.g. READY=1)."""
        end = deadline(timeout)
        while True:
            self.poll_notify()
            if line in self.notify_lines():
                return
            if self.proc.poll() is not None:
                raise AssertionError("kioskd exited with %s before %s; log:\n%s"
                                     % (self.proc.returncode, line, self.log()))
            if time.monotonic() > end:
                raise AssertionError("no %s from kioskd; notifications %r; log:\n%s"
                                     % (line, self.notifications, self.log()))
            select.select([self.notify_sock], [], [], 0.02)

    def wait_exit(self, timeout=10.0):
        try:
            self.returncode = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("kioskd did not exit; log:\n%s" % self.log())
        return self.returncode

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        self.proc.send_signal(sig)

    def stop(self, expect_rc=0, timeout=10.0):
        """SIGTERM, wait, check the exit code and the log."""
        # one SIGTERM only: a second one during the stop would kill it
        if self.proc.poll() is None and not self.stopping:
            self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        self.close_clients()
        self.check_log()
        if expect_rc is not None:
            assert rc == expect_rc, "kioskd exit code %r, expected %r; log:\n%s" % (
                rc, expect_rc, self.log())
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close_clients(self):
        for c in self.clients:
            c.close()
        self.clients = []

    def cleanup(self, keep=False):
        self.kill()
        self.close_clients()
        if self.notify_sock:
            self.notify_sock.close()
        if self.logfile:
            self.logfile.close()
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- inspection ---
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def check_log(self):
        assert_no_sanitizer(self.log())

    def log_lines(self, pattern):
        rx = re.compile(pattern)
        return [l for l in self.log().splitlines() if rx.search(l)]

    def wait_log(self, pattern, timeout=5.0):
        return wait_until(lambda: self.log_lines(pattern), timeout, "log line /%s/" % pattern)

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    # --- clients ---
    def client(self, admin=False):
        c = Client(self.admin_sock if admin else self.ui_sock)
        self.clients.append(c)
        return c

    def admin(self):
        return self.client(admin=True)

    def device(self, name, admin=None):
        """devices.list entry of name (or None)."""
        c = admin or self.admin()
        for d in c.ok("devices.list")["devices"]:
            if d["name"] == name:
                return d
        return None

    def wait_state(self, name, state, timeout=5.0, client=None):
        c = client or self.admin()
        last = {}

        def check():
            last["d"] = self.device(name, c)
            return last["d"] and last["d"]["state"] == state

        try:
            wait_until(check, timeout, "device %s %s" % (name, state), interval=0.02)
        except AssertionError:
            raise AssertionError("device %s never became %s: %r" % (name, state, last.get("d")))
        return last["d"]


def sim_device(name, cls, **opts):
    """A [device NAME] section on the simulator plugin."""
    lines = ["[device %s]" % name, "class = %s" % cls, "plugin = sim"]
    lines += ["%s = %s" % (k, v) for k, v in opts.items()]
    return "\n".join(lines) + "\n\n"


def daemon_section(**keys):
    lines = ["[daemon]"] + ["%s = %s" % (k, v) for k, v in keys.items()]
    return "\n".join(lines) + "\n\n"


def hexid(s):
    return bool(re.fullmatch(r"[0-9a-f]{64}", s or ""))
