"""The cups plugin against a real cupsd.

Every module run starts its own cupsd (cups-daemon) on a private
ServerRoot, spool, log and state directory, listening only on a Unix
socket in that directory; CUPS_SERVER points lpadmin/lpstat and kioskd's
libcups at it.  Queues are raw queues made with `lpadmin -m raw` (CUPS 2.4
warns that raw queues are deprecated, but still makes them).

Why not a `file:///…/out.prn` device: on a raw queue cupsd runs no filter,
and the scheduler writes a file: device only from a filter's output (see
scheduler/job.c), so the job "completes" and the file stays empty.  The
queues therefore use a tiny CUPS backend written here, `kiosktest:`, in a
private ServerBin (the real daemon helpers are symlinked beside it): cupsd
runs it like any backend, and it copies the job's bytes to the file named
in its device URI.  Files beside that output steer it: `hold` keeps the job
processing until removed, `fail` makes the backend fail (like a printer
that errors out).  It also records argv[4] (copies) and argv[5] (options).
"""

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import kiosk
from kiosk import daemon_section, wait_until

PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(300) + b"\xff\xd9"

BACKEND = r"""#!/bin/sh
# kiosktest CUPS backend (tests only): copy the job to the file named by
# the device URI, kiosktest:/path/out.prn
if [ $# -eq 0 ]; then
	echo 'direct kiosktest "Unknown" "kioskd test capture"'
	exit 0
fi
out=${DEVICE_URI#kiosktest:}
dir=$(dirname "$out")
printf '%s\n%s\n%s\n' "$4" "$5" "$CONTENT_TYPE" > "$out.argv"
while [ -e "$dir/hold" ]; do sleep 0.02; done
if [ -e "$dir/fail" ]; then
	echo "ERROR: simulated printer failure" >&2
	exit 1
fi
if [ $# -ge 6 ]; then cat "$6"; else cat; fi > "$out.part" && mv "$out.part" "$out"
"""


class Cupsd:
    """One private cupsd: start(), queue(), stop() (by PID)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.sock = os.path.join(tmp, "cups.sock")
        self.proc = None
        self.env = dict(os.environ, CUPS_SERVER=self.sock)

    def _write(self, rel, text, mode=0o644):
        path = os.path.join(self.tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def start(self):
        t = self.tmp
        os.chmod(t, 0o755)
        for d in ("root/ppd", "spool/tmp", "log", "state", "cache", "bin/backend"):
            os.makedirs(os.path.join(t, d), exist_ok=True)
        for d in ("daemon", "notifier", "cgi-bin", "filter", "monitor"):
            if os.path.exists("/usr/lib/cups/" + d):
                os.symlink("/usr/lib/cups/" + d, os.path.join(t, "bin", d))
        # 0700 and owned by root: cupsd runs it as root, which can write
        # into the test's directory (lp could not)
        self._write("bin/backend/kiosktest", BACKEND, 0o700)
        files = self._write("cups-files.conf", "\n".join([
            "FileDevice Yes", "ServerRoot %s/root" % t, "ServerBin %s/bin" % t,
            "RequestRoot %s/spool" % t, "TempDir %s/spool/tmp" % t, "StateDir %s/state" % t,
            "CacheDir %s/cache" % t, "ErrorLog %s/log/error_log" % t,
            "AccessLog %s/log/access_log" % t, "PageLog %s/log/page_log" % t,
            "Printcap %s/printcap" % t, "LogFileGroup root", "SystemGroup root", ""]))
        conf = self._write("cupsd.conf", "\n".join([
            "Listen %s" % self.sock, "LogLevel info", "MaxLogSize 0", "Browsing No", "WebInterface No",
            "<Location />", "  Order allow,deny", "  Allow all", "</Location>",
            "<Policy default>", "  <Limit All>", "    Order deny,allow", "  </Limit>",
            "</Policy>", ""]))
        self.log = open(os.path.join(t, "log", "cupsd.out"), "ab")
        self.proc = subprocess.Popen(["/usr/sbin/cupsd", "-f", "-c", conf, "-s", files],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, cwd=t)
        # lpstat -r exits 0 either way: read what it says
        wait_until(lambda: self._died() or self.run(["lpstat", "-r"], check=False).stdout
                   == b"scheduler is running\n", 15, "cupsd to answer")
        assert self.proc.poll() is None, "cupsd exited: %s" % self.error_log()[-2000:]
        return self

    def _died(self):
        return self.proc.poll() is not None

    def run(self, argv, check=True):
        p = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if check:
            assert p.returncode == 0, "%s: %s %s" % (argv, p.stdout, p.stderr)
        return p

    def queue(self, name, *lpadmin_args):
        """A raw queue on the kiosktest backend; returns its directory."""
        qdir = os.path.join(self.tmp, "q-" + name)
        os.makedirs(qdir, exist_ok=True)
        self.run(["lpadmin", "-p", name, "-E", "-v", "kiosktest:%s/out.prn" % qdir,
                  "-m", "raw"] + list(lpadmin_args))
        return qdir

    def jobs(self, queue, which="not-completed"):
        """Job ids lpstat lists for queue (which: not-completed, completed)."""
        out = self.run(["lpstat", "-W", which, "-o", queue]).stdout.decode()
        return [int(l.split()[0].rsplit("-", 1)[1]) for l in out.splitlines() if l.strip()]

    def error_log(self):
        try:
            with open(os.path.join(self.tmp, "log", "error_log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()


@pytest.fixture(scope="module")
def cupsd():
    tmp = tempfile.mkdtemp(prefix="kd-cupsd-", dir="/tmp")
    c = Cupsd(tmp)
    try:
        yield c.start()
    finally:
        c.stop()
        if not os.environ.get("KIOSKD_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


_n = [0]


@pytest.fixture
def qname():
    """A queue name of its own for each test."""
    _n[0] += 1
    return "kq%d" % _n[0]


def conf(queue, poll_ms=30, **extra):
    text = daemon_section(log_level="debug", reopen_min_ms=50, reopen_max_ms=200)
    text += "[device a4]\nclass = printer\nplugin = cups\nqueue = %s\npoll_ms = %d\n" % (
        queue, poll_ms)
    text += "".join("%s = %s\n" % kv for kv in extra.items())
    return text


def start(kd, cupsd, queue, **extra):
    d = kd(conf(queue, **extra), env={"CUPS_SERVER": cupsd.sock})
    return d


def put_blob(d, data):
    """Store a blob the way the daemon does with no store key: a plain file
    named by its sha256 (a camera or scanner would have made it)."""
    id = hashlib.sha256(data).hexdigest()
    blobs = os.path.join(d.state_dir, "blobs")
    os.makedirs(blobs, exist_ok=True)
    path = os.path.join(blobs, id)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
    return id


def read(path):
    with open(path, "rb") as f:
        return f.read()


def read_for(c, seconds):
    """Read whatever arrives for that long (drain() would never end while
    a flapping device keeps sending events)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c._fill(end)


def test_pdf_reaches_the_printer_byte_for_byte(kd, cupsd, qname):
    qdir = cupsd.queue(qname)
    d = start(kd, cupsd, qname)
    d.wait_state("a4", "ready")
    ui = d.client()
    ui.ok("events.subscribe", args={"topics": ["printer.*"]})
    doc = put_blob(d, PDF)
    id = ui.request("printer.print", "a4", {"document": doc, "copies": 2, "media": "A4"})
    r = ui.reply(id, timeout=20)
    assert r["ok"] is True, r
    res = r["result"]
    assert res["state"] == "completed" and res["format"] == "application/pdf"
    assert res["bytes"] == len(PDF) and res["copies"] == 2
    assert read(os.path.join(qdir, "out.prn")) == PDF
    copies, opts, ctype = read(os.path.join(qdir, "out.prn.argv")).decode().splitlines()
    assert copies == "2" and "media=iso_a4_210x297mm" in opts.split()
    assert ctype == "application/pdf"
    assert res["job_id"] in cupsd.jobs(qname, "completed")
    # progress: pending first, completed never (that is the reply)
    seen = [m["progress"] for m in ui.inbox if m.get("id") == id and "progress" in m]
    assert seen and seen[0] == {"job_id": res["job_id"], "state": "pending"}
    ev = ui.event("printer.job_state", "a4", lambda m: m["data"]["state"] == "completed")
    assert ev["data"] == {"job_id": res["job_id"], "state": "completed"}
    # the queue goes back to idle a moment after its job completed: the
    # status follows with the plugin's next look at the queue
    last = {}

    def idle():
        last["st"] = ui.ok("printer.status", "a4")
        return last["st"]["queue_state"] == "idle"

    wait_until(idle, 10, "queue idle after the job")
    st = last["st"]
    assert st["queue"] == qname and st["accepting"] is True
    assert st["printed_jobs"] == 1 and st["job_id"] is None
    # no document bytes or blob ids in the log
    assert doc not in d.log() and doc[:8] not in d.log()


@pytest.mark.parametrize("data,fmt", [(PNG, "image/png"), (JPEG, "image/jpeg")])
def test_images_print_as_their_type(kd, cupsd, qname, data, fmt):
    qdir = cupsd.queue(qname)
    d = start(kd, cupsd, qname)
    d.wait_state("a4", "ready")
    res = d.client().ok("printer.print", "a4", {"document": put_blob(d, data)}, timeout=20)
    assert res["format"] == fmt and res["copies"] == 1
    assert read(os.path.join(qdir, "out.prn")) == data
    # the document-format kioskd sent is the type cupsd hands the backend
    assert read(os.path.join(qdir, "out.prn.argv")).decode().splitlines()[2] == fmt


def test_bad_input_is_refused(kd, cupsd, qname):
    cupsd.queue(qname)
    d = start(kd, cupsd, qname)
    d.wait_state("a4", "ready")
    ui = d.client()
    doc = put_blob(d, PDF)
    text = put_blob(d, b"hello, this is plain text, not a PDF\n")
    cases = [
        ({"document": text}, "is not a PDF, PNG or JPEG"),
        ({"document": put_blob(d, b"")}, "is not a PDF, PNG or JPEG"),
        ({"document": "ab" * 32}, "no such blob"),
        ({"document": "../../etc/passwd"}, "document: must be a blob id"),
        ({"document": doc, "copies": 0}, "copies: must be between 1 and 99"),
        ({"document": doc, "copies": 100}, "copies: must be between 1 and 99"),
        ({"document": doc, "copies": "2"}, "copies: must be an integer"),
        ({"document": doc, "media": "A0"}, "media: must be one of"),
        ({"document": doc, "color": True}, "unknown argument 'color' for print"),
        ({"document": doc, "blocks": [{"text": "x"}]}, "exactly one of 'blocks' or 'document'"),
        ({"blocks": [{"text": "x"}], "copies": 2}, "copies: only with 'document'"),
        ({"blocks": [{"text": "x"}]}, "A4 printer"),
        ({}, "missing argument 'blocks'"),
    ]
    for args, want in cases:
        e = ui.err("printer.print", "a4", args)
        assert e["code"] == "bad_request", (args, e)
        assert want in e["message"], (args, e)
    assert cupsd.jobs(qname) == [] and cupsd.jobs(qname, "completed") == []
    # still serving
    assert ui.ok("printer.print", "a4", {"document": doc}, timeout=20)["state"] == "completed"


def test_cancel_a_held_job(kd, cupsd, qname):
    qdir = cupsd.queue(qname, "-o", "job-hold-until-default=indefinite")
    d = start(kd, cupsd, qname)
    d.wait_state("a4", "ready")
    ui = d.client()
    id = ui.request("printer.print", "a4", {"document": put_blob(d, PDF)})
    held = ui.wait_msg(lambda m: m.get("id") == id and m.get("progress", {}).get("state")
                       == "held", timeout=10, what="held progress")
    job = held["progress"]["job_id"]
    assert cupsd.jobs(qname) == [job]
    ui.ok("cancel", args={"target": id})
    e = ui.reply(id)
    assert e["ok"] is False and e["error"]["code"] == "cancelled", e
    wait_until(lambda: cupsd.jobs(qname) == [], 10, "job gone from the queue")
    assert job in cupsd.jobs(qname, "completed")  # lpstat lists cancelled jobs there
    assert '[Job %d] Canceled by "' % job in cupsd.error_log()
    assert not os.path.exists(os.path.join(qdir, "out.prn"))
    # the device takes the next job
    wait_until(lambda: d.device("a4")["state"] == "ready", 5, "ready again")


def test_cancel_while_processing_and_timeout(kd, cupsd, qname):
    qdir = cupsd.queue(qname)
    open(os.path.join(qdir, "hold"), "w").close()
    d = start(kd, cupsd, qname)
    d.wait_state("a4", "ready")
    ui = d.client()
    id = ui.request("printer.print", "a4", {"document": put_blob(d, PDF)})
    job = ui.wait_msg(lambda m: m.get("id") == id and m.get("progress", {}).get("state")
                      == "processing", timeout=10, what="processing progress")["progress"]["job_id"]
    assert d.device("a4")["status"]["job_state"] == "processing"
    ui.ok("cancel", args={"target": id})
    assert ui.reply(id)["error"]["code"] == "cancelled"
    wait_until(lambda: cupsd.jobs(qname) == [], 10, "job gone from the queue")
    assert '[Job %d] Canceled by "' % job in cupsd.error_log()
    # a timeout cancels the CUPS job too
    id = ui.request("printer.print", "a4", {"document": put_blob(d, PNG)}, timeout_ms=700)
    assert ui.reply(id, timeout=10)["error"]["code"] == "timeout"
    wait_until(lambda: cupsd.jobs(qname) == [], 10, "timed-out job cancelled in CUPS")
    os.unlink(os.path.join(qdir, "hold"))
    assert not os.path.exists(os.path.join(qdir, "out.prn"))


def test_job_aborted_by_cups_is_a_device_error(kd, cupsd, qname):
    qdir = cupsd.queue(qname, "-o", "printer-error-policy=abort-job")
    open(os.path.join(qdir, "fail"), "w").close()
    d = start(kd, cupsd, qname)
    d.wait_state("a4", "ready")
    ui = d.client()
    e = ui.err("printer.print", "a4", {"document": put_blob(d, PDF)}, timeout=20)
    assert e["code"] == "device_error" and "aborted" in e["message"], e
    os.unlink(os.path.join(qdir, "fail"))
    assert ui.ok("printer.print", "a4", {"document": put_blob(d, PDF)}, timeout=20)


def test_printer_error_fails_the_job_and_cancels_it(kd, cupsd, qname):
    """The default error policy: the backend fails, CUPS 2.4 holds the job
    to retry it in 300 s.  kioskd answers device_error with CUPS' words at
    once and cancels the job, so it never prints after the customer left."""
    qdir = cupsd.queue(qname)
    open(os.path.join(qdir, "fail"), "w").close()
    d = start(kd, cupsd, qname)
    d.wait_state("a4", "ready")
    ui = d.client()
    e = ui.err("printer.print", "a4", {"document": put_blob(d, PDF)}, timeout=20)
    assert e["code"] == "device_error", e
    assert "held by CUPS: simulated printer failure; cancelled" in e["message"], e
    wait_until(lambda: cupsd.jobs(qname) == [], 10, "failed job cancelled")
    os.unlink(os.path.join(qdir, "fail"))
    assert d.device("a4")["state"] == "ready"
    assert ui.ok("printer.print", "a4", {"document": put_blob(d, PDF)}, timeout=20)
    assert read(os.path.join(qdir, "out.prn")) == PDF


def test_stopped_and_rejecting_queue_go_offline(kd, cupsd, qname):
    cupsd.queue(qname)
    d = start(kd, cupsd, qname)
    d.wait_state("a4", "ready")
    ui = d.client()
    admin = d.admin()
    admin.ok("events.subscribe", args={"topics": ["device.state", "printer.queue_state"]})
    cupsd.run(["cupsdisable", "-r", "out of toner", qname])
    dev = d.wait_state("a4", "offline", timeout=10)
    assert dev["reason"] == "queue %s is stopped: out of toner" % qname, dev
    e = ui.err("printer.print", "a4", {"document": put_blob(d, PDF)})
    assert e["code"] == "device_offline" and "out of toner" in e["message"], e
    # reopen attempts (every 50-200 ms here) do not flap through "ready"
    # while the queue is stopped: they keep the reason and stay offline
    read_for(admin, 0.2)
    admin.events.clear()
    read_for(admin, 0.8 * kiosk.SLOW)
    states = [e["data"]["state"] for e in admin.events if e["event"] == "device.state"]
    assert states.count("opening") >= 2 and "ready" not in states, states
    assert all(e["data"]["reason"] == "queue %s is stopped: out of toner" % qname
               for e in admin.events if e["data"].get("state") == "offline")
    cupsd.run(["cupsenable", qname])
    d.wait_state("a4", "ready", timeout=10)
    cupsd.run(["cupsreject", "-r", "closed for service", qname])
    dev = d.wait_state("a4", "offline", timeout=10)
    assert dev["reason"] == (
        "queue %s is not accepting jobs: closed for service" % qname), dev
    cupsd.run(["cupsaccept", qname])
    st = d.wait_state("a4", "ready", timeout=10)
    wait_until(lambda: d.device("a4")["status"]["queue_state"] == "idle", 5, "queue idle")
    assert d.device("a4")["status"]["accepting"] is True
    assert st["state"] == "ready"


def test_missing_queue_and_unreachable_server(kd, cupsd, tmp_path):
    d = kd(conf("no-such-queue"), env={"CUPS_SERVER": cupsd.sock})
    dev = d.wait_state("a4", "offline", timeout=10)
    assert dev["reason"] == "queue no-such-queue does not exist", dev
    d2 = kd(conf("kq", server=str(tmp_path / "nobody.sock")))
    dev = d2.wait_state("a4", "offline", timeout=10)
    assert dev["reason"].startswith("CUPS server unreachable: %s" % (tmp_path / "nobody.sock")), dev


def test_no_queue_configured(kd):
    d = kd(daemon_section() + "[device a4]\nclass = printer\nplugin = cups\n")
    dev = d.wait_state("a4", "offline", timeout=10)
    assert dev["reason"] == "no queue configured (option 'queue')"


def test_simulator_prints_documents_too(kd):
    """The receipt simulator simulates a document job with the same result
    fields, so a kiosk UI runs on simulators alone."""
    d = kd(daemon_section() + kiosk.sim_device("printer0", "printer", latency_ms=0))
    ui = d.client()
    ui.ok("events.subscribe", args={"topics": ["printer.job_state"]})
    r = ui.ok("printer.print", "printer0", {"document": put_blob(d, PNG), "copies": 3})
    assert r == {"job_id": 1, "state": "completed", "format": "image/png", "bytes": len(PNG),
                 "copies": 3}
    assert ui.event("printer.job_state")["data"] == {"job_id": 1, "state": "completed"}
    e = ui.err("printer.print", "printer0", {"document": put_blob(d, b"GIF89a")})
    assert e == {"code": "bad_request", "message": "document %s is not a PDF, PNG or JPEG"
                 % hashlib.sha256(b"GIF89a").hexdigest()[:8]}
    # paper is a receipt roll: a document does not use it
    assert ui.ok("printer.status", "printer0")["paper_lines_left"] == 2000


def test_stop_with_cupsd_frozen_is_bounded(kd, cupsd, qname):
    # cupsd stopped by SIGSTOP: its socket still takes connections, nothing
    # answers.  A status poll caught in libcups is a worker the stop cannot
    # interrupt: it is left behind after cancel_grace_ms (exit status 1,
    # logged); with no poll in flight the stop is clean.  Either way bounded.
    cupsd.queue(qname)
    d = start(kd, cupsd, qname)
    d.wait_state("a4", "ready")
    os.kill(cupsd.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(0.3)  # polls every 30 ms: one is now waiting on cupsd
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(15)
        took = time.monotonic() - t0
    finally:
        os.kill(cupsd.proc.pid, signal.SIGCONT)
    assert took < 2 + 5 * kiosk.SLOW, took
    assert rc in (0, 1), d.log()
    print("cupsd frozen: stop took %.2f s, exit status %d" % (took, rc))
    if rc == 1:
        assert d.log_lines(r"device calls? (is|are) still running 2000 ms"), d.log()
    d.stop(expect_rc=rc)
