"""kioskctl, the real binary ($KIOSKD_BUILD/kioskctl), against a real daemon:
socket choice, every subcommand's output and exit status (docs/kioskctl.md,
"EXIT STATUS"), progress and events, usage errors, and a daemon that goes
away under it.  Every kioskctl run is checked for sanitizer reports."""

import datetime
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

import kiosk
from kiosk import (SLOW, Client, assert_no_sanitizer, base_env, daemon_section, sim_device,
                   wait_until)

KIOSKCTL = os.path.join(kiosk.BUILD, "kioskctl")

CONF = (daemon_section(log_level="info")
        + sim_device("card0", "cardreader", latency_ms=0)
        + sim_device("scanner0", "scanner", latency_ms=0, adf_pages=10)
        + sim_device("printer0", "printer", latency_ms=0, width=16))

# A device whose plugin is refused: state "failed" with a reason, for good.
FAILED_DEV = "[device bad0]\nclass = locker\nplugin = bad_magic\n\n"

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
CARD_DATA = {"type": "sle4442", "atr": "a2131091"}
COMMANDS = ["hello", "status", "devices", "call", "events", "sim", "reload", "queue", "sync",
            "help"]


def makefile_version():
    with open(os.path.join(kiosk.REPO, "Makefile")) as f:
        return re.search(r"^VERSION\s*:?=\s*(\S+)", f.read(), re.M).group(1)


# ---- running kioskctl ----

class Result:
    def __init__(self, rc, out, err, elapsed):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed

    def __repr__(self):
        return "rc=%r stdout=%r stderr=%r" % (self.rc, self.out, self.err)


def argv(args, sock):
    return [KIOSKCTL] + (["--socket", sock] if sock else []) + list(args)


def ctl(*args, sock=None, env=None, timeout=10.0):
    """Run kioskctl to completion: Result(rc, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    p = subprocess.run(argv(args, sock), env=base_env(env), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout * SLOW)
    out = p.stdout.decode("utf-8")
    err = p.stderr.decode("utf-8")
    assert_no_sanitizer(err, "kioskctl")
    return Result(p.returncode, out, err, time.monotonic() - t0)


_running = []


@pytest.fixture(autouse=True)
def _reap():
    yield
    while _running:
        p = _running.pop()
        if p.poll() is None:
            p.kill()
        p.communicate()


class Bg:
    """kioskctl in the background; stdout is read as it comes (os.read on the
    pipe, so nothing hides in a Python buffer)."""

    def __init__(self, *args, sock=None, env=None):
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv(args, sock), env=base_env(env), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _running.append(self.p)
        self.out = b""

    def read_some(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if r:
            data = os.read(self.p.stdout.fileno(), 65536)
            self.out += data
            return bool(data)
        return False

    def nlines(self):
        return self.out.count(b"\n")

    def finish(self, timeout=10.0):
        try:
            out, err = self.p.communicate(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            raise AssertionError("kioskctl did not exit: stdout %r stderr %r"
                                 % (self.out + out, err))
        err = err.decode("utf-8")
        assert_no_sanitizer(err, "kioskctl")
        return Result(self.p.returncode, (self.out + out).decode("utf-8"), err,
                      time.monotonic() - self.t0)


class Card:
    """Toggles a card in card0 with `kioskctl sim`: one cardreader event a call."""

    def __init__(self, d, dev="card0"):
        self.d, self.dev, self.present = d, dev, False

    def toggle(self):
        what = "remove" if self.present else "insert"
        r = ctl("sim", self.dev, what, sock=self.d.admin_sock)
        assert r.rc == 0, r
        self.present = not self.present


def trigger_until(bg, trigger, lines=1, most=20):
    """Call trigger() until bg printed `lines` lines or exited.  kioskctl
    subscribes at some moment we cannot see; this makes the test not care.
    At most `most` triggers: few enough that output kioskctl forgot to flush
    stays in its stdio buffer and the test fails."""
    n = 0
    while bg.nlines() < lines and bg.p.poll() is None:
        assert n < most, "kioskctl printed %r after %d triggers" % (bg.out, n)
        trigger()
        n += 1
        bg.read_some(0.1 * SLOW)
    while bg.nlines() < lines and bg.read_some(0.5 * SLOW):
        pass


def fields(text):
    """Top-level 'key:  value' lines of the human output."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"(\S[^:]*):(?:\s+(.*))?$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def table(lines):
    """Rows of an aligned table (columns two or more spaces apart)."""
    return [re.split(r"\s{2,}", line) for line in lines]


def shape(v):
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(x) for x in v]
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "null" if v is None else type(v).__name__


def one_json_line(text):
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    return json.loads(text)


@pytest.fixture
def d(kd):
    return kd(CONF)


def card_status(d):
    with Client(d.admin_sock) as c:
        return c.ok("cardreader.status", "card0")


def dev_state(d, name="card0"):
    """The device's state from the daemon's status (answered at once, also
    while the device runs a command)."""
    with Client(d.admin_sock) as c:
        return {x["name"]: x["state"] for x in c.ok("status")["devices"]}[name]


# ---- socket choice ----

def test_socket_option_picks_socket_and_role(d):
    for sock, role in ((d.admin_sock, "admin"), (d.ui_sock, "ui")):
        for opt in ("--socket", "-s"):
            r = ctl(opt, sock, "hello")
            assert r.rc == 0 and r.err == "", r
            assert fields(r.out) == {"protocol": "1", "daemon": "kioskd",
                                     "version": makefile_version(), "role": role,
                                     "session": fields(r.out)["session"], "socket": sock}, r
            assert re.fullmatch(r"\d+", fields(r.out)["session"]), r
    # after the command too
    r = ctl("hello", "--socket", d.ui_sock)
    assert r.rc == 0 and fields(r.out)["role"] == "ui", r


def test_env_var_picks_socket_and_option_wins(d):
    r = ctl("hello", env={"KIOSKCTL_SOCKET": d.ui_sock})
    assert r.rc == 0 and fields(r.out)["role"] == "ui" and fields(r.out)["socket"] == d.ui_sock
    r = ctl("--json", "hello", env={"KIOSKCTL_SOCKET": d.admin_sock})
    assert r.rc == 0 and one_json_line(r.out)["role"] == "admin", r
    # --socket beats the environment, both ways round
    r = ctl("hello", sock=d.admin_sock, env={"KIOSKCTL_SOCKET": d.ui_sock})
    assert r.rc == 0 and fields(r.out)["role"] == "admin", r
    r = ctl("hello", sock=d.ui_sock, env={"KIOSKCTL_SOCKET": d.admin_sock})
    assert r.rc == 0 and fields(r.out)["role"] == "ui", r
    # ... also when the environment names nothing that exists
    r = ctl("hello", sock=d.ui_sock, env={"KIOSKCTL_SOCKET": d.tmp + "/nope.sock"})
    assert r.rc == 0 and fields(r.out)["role"] == "ui", r


@pytest.mark.parametrize("args,cmd", [
    (["hello"], "hello"), (["status"], "status"), (["devices"], "devices.list"),
    (["call", "cardreader.status"], "cardreader.status"), (["events"], "events.subscribe"),
    (["sim", "card0", "insert"], "sim.inject"), (["reload"], "config.reload")])
def test_missing_socket_exit_3_names_path(d, args, cmd):
    path = os.path.join(d.run_dir, "missing.sock")
    r = ctl(*args, sock=path)
    assert r.rc == 3, r
    assert r.out == ""
    assert r.err == ("kioskctl: %s: cannot connect to %s: No such file or directory "
                     "(is kioskd running?)\n" % (cmd, path)), r
    # the same through the environment
    r2 = ctl(*args, env={"KIOSKCTL_SOCKET": path})
    assert (r2.rc, r2.out, r2.err) == (r.rc, r.out, r.err)


def test_not_a_socket_exit_3(d):
    # a file in the way, and a socket nobody listens on
    r = ctl("hello", sock=d.conf_path)
    assert r.rc == 3 and r.err.startswith("kioskctl: hello: cannot connect to %s: "
                                          % d.conf_path), r
    dead = os.path.join(d.run_dir, "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(dead)
    s.close()
    r = ctl("hello", sock=dead)
    assert r.rc == 3, r
    assert r.err == ("kioskctl: hello: cannot connect to %s: Connection refused "
                     "(is kioskd running?)\n" % dead), r


@pytest.mark.skipif(os.path.exists("/run/kioskd"), reason="a kioskd is installed here")
def test_default_socket_without_option_or_env(d):
    for env in (None, {"KIOSKCTL_SOCKET": ""}):
        r = ctl("hello", env=env)
        assert r.rc == 3, r
        assert r.err == ("kioskctl: hello: cannot connect to /run/kioskd/ui.sock: No such file "
                         "or directory (is kioskd running?)\n"), r


# ---- hello, status, devices ----

def test_hello_json_is_the_daemon_result(d):
    r = ctl("--json", "hello", sock=d.admin_sock)
    assert r.rc == 0 and r.err == "", r
    got = one_json_line(r.out)
    with Client(d.ui_sock) as c:
        want = c.ok("hello")
    assert list(got) == list(want)
    assert got == dict(want, role="admin", session=got["session"])
    assert isinstance(got["session"], int) and got["session"] != want["session"]


def test_status_human(kd):
    d = kd(daemon_section(plugin_path=kiosk.TEST_PLUGINS) + CONF + FAILED_DEV)
    r = ctl("status", sock=d.ui_sock)
    assert r.rc == 0 and r.err == "", r
    lines = r.out.split("\n")
    assert lines[0] == "kioskd " + makefile_version()
    assert lines[1] == "      PID: %d" % d.pid
    assert re.fullmatch(r"   Uptime: \d+s", lines[2]), lines[2]
    # a fresh store: nothing queued, so no oldest age
    # (test_kioskctl_queue.py has the line with one)
    assert lines[3:7] == ["  Clients: 1", "   Config: " + d.conf_path,
                          "  Devices: 3 ready, 1 failed",
                          "    Queue: 0 queued, 0 sending, 0 delivered, 0 failed"]
    assert lines[7] == ""
    with Client(d.admin_sock) as c:
        devs = c.ok("status")["devices"]
    rows = table(lines[8:8 + 1 + len(devs)])
    assert rows[0] == ["NAME", "CLASS", "PLUGIN", "STATE", "REASON"]
    assert rows[1:] == [[x["name"], x["class"], x["plugin"], x["state"], x.get("reason", "-")]
                        for x in devs]
    assert [x[0] for x in rows[1:]] == ["card0", "scanner0", "printer0", "bad0"]
    assert rows[4][3] == "failed" and "plugin bad_magic refused" in rows[4][4]
    # columns are aligned: every row starts its CLASS column at the same place
    at = lines[8].index("CLASS")
    assert all(len(line) > at and line[at - 2:at] == "  " and line[at] != " "
               for line in lines[9:9 + len(devs)])
    assert lines[9 + len(devs):] == ["", "No endpoints configured.", ""]


def test_status_json_has_the_daemon_shape(kd):
    d = kd(daemon_section(plugin_path=kiosk.TEST_PLUGINS) + CONF + FAILED_DEV)
    r = ctl("--json", "status", sock=d.admin_sock)
    assert r.rc == 0 and r.err == "", r
    got = one_json_line(r.out)
    with Client(d.ui_sock) as c:
        want = c.ok("status")
    assert json.dumps(shape(got)) == json.dumps(shape(want))
    for k in ("devices", "device_states", "queue", "endpoints"):
        assert got[k] == want[k], k
    assert got["daemon"]["pid"] == d.pid and got["daemon"]["config"] == d.conf_path
    assert got["daemon"]["version"] == makefile_version()
    assert got["device_states"]["ready"] == 3 and got["device_states"]["failed"] == 1
    # -j is --json, and the option may follow the command
    r2 = ctl("status", "-j", sock=d.admin_sock)
    assert r2.rc == 0 and shape(one_json_line(r2.out)) == shape(got)


def test_devices_table_and_one_device(kd):
    d = kd(daemon_section(plugin_path=kiosk.TEST_PLUGINS) + CONF + FAILED_DEV)
    with Client(d.admin_sock) as c:
        devs = c.ok("devices.list")["devices"]
    r = ctl("devices", sock=d.ui_sock)
    assert r.rc == 0 and r.err == "", r
    rows = table(r.out.rstrip("\n").split("\n"))
    assert rows[0] == ["NAME", "CLASS", "PLUGIN", "STATE", "CAPABILITIES", "REASON"]
    assert rows[1:] == [[x["name"], x["class"], x["plugin"], x["state"],
                         ", ".join(x["capabilities"]), x.get("reason", "-")] for x in devs]
    assert rows[1][4] == "status, wait, read, write, verify, auth, apdu, eject"

    r = ctl("--json", "devices", sock=d.ui_sock)
    assert r.rc == 0 and one_json_line(r.out) == {"devices": devs}, r

    r = ctl("devices", "card0", sock=d.ui_sock)
    assert r.rc == 0 and r.err == "", r
    assert r.out == ("name:          card0\n"
                     "class:         cardreader\n"
                     "plugin:        sim\n"
                     "state:         ready\n"
                     "capabilities:  status, wait, read, write, verify, auth, apdu, eject\n"
                     "status:\n"
                     "  card:        absent\n"
                     "  waiting:     false\n"
                     "  latency_ms:  0\n"
                     "  next_fault:  -\n"), r.out
    r = ctl("devices", "bad0", sock=d.ui_sock)
    assert r.rc == 0 and fields(r.out)["state"] == "failed", r
    assert fields(r.out)["reason"] == devs[3]["reason"]

    r = ctl("--json", "devices", "printer0", sock=d.ui_sock)
    assert r.rc == 0 and one_json_line(r.out) == devs[2], r

    for extra in ([], ["--json"]):
        r = ctl(*extra, "devices", "nope", sock=d.ui_sock)
        assert r.rc == 1, r
        assert r.out == ""
        assert r.err == "kioskctl: devices.list: unknown_device: no device named 'nope'\n"


# ---- call ----

def test_call_success_human_and_json(d):
    r = ctl("call", "cardreader.status", sock=d.ui_sock)
    assert r.rc == 0 and r.err == "", r
    want = {"card": "absent", "waiting": False, "latency_ms": 0, "next_fault": None}
    assert json.loads(r.out) == want
    assert r.out == json.dumps(want, indent=2) + "\n"
    r = ctl("--json", "call", "cardreader.status", sock=d.ui_sock)
    assert r.rc == 0 and r.err == "", r
    assert one_json_line(r.out) == want
    assert r.out == json.dumps(want, separators=(",", ":")) + "\n"

    # arguments, and --device / -d anywhere among the words
    blocks = '{"blocks": [{"text": "HELLO", "align": "center"}, {"cut": true}]}'
    for args in (["call", "printer.print", blocks, "--device", "printer0"],
                 ["call", "--device=printer0", "printer.print", blocks],
                 ["call", "-d", "printer0", "printer.print", blocks, "-j"]):
        r = ctl(*args, sock=d.ui_sock)
        assert r.rc == 0 and r.err == "", (args, r)
        assert json.loads(r.out) == {"text": "     HELLO\n-------- cut --------\n", "lines": 2}
    r = ctl("call", "printer.print", blocks, "--device", "nope", sock=d.ui_sock)
    assert r.rc == 1 and r.out == "", r
    assert r.err == "kioskctl: printer.print: unknown_device: no device named 'nope'\n"


def test_call_daemon_error_exit_1(d):
    r = ctl("call", "cardreader.read", '{"length": 4}', sock=d.ui_sock)
    assert r.rc == 1, r
    assert r.out == ""
    assert r.err == "kioskctl: cardreader.read: device_error: no card in reader\n"
    r = ctl("--json", "call", "nosuch.verb", sock=d.admin_sock)
    assert r.rc == 1 and r.out == "", r
    assert r.err == "kioskctl: nosuch.verb: unknown_command: unknown command 'nosuch.verb'\n"
    r = ctl("call", "cardreader.read", '{"offset": 250, "length": 10}', sock=d.ui_sock)
    assert r.rc == 1 and r.err.startswith("kioskctl: cardreader.read: "), r


def test_not_permitted_exit_5(d):
    for args in (["call", "config.reload"], ["reload"], ["--json", "reload"]):
        r = ctl(*args, sock=d.ui_sock)
        assert r.rc == 5, (args, r)
        assert r.out == ""
        assert r.err == ("kioskctl: config.reload: not_permitted: config.reload needs the "
                         "admin role (admin.sock)\n"), r
    # the same call on admin.sock is allowed
    assert ctl("call", "config.reload", sock=d.admin_sock).rc == 0


def test_daemon_timeout_exit_4(d):
    r = ctl("--timeout", "300", "call", "cardreader.wait", sock=d.ui_sock)
    assert r.rc == 4, r
    assert r.out == ""
    # the daemon's own answer (it names the device), not kioskctl's give-up
    assert r.err == ("kioskctl: cardreader.wait: timeout: card0: cardreader.wait did not "
                     "finish within 300 ms\n"), r
    assert r.elapsed >= 0.29
    # -t after the command, --json
    r = ctl("call", "cardreader.wait", "-t", "200", "--json", sock=d.ui_sock)
    assert r.rc == 4 and "did not finish within 200 ms" in r.err, r
    assert card_status(d)["waiting"] is False


def test_configured_timeout_and_hang_next_exit_4(kd):
    d = kd(daemon_section(log_level="info", cancel_grace_ms=100)
           + sim_device("card0", "cardreader", latency_ms=0, timeout_ms=300)
           + sim_device("printer0", "printer", latency_ms=0))
    # no --timeout: the device's configured timeout_ms applies
    r = ctl("call", "cardreader.wait", sock=d.ui_sock)
    assert r.rc == 4, r
    assert r.err == ("kioskctl: cardreader.wait: timeout: card0: cardreader.wait did not "
                     "finish within 300 ms\n"), r
    # a command the simulator never finishes
    r = ctl("--json", "sim", "printer0", "hang_next", sock=d.admin_sock)
    assert r.rc == 0 and one_json_line(r.out)["next_fault"] == "hang", r
    r = ctl("--timeout", "300", "call", "printer.print", '{"blocks": [{"text": "x"}]}',
            sock=d.ui_sock)
    assert r.rc == 4 and r.out == "", r
    assert r.err == ("kioskctl: printer.print: timeout: printer0: printer.print did not "
                     "finish within 300 ms\n"), r
    # the daemon reopens the wedged device and it serves again
    d.wait_state("printer0", "ready", timeout=10)
    r = ctl("call", "printer.print", '{"blocks": [{"text": "x"}]}', sock=d.ui_sock)
    assert r.rc == 0 and json.loads(r.out)["lines"] == 1, r


def test_bad_json_arguments_exit_2(d):
    r = ctl("call", "locker.open", '{"door":}', sock=d.ui_sock)
    assert r.rc == 2, r
    assert r.out == ""
    assert r.err == ("kioskctl: call: bad JSON arguments at line 1, column 9: unexpected token "
                     "near '}'\n"
                     "  {\"door\":}\n"
                     "          ^\n"
                     "Try 'kioskctl call --help'.\n"), r
    # cut short: the caret is at the end
    r = ctl("call", "printer.print", '{"blocks": [', sock=d.ui_sock)
    assert r.rc == 2, r
    assert re.match(r"kioskctl: call: bad JSON arguments at line 1, column \d+: ", r.err), r
    assert "\n  {\"blocks\": [\n              ^\n" in r.err, r.err
    # over several lines: line and column, no picture
    r = ctl("call", "printer.print", '{\n  "blocks": [\n    {"text": x}]}', sock=d.ui_sock)
    assert r.rc == 2, r
    assert r.err.startswith("kioskctl: call: bad JSON arguments at line 3, column 14: "), r
    assert "^" not in r.err
    # a duplicate key is a mistake too
    r = ctl("call", "printer.print", '{"a": 1, "a": 2}', sock=d.ui_sock)
    assert r.rc == 2 and "duplicate object key" in r.err, r
    # sim's JSON argument goes through the same check
    r = ctl("sim", "card0", "insert", '{"card": {', sock=d.admin_sock)
    assert r.rc == 2 and r.err.startswith("kioskctl: sim: bad JSON arguments at line 1, "), r
    assert r.err.endswith("Try 'kioskctl sim --help'.\n")
    # and nothing reached the daemon
    assert card_status(d)["card"] == "absent"


@pytest.mark.parametrize("text", ["[1, 2]", "3", '"door"', "null", "true"])
def test_json_arguments_not_an_object_exit_2(d, text):
    for args in (["call", "locker.open", text], ["sim", "card0", "insert", text]):
        r = ctl(*args, sock=d.admin_sock)
        assert r.rc == 2, (args, r)
        assert r.out == ""
        assert r.err == ("kioskctl: %s: JSON arguments must be an object, e.g. '{\"door\": 3}'\n"
                         "Try 'kioskctl %s --help'.\n" % (args[0], args[0])), r


def test_call_progress_to_stderr(d):
    args = '{"source": "adf", "pages": 3, "resolution": 50}'
    r = ctl("call", "scanner.scan", args, sock=d.ui_sock)
    assert r.rc == 0, r
    res = json.loads(r.out)
    assert len(res["pages"]) == 3 and len({p["blob"] for p in res["pages"]}) == 3
    assert r.out.startswith("{\n  \"pages\": [\n")
    assert r.err == "".join('progress: {"page":%d,"pages":3}\n' % i for i in (1, 2, 3)), r.err


    r = ctl("--json", "call", "scanner.scan", args, sock=d.ui_sock)
    assert r.rc == 0, r
    assert len(one_json_line(r.out)["pages"]) == 3
    prog = [json.loads(line) for line in r.err.splitlines()]
    assert [p["progress"] for p in prog] == [{"page": i, "pages": 3} for i in (1, 2, 3)], r.err
    assert all(set(p) == {"id", "progress"} and p["id"] == prog[0]["id"] for p in prog)

    # a failing scan still prints the progress it made, then the error
    r = ctl("call", "scanner.scan", '{"source": "adf", "pages": 6, "resolution": 50}',
            sock=d.ui_sock)
    assert r.rc == 1 and r.out == "", r
    lines = r.err.splitlines()
    assert lines[-1].startswith("kioskctl: scanner.scan: device_error: ") and "4 of 6" in lines[-1]
    assert lines[:-1] == ['progress: {"page":%d,"pages":6}' % i for i in range(1, len(lines))]


# ---- events ----

def test_events_waits_for_first_match(d):
    card = Card(d)
    bg = Bg("--timeout", str(int(10000 * SLOW)), "events", "cardreader.inserted",
            sock=d.ui_sock)
    trigger_until(bg, card.toggle)
    r = bg.finish()
    assert r.rc == 0 and r.err == "", r
    lines = r.out.splitlines()
    assert len(lines) == 1, r
    m = re.fullmatch(r"(%s)  cardreader\.inserted  card0  (\{.*\})" % TS, lines[0])
    assert m, lines[0]
    assert json.loads(m.group(2)) == CARD_DATA
    ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - ts).total_seconds()) < 60, (ts, now)


def test_events_count_without_follow(d):
    card = Card(d)
    bg = Bg("events", "--count", "3", "cardreader.*", "printer.nothing", sock=d.ui_sock)
    trigger_until(bg, card.toggle, lines=3)
    r = bg.finish()
    assert r.rc == 0 and r.err == "", r
    names = [re.fullmatch(r"%s  (\S+)  card0  \{.*\}" % TS, line).group(1)
             for line in r.out.splitlines()]
    assert len(names) == 3
    # they alternate, as the card went in and out
    assert names in (["cardreader.inserted", "cardreader.removed", "cardreader.inserted"],
                     ["cardreader.removed", "cardreader.inserted", "cardreader.removed"])


def test_events_follow_count_json(d):
    card = Card(d)
    bg = Bg("--json", "events", "--follow", "--count", "4", sock=d.ui_sock)
    trigger_until(bg, card.toggle, lines=4)
    r = bg.finish()
    assert r.rc == 0 and r.err == "", r
    evs = [json.loads(line) for line in r.out.splitlines()]
    assert len(evs) == 4, r
    for e in evs:
        assert set(e) == {"event", "device", "seq", "ts", "data"}, e
        assert re.fullmatch(TS, e["ts"])
        assert e["device"] == "card0" and e["event"].startswith("cardreader.")
    # a '*' subscriber sees every event: seq goes up one by one
    seqs = [e["seq"] for e in evs]
    assert seqs == list(range(seqs[0], seqs[0] + 4)), seqs
    ins = [e for e in evs if e["event"] == "cardreader.inserted"]
    assert ins and all(e["data"] == CARD_DATA for e in ins)


def test_events_follow_human_device_state(d):
    # unplug: device.state events, as a daemon-wide topic
    bg = Bg("events", "-f", "-n", "1", "device.state", sock=d.ui_sock)
    plugged = [True]

    def flip():
        what = "unplug" if plugged[0] else "replug"
        assert ctl("sim", "printer0", what, sock=d.admin_sock).rc == 0
        plugged[0] = not plugged[0]
    trigger_until(bg, flip)
    r = bg.finish()
    assert r.rc == 0 and r.err == "", r
    m = re.fullmatch(r"%s  device\.state  (\S+)  (\{.*\})\n" % TS, r.out)
    assert m and m.group(1) == "printer0", r.out
    data = json.loads(m.group(2))
    assert set(data) == {"state", "previous", "reason"}, data


def test_events_timeout_exit_4(d):
    r = ctl("--timeout", "300", "events", "cardreader.*", sock=d.ui_sock)
    assert r.rc == 4, r
    assert r.out == ""
    assert r.err == "kioskctl: events.subscribe: timeout: no event within 300 ms\n"
    assert r.elapsed >= 0.29
    # --follow was only told how long to listen: 0
    r = ctl("events", "--follow", "--timeout", "300", sock=d.ui_sock)
    assert (r.rc, r.out, r.err) == (0, "", ""), r
    assert r.elapsed >= 0.29
    # --follow with a --count that was not reached: 4
    r = ctl("events", "--follow", "--count", "2", "--timeout", "300", "nothing.*",
            sock=d.ui_sock)
    assert r.rc == 4 and r.out == "", r
    assert r.err == "kioskctl: events.subscribe: timeout: no event within 300 ms\n"


def test_events_follow_fewer_than_count_exit_4(d):
    card = Card(d)
    ms = int(1000 * SLOW)
    bg = Bg("--timeout", str(ms), "events", "--follow", "--count", "1000", "cardreader.*",
            sock=d.ui_sock)
    trigger_until(bg, card.toggle)
    r = bg.finish()
    assert r.rc == 4, r
    n = len(r.out.splitlines())
    assert 1 <= n < 1000
    assert r.err == ("kioskctl: events.subscribe: timeout: %d of 1000 events within %d ms\n"
                     % (n, ms)), r


def test_events_bad_pattern_exit_1(d):
    r = ctl("events", "Card*", sock=d.ui_sock)
    assert r.rc == 1 and r.out == "", r
    assert r.err.startswith("kioskctl: events.subscribe: bad_request: "), r


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_events_follow_ends_on_signal(d, sig):
    card = Card(d)
    bg = Bg("events", "--follow", "cardreader.*", sock=d.ui_sock)
    trigger_until(bg, card.toggle)
    bg.p.send_signal(sig)
    r = bg.finish(timeout=5)
    assert r.rc == 0 and r.err == "", r
    assert re.fullmatch(r"(%s  cardreader\.\w+  card0  \{.*\}\n)+" % TS, r.out), r.out


def test_events_follow_daemon_stops_exit_3(d):
    card = Card(d)
    bg = Bg("--json", "events", "--follow", sock=d.ui_sock)
    trigger_until(bg, card.toggle)
    d.stop()
    r = bg.finish(timeout=5)
    assert r.rc == 3, r
    assert r.err == "kioskctl: events.subscribe: daemon closed the connection\n", r
    assert all(json.loads(line)["event"] for line in r.out.splitlines())


# ---- sim ----

def test_sim_card_insert_and_remove(d):
    r = ctl("sim", "card0", "insert", '{"card": {"type": "mifare", "uid": "04112233"}}',
            sock=d.admin_sock)
    assert r.rc == 0 and r.err == "", r
    res = json.loads(r.out)
    assert res["done"] == "insert" and res["card"] == "present" and res["type"] == "mifare"
    assert r.out == json.dumps(res, indent=2) + "\n"
    r = ctl("--json", "call", "cardreader.status", sock=d.ui_sock)
    st = one_json_line(r.out)
    assert st["card"] == "present" and st["type"] == "mifare" and st["memory_bytes"] == 1024
    r = ctl("call", "cardreader.read", '{"offset": 0, "length": 4}', sock=d.ui_sock)
    assert r.rc == 0 and json.loads(r.out)["data"] == "04112233", r

    r = ctl("--json", "sim", "card0", "remove", sock=d.admin_sock)
    assert r.rc == 0 and r.err == "", r
    assert one_json_line(r.out)["done"] == "remove"
    r = ctl("--json", "call", "cardreader.status", sock=d.ui_sock)
    assert one_json_line(r.out)["card"] == "absent"
    # a second remove is refused by the simulator
    r = ctl("sim", "card0", "remove", sock=d.admin_sock)
    assert r.rc == 1 and r.out == "" and r.err.startswith("kioskctl: sim.inject: bad_request: ")


def test_sim_unknown_what_lists_valid_ones(d):
    r = ctl("sim", "card0", "fly", sock=d.admin_sock)
    assert r.rc == 1, r
    assert r.out == ""
    assert r.err == ("kioskctl: sim.inject: bad_request: unknown what 'fly' for cardreader "
                     "(insert, remove, unplug, replug, fail_next, hang_next, latency)\n"), r
    r = ctl("sim", "nope0", "insert", sock=d.admin_sock)
    assert r.rc == 1 and r.err == "kioskctl: sim.inject: unknown_device: no device named 'nope0'\n"


def test_sim_on_ui_sock_exit_5(d):
    r = ctl("sim", "card0", "insert", sock=d.ui_sock)
    assert r.rc == 5, r
    assert r.out == ""
    assert r.err == ("kioskctl: sim.inject: not_permitted: sim.inject needs the admin role "
                     "(admin.sock)\n"), r
    assert card_status(d)["card"] == "absent"


def test_sim_what_in_json_is_usage_error(d):
    r = ctl("sim", "card0", "insert", '{"what": "remove"}', sock=d.admin_sock)
    assert r.rc == 2 and r.out == "", r
    assert r.err == ("kioskctl: sim: give WHAT as a word, not as \"what\" in the JSON "
                     "arguments\nTry 'kioskctl sim --help'.\n"), r


# ---- reload ----

def test_reload(d):
    r = ctl("reload", sock=d.admin_sock)
    assert r.rc == 0 and r.err == "", r
    assert r.out == "Configuration reloaded.\n  reloaded:  true\n  changed:   -\n"
    # a changed device is named
    d.write_conf(CONF.replace("width = 16", "width = 20"))
    r = ctl("--json", "reload", sock=d.admin_sock)
    assert r.rc == 0 and r.err == "", r
    assert one_json_line(r.out) == {"reloaded": True, "changed": ["printer0"]}
    d.wait_state("printer0", "ready")
    assert json.loads(ctl("call", "printer.status", sock=d.ui_sock).out)["width"] == 20

    # a broken configuration is refused and the problem printed
    d.write_conf(CONF + "[device bad0]\nclass = printer\nplugin = sim\nwidht = 3\n")
    line = CONF.count("\n") + 4
    r = ctl("reload", sock=d.admin_sock)
    assert r.rc == 1, r
    assert r.out == ""
    assert r.err == ("kioskctl: config.reload: bad_request: configuration refused, old one kept: "
                     "%s:%d: device bad0: unknown option 'widht' for plugin sim\n"
                     % (d.conf_path, line)), r
    r = ctl("--json", "reload", sock=d.admin_sock)
    assert r.rc == 1 and r.out == "" and "unknown option 'widht'" in r.err, r
    # the running configuration stays
    r = ctl("--json", "devices", sock=d.ui_sock)
    assert [x["name"] for x in one_json_line(r.out)["devices"]] == ["card0", "scanner0",
                                                                     "printer0"]
    assert json.loads(ctl("call", "printer.status", sock=d.ui_sock).out)["width"] == 20


# ---- help, version, usage errors (no daemon needed: the socket is not used) ----

NOSOCK = "/nonexistent/kioskctl-test.sock"


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"], ["-s", NOSOCK, "--help"]])
def test_help(args):
    r = ctl(*args)
    assert r.rc == 0 and r.err == "", r
    assert r.out.startswith("Usage: kioskctl [--socket PATH] [--json] [--timeout MS] COMMAND"), r
    listed = re.findall(r"^  (\w+)\b.*  \S", r.out.split("Commands:\n")[1].split("\n\n")[0],
                        re.M)
    assert listed == COMMANDS
    assert "Exit status:\n  0  success\n" in r.out
    for i in range(6):
        assert re.search(r"^  %d  \w" % i, r.out, re.M), i


@pytest.mark.parametrize("cmd", COMMANDS)
def test_command_help(cmd):
    r = ctl(cmd, "--help", sock=NOSOCK)
    assert r.rc == 0 and r.err == "", r
    assert r.out.startswith("Usage: kioskctl %s" % cmd), r.out
    assert "Common options" in r.out and "Exit status:" in r.out
    for other in (["help", cmd], [cmd, "-h"], ["--json", cmd, "--help"]):
        r2 = ctl(*other, sock=NOSOCK)
        assert (r2.rc, r2.out, r2.err) == (0, r.out, ""), other


@pytest.mark.parametrize("opt", ["--version", "-V"])
def test_version(opt):
    r = ctl(opt)
    assert r.rc == 0 and r.err == "", r
    assert r.out == "kioskctl %s\n" % makefile_version()


@pytest.mark.parametrize("args,msg", [
    (["bogus"], "kioskctl: unknown command 'bogus'\nTry 'kioskctl --help'.\n"),
    (["--bogus", "hello"], "kioskctl: unknown option '--bogus'\nTry 'kioskctl --help'.\n"),
    (["-x", "hello"], "kioskctl: unknown option '-x'\nTry 'kioskctl --help'.\n"),
    (["hello", "--bogus"], "kioskctl: hello: unknown option '--bogus'\n"
                           "Try 'kioskctl hello --help'.\n"),
    (["hello", "extra"], "kioskctl: hello: too many arguments; usage: kioskctl hello\n"
                         "Try 'kioskctl hello --help'.\n"),
    (["call"], "kioskctl: call: missing arguments; usage: kioskctl call CMD [JSON-ARGS] "
               "[--device NAME]\nTry 'kioskctl call --help'.\n"),
    (["call", "a.b", "{}", "extra"], None),
    (["sim", "card0"], None),
    (["devices", "a", "b"], None),
    (["help", "bogus"], "kioskctl: unknown command 'bogus'\nTry 'kioskctl --help'.\n"),
    (["hello", "--socket"], "kioskctl: hello: option '--socket' needs an argument\n"
                            "Try 'kioskctl hello --help'.\n"),
    (["-t", "0", "hello"], "kioskctl: --timeout wants milliseconds, a whole number > 0, "
                           "not '0'\nTry 'kioskctl --help'.\n"),
    (["--timeout", "abc", "hello"], None),
    (["hello", "--timeout", "-5"], None),
    (["events", "-n", "0"], "kioskctl: events: --count wants a whole number > 0, not '0'\n"
                            "Try 'kioskctl events --help'.\n"),
    (["--device", "x", "hello"], "kioskctl: --device goes after its command: kioskctl call "
                                 "CMD --device\nTry 'kioskctl --help'.\n"),
    (["-d", "x", "hello"], "kioskctl: --device goes after its command: kioskctl call "
                           "CMD --device\nTry 'kioskctl --help'.\n"),
    (["-f", "events"], "kioskctl: --follow goes after its command: kioskctl events "
                       "--follow\nTry 'kioskctl --help'.\n"),
    (["hello", "-f"], "kioskctl: hello: --follow does not apply to hello\n"
                      "Try 'kioskctl hello --help'.\n"),
    (["status", "--device", "x"], None),
    (["call", "a.b", "--count", "2"], None),
])
def test_usage_errors_exit_2(args, msg):
    r = ctl(*args, sock=NOSOCK)
    assert r.rc == 2, r
    assert r.out == ""
    if msg is not None:
        assert r.err == msg, r
    assert re.search(r"\nTry 'kioskctl (\w+ )?--help'\.\n$", "\n" + r.err), r


def test_no_command_prints_usage_exit_2():
    r = ctl()
    assert r.rc == 2 and r.out == "", r
    assert r.err.startswith("Usage: kioskctl ")


# ---- a daemon that goes away, refuses, or is not a daemon ----

def test_daemon_killed_mid_call_exit_3(d):
    bg = Bg("call", "cardreader.wait", sock=d.ui_sock)
    wait_until(lambda: dev_state(d) == "busy", 5, "cardreader.wait running")
    d.proc.kill()
    d.proc.wait()
    r = bg.finish(timeout=5)
    assert r.rc == 3, r
    assert r.out == ""
    assert r.err == "kioskctl: cardreader.wait: daemon closed the connection\n", r


def test_interrupt_cancels_the_call(d):
    bg = Bg("call", "cardreader.wait", sock=d.ui_sock)
    wait_until(lambda: dev_state(d) == "busy", 5, "cardreader.wait running")
    bg.p.send_signal(signal.SIGINT)
    r = bg.finish(timeout=5)
    assert r.rc == -signal.SIGINT, r
    wait_until(lambda: dev_state(d) == "ready", 5, "wait cancelled")
    assert card_status(d)["waiting"] is False
    # the card that comes next is not taken by a dead request
    assert ctl("sim", "card0", "insert", sock=d.admin_sock).rc == 0


@pytest.mark.parametrize("args,cmd", [
    (["hello"], "hello"), (["--json", "status"], "status"), (["devices"], "devices.list"),
    (["sim", "card0", "insert"], "sim.inject"), (["reload"], "config.reload"),
    (["events"], "events.subscribe"), (["call", "cardreader.status"], "cardreader.status")])
def test_too_many_clients_exit_5(kd, args, cmd):
    d = kd(daemon_section(max_clients=1) + CONF)
    # max_clients plus the 4 places admin.sock keeps for itself
    held = [Client(d.admin_sock) for _ in range(5)]
    for c in held:
        c.ok("hello")
    # the daemon answers and hangs up, maybe before kioskctl has written
    # its request: the answer must still be what kioskctl reports
    for _ in range(5):
        r = ctl(*args, sock=d.admin_sock)
        assert r.rc == 5, r
        assert r.out == ""
        assert r.err == "kioskctl: %s: not_permitted: too many clients (limit 5)\n" % cmd, r
    for c in held:
        c.close()
    wait_until(lambda: ctl("hello", sock=d.admin_sock).rc == 0, 5, "a free slot")


@pytest.fixture
def fake():
    """A Unix socket served by a thread: fake(answer) where answer is bytes
    to send after the first request line, None to stay silent, or "close"."""
    tmp = tempfile.mkdtemp(prefix="kctl-", dir="/tmp")
    path = os.path.join(tmp, "fake.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    conns = []
    got = []

    def start(answer):
        def serve():
            c, _ = srv.accept()
            conns.append(c)
            got.append(c.recv(65536))
            if answer == "close":
                c.close()
            elif answer is not None:
                c.sendall(answer)
        threading.Thread(target=serve, daemon=True).start()
        return path, got
    yield start
    srv.close()
    for c in conns:
        c.close()
    shutil.rmtree(tmp, ignore_errors=True)


def test_silent_daemon_client_timeout_exit_4(fake):
    path, got = fake(None)
    r = ctl("--timeout", "300", "hello", sock=path)
    assert r.rc == 4, r
    assert r.err == "kioskctl: hello: timeout: no reply from daemon within 300 ms\n", r
    # the daemon got 300 ms, kioskctl waited half a second longer
    assert r.elapsed >= 0.79
    req = json.loads(got[0].split(b"\n")[0])
    assert req == {"id": req["id"], "cmd": "hello", "timeout_ms": 300}, req


@pytest.mark.parametrize("answer,msg", [
    (b"this is not json\n", "malformed line from daemon: column 4: "),
    (b'{"foo": 1}\n', "malformed line from daemon: not a reply, progress or event: "),
    ("close", "daemon closed the connection\n"),
])
def test_broken_daemon_exit_3(fake, answer, msg):
    path, got = fake(answer)
    r = ctl("--timeout", "3000", "status", sock=path)
    assert r.rc == 3, r
    assert r.out == ""
    assert r.err.startswith("kioskctl: status: " + msg), r
