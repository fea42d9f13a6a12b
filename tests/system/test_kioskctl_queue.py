"""kioskctl queue and kioskctl sync: the outbox and delivery, as an admin
sees them (docs/kioskctl.md, docs/delivery.md).

Most tests run the real kioskctl against FakeDaemon: a socket that answers
queue.list, txn.get, queue.retry, sync.status and sync.kick with the reply
shapes of the daemon's wiring, and records every request so the tests see
what kioskctl asked for.  They were written before the daemon's side was
merged, and they still reach what a real daemon does not easily show:
exact tables, paging, every state at once, hostile strings, nonsense
numbers, a silent or vanishing daemon.

Tests marked "REAL-DAEMON:" should also be repeated against the real kioskd
(transactions queued through txn.submit, endpoints from tests/endpoint/).
The test_real_* tests at the end already do so for the main paths: counts,
list, show, retry of a transaction the reference endpoint rejected, sync
and --now, roles and errors."""

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading

import pytest

import kiosk
from kiosk import SLOW, Client, daemon_section, sim_device, wait_until
from test_kioskctl import NOSOCK, ctl, one_json_line, table

sys.path.insert(0, os.path.join(kiosk.REPO, "tests", "endpoint"))
from endpoint import Endpoint  # noqa: E402  (the reference endpoint)

COUNTS = {"queued": 3, "sending": 1, "delivered": 120, "failed": 2, "oldest_queued_s": 250}

T1 = {"txn_id": "01HF7Z3Q4W8V5R2N6M1K0J9H8G", "type": "gas.topup", "state": "queued",
      "endpoint": "gas", "attempts": 0, "created": "2026-12-04T15:20:00.123Z",
      "flow": "f-20261204-0001"}
T2 = {"txn_id": "01HF7Z3Q4W8V5R2N6M1K0J9H8H", "type": "gas.card_written", "state": "sending",
      "endpoint": "gas", "attempts": 2, "created": "2026-12-04T15:20:04.500Z",
      "flow": "f-20261204-0001", "final": True}
T3 = {"txn_id": "01HF7Z3Q4W8V5R2N6M1K0J9H8J", "type": "gas.topup", "state": "failed",
      "endpoint": "gas", "attempts": 1, "created": "2026-12-04T15:21:00.000Z",
      "reason": "card number unknown"}
T4 = {"txn_id": "01HF7Z3Q4W8V5R2N6M1K0J9H8K", "type": "visit.log", "state": "queued",
      "endpoint": None, "attempts": 0, "created": "2026-12-04T15:22:00.000Z"}
TXNS = [T1, T2, T3, T4]

# txn.get: everything a transaction may carry
TXN = dict(T3, payload={"card": "1234567890", "amount_fen": 5000, "order": "P-778812"},
           blobs=[{"id": "9f86d081884c7d65", "mime": "image/png", "size": 20311}],
           flow="f-20261204-0002", final=False)

ENDPOINTS = [
    {"name": "gas", "url": "https://gas.example/api", "state": "sending", "delivered": 120,
     "failed": 2, "inflight": 1},
    {"name": "fleet-mgmt", "url": "https://fleet.example/", "state": "backoff",
     "last_error": "HTTP 503", "next_attempt_s": 12.3, "delivered": 0, "failed": 0,
     "inflight": 0},
    {"name": "audit", "url": "https://audit.example/", "state": "down",
     "last_error": "connect: Connection refused", "next_attempt_s": 125, "delivered": 7,
     "failed": 0, "inflight": 0},
    {"name": "spare", "url": "https://spare.example/", "state": "idle", "delivered": 0,
     "failed": 0, "inflight": 0},
]
SYNC = {"endpoints": ENDPOINTS, "queue": COUNTS}


# ---- a daemon that only knows the outbox commands ----

class Err:
    def __init__(self, code, message):
        self.code, self.message = code, message


SILENT = object()


class FakeDaemon:
    """Serves JSON lines on a Unix socket: each request is recorded, then
    answered from self.answers[cmd] (a result, an Err, SILENT, or a function
    of the request giving one of those); unknown commands get
    unknown_command, as from kioskd."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="kctl-q-", dir="/tmp")
        self.path = os.path.join(self.tmp, "fake.sock")
        self.answers = {}
        self.requests = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(8)
        self.srv.settimeout(0.05)
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        c.settimeout(30)
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    req = json.loads(line)
                    self.requests.append(req)
                    reply = self._answer(req)
                    if reply is not None:
                        c.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            return

    def _answer(self, req):
        a = self.answers.get(req["cmd"])
        if callable(a):
            a = a(req)
        if a is SILENT:
            return None
        if a is None:
            a = Err("unknown_command", "unknown command '%s'" % req["cmd"])
        if isinstance(a, Err):
            return {"id": req["id"], "ok": False,
                    "error": {"code": a.code, "message": a.message}}
        return {"id": req["id"], "ok": True, "result": a}

    def sent(self):
        """[(cmd, args)] of every request so far; args None when absent."""
        return [(r["cmd"], r.get("args")) for r in self.requests]

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.srv.close()
        for c in self.conns:
            c.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def fd():
    f = FakeDaemon()
    f.answers.update({
        "queue.list": {"transactions": TXNS[:1], "next": None, "counts": COUNTS},
        "txn.get": TXN,
        "queue.retry": lambda req: {"txn_id": req["args"]["txn_id"], "state": "queued"},
        "sync.status": SYNC,
        "sync.kick": {"kicked": True},
    })
    yield f
    f.close()


def q(fd, *args):
    return ctl(*args, sock=fd.path)


# ---- queue: the counts ----

def test_queue_counts_human(fd):
    # REAL-DAEMON: the same with transactions in every state
    r = q(fd, "queue")
    assert r.rc == 0 and r.err == "", r
    assert r.out == ("STATE      TRANSACTIONS\n"
                     "queued     3\n"
                     "sending    1\n"
                     "delivered  120\n"
                     "failed     2\n"
                     "Oldest queued: 4m 10s\n"), r.out
    # one row is the least queue.list can be asked for: the counts come with it
    assert fd.sent() == [("queue.list", {"limit": 1})]


def test_queue_counts_json(fd):
    # REAL-DAEMON
    for args in (["--json", "queue"], ["queue", "-j"]):
        r = q(fd, *args)
        assert r.rc == 0 and r.err == "", r
        assert one_json_line(r.out) == COUNTS


def test_queue_counts_empty_store(fd):
    # REAL-DAEMON: a fresh store
    fd.answers["queue.list"] = {"transactions": [], "next": None,
                                "counts": {"queued": 0, "sending": 0, "delivered": 0,
                                           "failed": 0, "oldest_queued_s": None}}
    r = q(fd, "queue")
    assert r.rc == 0, r
    assert r.out == ("STATE      TRANSACTIONS\nqueued     0\nsending    0\ndelivered  0\n"
                     "failed     0\nOldest queued: -\n"), r.out


def test_queue_counts_long_wait(fd):
    fd.answers["queue.list"] = {"transactions": [], "next": None,
                                "counts": dict(COUNTS, oldest_queued_s=2 * 86400 + 3 * 3600 + 61.7)}
    r = q(fd, "queue")
    assert r.rc == 0 and r.out.endswith("\nOldest queued: 2d 3h 01m\n"), r


# ---- queue list ----

def test_queue_list_table_with_reasons(fd):
    # REAL-DAEMON: a failed transaction from the reference endpoint's 'rejected'
    fd.answers["queue.list"] = {"transactions": TXNS, "next": None, "counts": COUNTS}
    r = q(fd, "queue", "list")
    assert r.rc == 0 and r.err == "", r
    lines = r.out.rstrip("\n").split("\n")
    rows = table(lines)
    assert rows[0] == ["ID", "TYPE", "STATE", "ENDPOINT", "ATTEMPTS", "CREATED", "REASON"]
    assert rows[1:] == [[t["txn_id"], t["type"], t["state"], t["endpoint"] or "-",
                         str(t["attempts"]), t["created"], t.get("reason", "-")] for t in TXNS]
    # aligned: every row starts its STATE column at the same place
    at = lines[0].index("STATE")
    assert all(line[at - 2:at] == "  " and line[at] != " " for line in lines[1:]), lines
    assert not any(line.endswith(" ") for line in lines)
    # no filter given: no arguments sent, the daemon's defaults apply
    assert fd.sent() == [("queue.list", None)]


def test_queue_list_reason_column_only_when_failed(fd):
    fd.answers["queue.list"] = {"transactions": [T1, T2, T4], "next": None, "counts": COUNTS}
    r = q(fd, "queue", "list")
    assert r.rc == 0, r
    rows = table(r.out.rstrip("\n").split("\n"))
    assert rows[0] == ["ID", "TYPE", "STATE", "ENDPOINT", "ATTEMPTS", "CREATED"]
    assert [row[0] for row in rows[1:]] == [T1["txn_id"], T2["txn_id"], T4["txn_id"]]
    assert "more:" not in r.out


def test_queue_list_empty(fd):
    fd.answers["queue.list"] = {"transactions": [], "next": None, "counts": COUNTS}
    r = q(fd, "queue", "list", "--state", "failed")
    assert (r.rc, r.out, r.err) == (0, "No transactions.\n", ""), r


def test_queue_list_pages(fd):
    # REAL-DAEMON: more than --limit transactions, paged to the end
    pages = {None: ([T1, T2], T2["txn_id"]), T2["txn_id"]: ([T3, T4], None)}

    def page(req):
        txns, nxt = pages[req["args"].get("before")]
        return {"transactions": txns, "next": nxt, "counts": COUNTS}
    fd.answers["queue.list"] = page
    r = q(fd, "queue", "list", "--limit", "2")
    assert r.rc == 0, r
    lines = r.out.rstrip("\n").split("\n")
    assert lines[-1] == "more: --before " + T2["txn_id"], lines
    assert [row[0] for row in table(lines[1:-1])] == [T1["txn_id"], T2["txn_id"]]
    # the line says how to go on
    r = q(fd, "queue", "list", "--limit", "2", *lines[-1].split()[1:])
    assert r.rc == 0, r
    lines = r.out.rstrip("\n").split("\n")
    assert [row[0] for row in table(lines[1:])] == [T3["txn_id"], T4["txn_id"]]
    assert fd.sent() == [("queue.list", {"limit": 2}),
                         ("queue.list", {"limit": 2, "before": T2["txn_id"]})]


def test_queue_list_sends_every_filter(fd):
    # REAL-DAEMON: each filter narrows the list as it says
    want = {"state": "failed", "type": "gas.*", "flow": "f-20261204-0001", "unfinished": True,
            "limit": 1000, "before": T4["txn_id"]}
    for args in (["queue", "list", "--state", "failed", "--type", "gas.*", "--flow",
                  "f-20261204-0001", "--unfinished", "--limit", "1000", "--before",
                  T4["txn_id"]],
                 # = forms, and options before 'list' or after the words
                 ["queue", "--state=failed", "--type=gas.*", "list", "--flow=f-20261204-0001",
                  "--unfinished", "--limit=1000", "--before=" + T4["txn_id"]],
                 # the last --state wins
                 ["--json", "queue", "list", "--state", "queued", "--state", "failed",
                  "--type", "gas.*", "--flow", "f-20261204-0001", "--unfinished", "--limit",
                  "1000", "--before", T4["txn_id"]]):
        fd.requests.clear()
        r = q(fd, *args)
        assert r.rc == 0 and r.err == "", (args, r)
        assert fd.sent() == [("queue.list", want)], args
    for state in ("queued", "sending", "delivered", "failed"):
        fd.requests.clear()
        assert q(fd, "queue", "list", "--state", state).rc == 0
        assert fd.sent() == [("queue.list", {"state": state})]
    for limit in ("1", "100"):
        fd.requests.clear()
        assert q(fd, "queue", "list", "--limit", limit).rc == 0
        assert fd.sent() == [("queue.list", {"limit": int(limit)})]


def test_queue_list_json_is_the_result(fd):
    res = {"transactions": TXNS, "next": T4["txn_id"], "counts": COUNTS}
    fd.answers["queue.list"] = res
    r = q(fd, "--json", "queue", "list")
    assert r.rc == 0 and r.err == "", r
    assert one_json_line(r.out) == res


def test_queue_list_bad_filter_from_daemon_exit_1(fd):
    fd.answers["queue.list"] = Err("bad_request", "queue.list: 'type' is not a valid glob")
    r = q(fd, "queue", "list", "--type", "[")
    assert r.rc == 1 and r.out == "", r
    assert r.err == "kioskctl: queue.list: bad_request: queue.list: 'type' is not a valid glob\n"


def test_queue_list_terminal_safe(fd):
    # types and reasons come from the UI and the endpoint: no escape sequences reach the tty
    evil = dict(T3, type="gas.\x1b]0;pwned\x07topup", reason="no\x1b[2J \u009b31mway\x7f")
    fd.answers["queue.list"] = {"transactions": [evil], "next": None, "counts": COUNTS}
    r = q(fd, "queue", "list")
    assert r.rc == 0, r
    row = table(r.out.rstrip("\n").split("\n"))[1]
    assert row[1] == "gas.?]0;pwned?topup" and row[6] == "no?[2J ??31mway?", row
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f\u0080-\u009f]", r.out)


# ---- queue show ----

def test_queue_show(fd):
    # REAL-DAEMON: a submitted transaction, and one with personal data purged
    r = q(fd, "queue", "show", T3["txn_id"])
    assert r.rc == 0 and r.err == "", r
    assert r.out == json.dumps(TXN, indent=2) + "\n"
    assert fd.sent() == [("txn.get", {"txn_id": T3["txn_id"]})]
    r = q(fd, "queue", "show", T3["txn_id"], "--json")
    assert r.rc == 0 and r.out == json.dumps(TXN, separators=(",", ":")) + "\n", r


def test_queue_show_prints_what_is_there(fd):
    # only the fields the daemon sent: nothing is made up for missing ones
    fd.answers["txn.get"] = {"txn_id": "x1", "type": "t", "state": "queued", "endpoint": None,
                             "attempts": 0, "created": "2026-12-04T15:20:00.000Z",
                             "payload": {}}
    r = q(fd, "queue", "show", "x1")
    assert r.rc == 0 and json.loads(r.out) == fd.answers["txn.get"], r


def test_queue_show_terminal_safe(fd):
    # the payload is the UI's, the reason the endpoint's: indented JSON, but
    # C1 controls and DEL escaped like jansson escapes C0, so it is the same JSON
    txn = dict(TXN, reason="bad\x1b[31m \u009b2J x\x7f", payload={"name": "\u9ec4\u6893"})
    fd.answers["txn.get"] = txn
    r = q(fd, "queue", "show", T3["txn_id"])
    assert r.rc == 0, r
    assert json.loads(r.out) == txn
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f\u0080-\u009f]", r.out), r.out
    assert '"reason": "bad\\u001B[31m \\u009B2J x\\u007F"' in r.out
    assert "\u9ec4\u6893" in r.out  # other text stays readable


def test_queue_show_unknown_exit_1(fd):
    # REAL-DAEMON
    fd.answers["txn.get"] = Err("bad_request", "txn.get: no transaction 'nope'")
    r = q(fd, "queue", "show", "nope")
    assert r.rc == 1 and r.out == "", r
    assert r.err == "kioskctl: txn.get: bad_request: txn.get: no transaction 'nope'\n"


# ---- queue retry ----

def test_queue_retry(fd):
    # REAL-DAEMON: the retried transaction reaches the endpoint
    r = q(fd, "queue", "retry", T3["txn_id"])
    assert (r.rc, r.out, r.err) == (0, T3["txn_id"] + " queued again\n", ""), r
    assert fd.sent() == [("queue.retry", {"txn_id": T3["txn_id"]})]
    r = q(fd, "--json", "queue", "retry", T3["txn_id"])
    assert r.rc == 0 and one_json_line(r.out) == {"txn_id": T3["txn_id"], "state": "queued"}


@pytest.mark.parametrize("message", ["queue.retry: no transaction 01HF7Z3Q4W8V5R2N6M1K0J9H8X",
                                     "queue.retry: 01HF7Z3Q4W8V5R2N6M1K0J9H8G is not failed"])
def test_queue_retry_refused_exit_1(fd, message):
    # REAL-DAEMON
    fd.answers["queue.retry"] = Err("bad_request", message)
    for extra in ([], ["--json"]):
        r = q(fd, *extra, "queue", "retry", message.split()[-1 if "no " in message else 1])
        assert r.rc == 1 and r.out == "", r
        assert r.err == "kioskctl: queue.retry: bad_request: %s\n" % message


# ---- the admin role ----

@pytest.mark.parametrize("args,cmd", [
    (["queue"], "queue.list"), (["queue", "list"], "queue.list"),
    (["--json", "queue", "list", "--state", "failed"], "queue.list"),
    (["queue", "retry", "x"], "queue.retry"), (["sync", "--now"], "sync.kick")])
def test_admin_commands_on_ui_sock_exit_5(fd, args, cmd):
    # REAL-DAEMON: on ui.sock
    fd.answers[cmd] = Err("not_permitted", "%s needs the admin role (admin.sock)" % cmd)
    r = q(fd, *args)
    assert r.rc == 5 and r.out == "", r
    assert r.err == "kioskctl: %s: not_permitted: %s needs the admin role (admin.sock)\n" % (
        cmd, cmd), r
    # sync --now did not go on to show the state
    assert [c for c, _ in fd.sent()] == [cmd]


# ---- sync ----

SYNC_HUMAN = ("NAME        STATE    INFLIGHT  DELIVERED  FAILED  NEXT-ATTEMPT  LAST-ERROR\n"
              "gas         sending  1         120        2       -             -\n"
              "fleet-mgmt  backoff  0         0          0       in 13s        HTTP 503\n"
              "audit       down     0         7          0       in 2m 05s     "
              "connect: Connection refused\n"
              "spare       idle     0         0          0       -             -\n"
              "\n"
              "Queue: 3 queued, 1 sending, 120 delivered, 2 failed; oldest queued 4m 10s\n")


def test_sync_human(fd):
    # REAL-DAEMON: endpoints from tests/endpoint/, one of them down
    r = q(fd, "sync")
    assert r.rc == 0 and r.err == "", r
    assert r.out == SYNC_HUMAN, r.out
    assert fd.sent() == [("sync.status", None)]


def test_sync_now_kicks_first(fd):
    # REAL-DAEMON: a backed-off endpoint sends at once
    r = q(fd, "sync", "--now")
    assert r.rc == 0 and r.err == "", r
    assert r.out == "Every endpoint was told to send now, backoff skipped.\n\n" + SYNC_HUMAN
    assert fd.sent() == [("sync.kick", None), ("sync.status", None)]
    # both on one connection
    assert len(fd.conns) == 1


def test_sync_json(fd):
    # REAL-DAEMON
    for args in (["--json", "sync"], ["sync", "--now", "--json"]):
        fd.requests.clear()
        r = q(fd, *args)
        assert r.rc == 0 and r.err == "", r
        # one line, sync.status's result (the kick's {"kicked": true} says nothing)
        assert one_json_line(r.out) == SYNC
    assert fd.sent() == [("sync.kick", None), ("sync.status", None)]


def test_sync_nothing_configured(fd):
    # REAL-DAEMON: no [endpoint] sections
    fd.answers["sync.status"] = {"endpoints": [], "queue": {
        "queued": 0, "sending": 0, "delivered": 0, "failed": 0, "oldest_queued_s": None}}
    r = q(fd, "sync")
    assert r.rc == 0 and r.out == ("No endpoints configured.\n\n"
                                   "Queue: 0 queued, 0 sending, 0 delivered, 0 failed\n"), r
    fd.answers["sync.status"] = {"endpoints": [], "queue": None}
    r = q(fd, "sync")
    assert r.rc == 0 and r.out == "No endpoints configured.\n\nQueue: -\n", r


def test_sync_next_attempt_rounding(fd):
    eps = [dict(ENDPOINTS[1], name="a", next_attempt_s=0),
           dict(ENDPOINTS[1], name="b", next_attempt_s=0.2),
           dict(ENDPOINTS[1], name="c", next_attempt_s=59.01),
           dict(ENDPOINTS[1], name="d", next_attempt_s=3600)]
    fd.answers["sync.status"] = {"endpoints": eps, "queue": COUNTS}
    r = q(fd, "sync")
    assert r.rc == 0, r
    rows = table(r.out.split("\n\n")[0].split("\n"))
    assert [row[5] for row in rows[1:]] == ["now", "in 1s", "in 1m 00s", "in 1h 00m"]


def test_nonsense_seconds(fd):
    # a daemon's clock gone wrong must not overflow kioskctl's conversions
    fd.answers["sync.status"] = {"endpoints": [dict(ENDPOINTS[1], next_attempt_s=-3),
                                               dict(ENDPOINTS[1], next_attempt_s=1e300)],
                                 "queue": dict(COUNTS, oldest_queued_s=-5)}
    r = q(fd, "sync")
    assert r.rc == 0, r
    rows = table(r.out.split("\n\n")[0].split("\n"))
    assert [row[5] for row in rows[1:]] == ["now", "in 11574074d 1h 46m"], rows
    assert r.out.endswith("; oldest queued 0s\n"), r.out
    fd.answers["queue.list"] = {"transactions": [], "next": None,
                                "counts": dict(COUNTS, oldest_queued_s=1e300)}
    r = q(fd, "queue")
    assert r.rc == 0 and r.out.endswith("\nOldest queued: 11574074d 1h 46m\n"), r


def test_sync_terminal_safe(fd):
    fd.answers["sync.status"] = {"endpoints": [dict(ENDPOINTS[2], last_error="TLS: \x1b[5m"
                                                    "certificate\u009b expired")],
                                 "queue": COUNTS}
    r = q(fd, "sync")
    assert r.rc == 0, r
    assert table(r.out.split("\n")[1:2])[0][6] == "TLS: ?[5mcertificate?? expired"


# ---- status shows the store's counts the same way ----

def test_status_queue_line_with_store(fd):
    # REAL-DAEMON: status of a daemon with a store
    fd.answers["status"] = {"daemon": {"version": "0.1.0", "pid": 42, "uptime_s": 3.5,
                                       "clients": 1, "config": "/etc/kioskd/kioskd.conf",
                                       "events_seq": 0},
                            "devices": [], "device_states": {}, "queue": COUNTS,
                            "endpoints": [{"name": "gas", "state": "idle"}]}
    r = q(fd, "status")
    assert r.rc == 0, r
    assert ("    Queue: 3 queued, 1 sending, 120 delivered, 2 failed; oldest queued 4m 10s\n"
            in r.out), r.out


# ---- usage errors (nothing is sent: NOSOCK would be exit 3) ----

@pytest.mark.parametrize("args,msg", [
    (["queue", "list", "--state", "lost"],
     "kioskctl: queue: --state wants queued, sending, delivered or failed, not 'lost'\n"
     "Try 'kioskctl queue --help'.\n"),
    (["queue", "list", "--limit", "0"],
     "kioskctl: queue: --limit wants a whole number from 1 to 1000, not '0'\n"
     "Try 'kioskctl queue --help'.\n"),
    (["queue", "list", "--limit", "1001"], None),
    (["queue", "list", "--limit", "ten"], None),
    (["queue", "list", "--limit", "-5"], None),
    (["queue", "list", "--type"],
     "kioskctl: queue: option '--type' needs an argument\nTry 'kioskctl queue --help'.\n"),
    (["queue", "--state", "failed"],
     "kioskctl: queue: --state applies to 'queue list' only\nTry 'kioskctl queue --help'.\n"),
    (["queue", "show", "x", "--unfinished"],
     "kioskctl: queue: --unfinished applies to 'queue list' only\n"
     "Try 'kioskctl queue --help'.\n"),
    (["queue", "retry", "x", "--limit", "3"], None),
    (["queue", "show"],
     "kioskctl: queue: missing TXN_ID; usage: kioskctl queue show TXN_ID\n"
     "Try 'kioskctl queue --help'.\n"),
    (["queue", "retry", "a", "b"],
     "kioskctl: queue: too many arguments; usage: kioskctl queue retry TXN_ID\n"
     "Try 'kioskctl queue --help'.\n"),
    (["queue", "list", "failed"],
     "kioskctl: queue: too many arguments; usage: kioskctl queue list [--state STATE] "
     "[--type GLOB] [--flow FLOW] [--unfinished] [--limit N] [--before TXN_ID]\n"
     "Try 'kioskctl queue --help'.\n"),
    (["queue", "frob"],
     "kioskctl: queue: unknown queue command 'frob' (list, show or retry)\n"
     "Try 'kioskctl queue --help'.\n"),
    (["queue", "--now"],
     "kioskctl: queue: --now does not apply to queue\nTry 'kioskctl queue --help'.\n"),
    (["queue", "list", "--device", "x"], None),
    (["sync", "--state", "failed"],
     "kioskctl: sync: --state does not apply to sync\nTry 'kioskctl sync --help'.\n"),
    (["sync", "now"],
     "kioskctl: sync: too many arguments; usage: kioskctl sync [--now]\n"
     "Try 'kioskctl sync --help'.\n"),
    (["status", "--limit", "3"], None),
    (["events", "--before", "x"], None),
    (["--state", "failed", "queue", "list"],
     "kioskctl: --state goes after its command: kioskctl queue list --state\n"
     "Try 'kioskctl --help'.\n"),
    (["--unfinished", "queue", "list"], None),
    (["--now", "sync"],
     "kioskctl: --now goes after its command: kioskctl sync --now\nTry 'kioskctl --help'.\n"),
    (["queue", "show", b"\xff\xfe"],
     "kioskctl: queue: TXN_ID is not valid UTF-8\nTry 'kioskctl queue --help'.\n"),
    (["queue", "list", "--flow", b"f-\xff"],
     "kioskctl: queue: --flow: the value is not valid UTF-8\nTry 'kioskctl queue --help'.\n"),
])
def test_usage_errors_exit_2(args, msg):
    r = ctl(*args, sock=NOSOCK)
    assert r.rc == 2 and r.out == "", r
    if msg is not None:
        assert r.err == msg, r
    assert re.search(r"\nTry 'kioskctl (\w+ )?--help'\.\n$", "\n" + r.err), r


def test_help_covers_every_option():
    r = ctl("queue", "--help", sock=NOSOCK)
    assert r.rc == 0 and r.err == "", r
    usage = r.out.split("\n\n")[0]
    for word in ("queue list", "queue show TXN_ID", "queue retry TXN_ID"):
        assert word in usage, usage
    for opt in ("--state STATE", "--type GLOB", "--flow FLOW", "--unfinished", "--limit N",
                "--before TXN_ID"):
        assert opt in usage and re.search(r"^  %s\s+\S" % re.escape(opt), r.out, re.M), opt
    for sub in ("list", "show", "retry"):
        r2 = ctl("queue", sub, "--help", sock=NOSOCK)
        assert (r2.rc, r2.out) == (0, r.out), sub
    r = ctl("sync", "--help", sock=NOSOCK)
    assert r.rc == 0 and r.out.startswith("Usage: kioskctl sync [--now]\n"), r
    assert re.search(r"^  --now\s+\S", r.out, re.M)
    assert "60 s\n                     for hello, status, devices, sim, reload, queue and\n" \
           "                     sync;" in r.out


# ---- connection and timeouts ----

@pytest.mark.parametrize("args,cmd", [
    (["queue"], "queue.list"), (["queue", "list"], "queue.list"),
    (["queue", "show", "x"], "txn.get"), (["queue", "retry", "x"], "queue.retry"),
    (["sync"], "sync.status"), (["sync", "--now"], "sync.kick")])
def test_missing_socket_exit_3(tmp_path, args, cmd):
    path = str(tmp_path / "missing.sock")
    r = ctl(*args, sock=path)
    assert r.rc == 3 and r.out == "", r
    assert r.err == ("kioskctl: %s: cannot connect to %s: No such file or directory "
                     "(is kioskd running?)\n" % (cmd, path)), r


@pytest.mark.parametrize("args,cmd", [
    (["queue"], "queue.list"), (["queue", "show", "x"], "txn.get"),
    (["sync", "--now"], "sync.kick"), (["sync"], "sync.status")])
def test_silent_daemon_exit_4(fd, args, cmd):
    fd.answers[cmd] = SILENT
    r = q(fd, "--timeout", "300", *args)
    assert r.rc == 4 and r.out == "", r
    assert r.err == "kioskctl: %s: timeout: no reply from daemon within 300 ms\n" % cmd, r
    # the daemon was given the same time (kioskctl then cancels the request)
    assert [x.get("timeout_ms") for x in fd.requests if x["cmd"] == cmd] == [300]


def test_daemon_gone_mid_sync_now_exit_3(fd):
    # the kick was answered, then the daemon went away before the status
    def close(req):
        for c in fd.conns:
            c.shutdown(socket.SHUT_RDWR)
        return SILENT
    fd.answers["sync.status"] = close
    r = q(fd, "sync", "--now")
    assert r.rc == 3, r
    assert r.err == "kioskctl: sync.status: daemon closed the connection\n", r


# ---- against the real daemon ----

CONF = daemon_section(log_level="info") + sim_device("card0", "cardreader", latency_ms=0)


@pytest.fixture
def real(kd):
    return kd(CONF)


def test_real_queue_and_sync(real):
    with Client(real.admin_sock) as c:
        counts = c.ok("queue.list", args={"limit": 1})["counts"]
        sync = c.ok("sync.status")
    r = ctl("--json", "queue", sock=real.admin_sock)
    assert r.rc == 0 and one_json_line(r.out) == counts, r
    r = ctl("queue", sock=real.admin_sock)
    assert r.rc == 0 and r.err == "", r
    assert r.out == ("STATE      TRANSACTIONS\nqueued     0\nsending    0\ndelivered  0\n"
                     "failed     0\nOldest queued: -\n"), r.out
    r = ctl("queue", "list", "--state", "failed", sock=real.admin_sock)
    assert (r.rc, r.out, r.err) == (0, "No transactions.\n", ""), r
    r = ctl("--json", "sync", sock=real.ui_sock)
    assert r.rc == 0 and one_json_line(r.out)["endpoints"] == sync["endpoints"], r
    r = ctl("sync", "--now", sock=real.admin_sock)
    assert r.rc == 0 and r.out == ("Every endpoint was told to send now, backoff skipped.\n\n"
                                   "No endpoints configured.\n\n"
                                   "Queue: 0 queued, 0 sending, 0 delivered, 0 failed\n"), r


def test_real_errors_and_roles(real):
    r = ctl("queue", "show", "no-such-txn", sock=real.ui_sock)
    assert r.rc == 1 and r.err.startswith("kioskctl: txn.get: bad_request: "), r
    r = ctl("queue", "retry", "no-such-txn", sock=real.admin_sock)
    assert r.rc == 1 and r.err.startswith("kioskctl: queue.retry: bad_request: "), r
    # the filter is the daemon's to judge: its refusal is exit status 1
    r = ctl("queue", "list", "--type", "Gas Topup", sock=real.admin_sock)
    assert r.rc == 1 and r.out == "", r
    assert r.err.startswith("kioskctl: queue.list: bad_request: "), r
    for args, cmd in ((["queue"], "queue.list"), (["queue", "list"], "queue.list"),
                      (["queue", "retry", "x"], "queue.retry"), (["sync", "--now"], "sync.kick")):
        r = ctl(*args, sock=real.ui_sock)
        assert r.rc == 5 and r.out == "", (args, r)
        assert r.err.startswith("kioskctl: %s: not_permitted: " % cmd), (args, r)


@pytest.fixture
def endpoint(tmp_path):
    ep = Endpoint(str(tmp_path / "endpoint")).start()
    yield ep
    ep.stop()


def test_real_rejected_transaction_listed_shown_retried(kd, endpoint):
    d = kd(CONF + endpoint.conf("gas") + "\n[route]\ngas.* = gas\n")
    with Client(d.ui_sock) as c:
        good = c.ok("txn.submit", args={"type": "gas.topup",
                                        "payload": {"card": "1", "amount_fen": 5000}})["txn_id"]
        bad = c.ok("txn.submit", args={"type": "gas.topup",
                                       "payload": {"card": "2", "reject": "card number unknown"}}
                   )["txn_id"]

    def counts():
        with Client(d.admin_sock) as c:
            return c.ok("queue.list", args={"limit": 1})["counts"]
    r = ctl("queue", sock=d.admin_sock)
    assert r.rc == 0 and "queued     2\n" in r.out, r
    assert re.search(r"^Oldest queued: \d+s$", r.out, re.M), r.out
    # --now: past the start-up delay at once
    r = ctl("sync", "--now", sock=d.admin_sock)
    assert r.rc == 0 and r.out.startswith("Every endpoint was told to send now"), r
    assert re.search(r"^gas  ", r.out, re.M), r.out
    wait_until(lambda: counts()["failed"] == 1 and counts()["delivered"] == 1, 15 * SLOW,
               "one delivered, one rejected")

    r = ctl("queue", "list", sock=d.admin_sock)
    assert r.rc == 0 and r.err == "", r
    rows = table(r.out.rstrip("\n").split("\n"))
    assert rows[0] == ["ID", "TYPE", "STATE", "ENDPOINT", "ATTEMPTS", "CREATED", "REASON"]
    by_id = {row[0]: row for row in rows[1:]}
    assert by_id[bad][1:5] == ["gas.topup", "failed", "gas", "1"], rows
    assert by_id[bad][6] == "card number unknown", rows
    assert by_id[good][2] == "delivered" and by_id[good][6] == "-", rows
    r = ctl("queue", "list", "--state", "failed", sock=d.admin_sock)
    assert [row[0] for row in table(r.out.rstrip("\n").split("\n")[1:])] == [bad], r

    r = ctl("queue", "show", bad, sock=d.ui_sock)
    assert r.rc == 0, r
    txn = json.loads(r.out)
    assert r.out == json.dumps(txn, indent=2) + "\n"
    assert (txn["txn_id"], txn["state"], txn["reason"]) == (bad, "failed", "card number unknown")
    assert txn["payload"]["card"] == "2"

    r = ctl("sync", sock=d.ui_sock)
    assert r.rc == 0, r
    gas = table(r.out.split("\n")[1:2])[0]
    assert gas[0] == "gas" and gas[3:5] == ["1", "1"], r.out

    # a delivered one cannot be retried; the failed one can, and the
    # reference endpoint judges it again: rejected again
    r = ctl("queue", "retry", good, sock=d.admin_sock)
    assert r.rc == 1 and r.err.startswith("kioskctl: queue.retry: bad_request: "), r
    r = ctl("queue", "retry", bad, sock=d.admin_sock)
    assert (r.rc, r.out, r.err) == (0, bad + " queued again\n", ""), r
    wait_until(lambda: endpoint.stats().get("items_rejected") == 2, 15 * SLOW,
               "the retried transaction at the endpoint")
    wait_until(lambda: counts()["failed"] == 1, 15 * SLOW, "rejected again")
