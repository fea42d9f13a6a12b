"""The transaction store through the real daemon (issue 3, docs/delivery.md,
docs/protocol.md "Transactions and delivery"): txn.submit / txn.get /
txn.list over the socket, delivery to the reference endpoint
(tests/endpoint/), flows across restarts, personal data at rest and its
purge, a full disk, a corrupt database at start.

The unit tests (tests/unit/test_store.c, test_powerloss.c) drive store.c
directly; these go end to end: request line -> group commit -> SQLite on
disk -> curl -> endpoint ledger.  The kill -9 soak and the recovery of rows
left `sending` are in test_crash.py (which imports the helpers below)."""

import base64
import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time

import pytest

import kiosk
from kiosk import daemon_section, sim_device, wait_until


PAYLOAD_MAX = 256 * 1024  # docs/protocol.md: txn.submit payload "at most 256 KiB as JSON"

# Fast delivery for tests: no start-up delay, short backoff.
FAST = dict(startup_delay_ms=0, backoff_min_ms=20, backoff_max_ms=200)


# ---------------------------------------------------------------- helpers

def config(ep=None, store=None, routes=None, devices="", ep_opts=None, **daemon):
    """kioskd.conf: [daemon] (kiosk_id K0001), [store], [endpoint main]
    pointing at ep with FAST timings (ep_opts: more keys, or others),
    [route] (default * = main)."""
    daemon.setdefault("kiosk_id", "K0001")
    text = daemon_section(**daemon)
    if store:
        text += "[store]\n" + "".join("%s = %s\n" % kv for kv in store.items()) + "\n"
    if ep is not None:
        text += ep.conf("main", **dict(FAST, **(ep_opts or {}))) + "\n"
        if routes is None:
            routes = {"*": "main"}
    if routes:
        text += "[route]\n" + "".join("%s = %s\n" % kv for kv in routes.items()) + "\n"
    return text + devices


def restart(d, kill=False, wait_ready=True):
    """Stop the daemon (SIGTERM, checked; or SIGKILL) and start it again on
    the same directory.  The harness keeps old notifications, so they are
    cleared here: READY=1 must come from the new process."""
    if kill:
        d.kill()
        d.close_clients()
    else:
        d.stop()
    for f in (d.notify_sock, d.logfile):
        if f is not None:
            f.close()
    d.notifications = []
    return d.start(wait_ready=wait_ready)


def submit(c, **args):
    return c.ok("txn.submit", args=args)


def get(c, tid):
    return c.ok("txn.get", args={"txn_id": tid})


def wait_txn_state(c, ids, state="delivered", timeout=10.0):
    """Poll txn.get until every id is in state; returns {id: txn}."""
    ids = list(ids)
    last = {}

    def check():
        for t in ids:
            if t not in last or last[t]["state"] != state:
                last[t] = get(c, t)
        return all(last[t]["state"] == state for t in ids)

    try:
        wait_until(check, timeout, "transactions %s" % state, interval=0.02)
    except AssertionError:
        bad = {t: last.get(t, {}).get("state") for t in ids if last.get(t, {}).get("state") != state}
        raise AssertionError("not %s: %r" % (state, bad))
    return last


def list_ids(c, **flt):
    return [t["txn_id"] for t in c.ok("txn.list", args=flt)["transactions"]]


def db_files(state_dir):
    """The database, its WAL and shared memory, and every blob spool file."""
    out = [p for p in glob.glob(os.path.join(state_dir, "kioskd.db*")) if os.path.isfile(p)]
    out += [p for p in glob.glob(os.path.join(state_dir, "blobs", "*")) if os.path.isfile(p)]
    return out


@contextlib.contextmanager
def db_copy(db_path):
    """sqlite3 on a copy of the database and its WAL: the daemon's files
    stay as they are (sqlite3 would checkpoint them), even after a kill."""
    tmp = tempfile.mkdtemp(prefix="kd-db-", dir="/tmp")
    try:
        dst = os.path.join(tmp, "copy.db")
        shutil.copyfile(db_path, dst)
        if os.path.exists(db_path + "-wal"):
            shutil.copyfile(db_path + "-wal", dst + "-wal")
        db = sqlite3.connect(dst)
        try:
            yield db
        finally:
            db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def integrity(db_path):
    """PRAGMA integrity_check of a copy of the database and its WAL."""
    with db_copy(db_path) as db:
        return [r[0] for r in db.execute("PRAGMA integrity_check")]


def write_key(path, key=None):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key if key is not None else os.urandom(32))
    return path




# ---------------------------------------------------------------- 1. submit, get, list

def test_submit_get_roundtrip(kd, ep):
    d = kd(config(ep))
    c = d.client()
    payload = {"card": "8860012345", "amount_fen": 5000, "order": "P-778812",
               "nested": {"a": [1, 2.5, None, True, "\u00e9\u4e2d"]}}
    r = submit(c, type="gas.topup", payload=payload, flow="f-1")
    assert set(r) == {"txn_id", "state", "endpoint"} and r["endpoint"] == "main"
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", r["txn_id"]), r  # a ULID
    t = wait_txn_state(c, [r["txn_id"]])[r["txn_id"]]
    assert t["payload"] == payload and t["type"] == "gas.topup" and t["flow"] == "f-1"
    assert t["final"] is False and t["attempts"] == 1 and "delivered" in t
    a = ep.applied_one(r["txn_id"])
    assert a["payload"] == payload and a["type"] == "gas.topup" and a["flow"] == "f-1"
    assert a["final"] is False and a["kiosk"] == "K0001" and a["received"] == 1
    assert ep.violations() == []
    e = c.err("txn.get", args={"txn_id": "NOPE-0001"})
    assert e["code"] == "bad_request" and "no transaction" in e["message"]


BAD_SUBMITS = [
    ({"type": "Gas.Topup", "payload": {}}, "type:"),
    ({"type": "", "payload": {}}, "type:"),
    ({"type": "x" * 65, "payload": {}}, "type:"),
    ({"type": "gas topup", "payload": {}}, "type:"),
    ({"type": 7, "payload": {}}, "type"),
    ({"payload": {}}, "type"),
    ({"type": "t"}, "payload:"),
    ({"type": "t", "payload": [1, 2]}, "payload:"),
    ({"type": "t", "payload": "{}"}, "payload:"),
    ({"type": "t", "payload": None}, "payload:"),
    ({"type": "t", "payload": {"pad": "x" * (PAYLOAD_MAX - 9)}}, "at most"),
    ({"type": "t", "payload": {"a": 1}, "pii": ["b"]}, "not a key of payload"),
    ({"type": "t", "payload": {"a": 1}, "pii": "a"}, "pii:"),
    ({"type": "t", "payload": {"a": 1}, "pii": [1]}, "pii[0]"),
    ({"type": "t", "payload": {"a": 1}, "pii": ["a", "a"]}, "listed twice"),
    ({"type": "t", "payload": {}, "blobs": ["ab" * 32]}, "no blob"),
    ({"type": "t", "payload": {}, "blobs": ["AB" * 32]}, "blobs[0]"),
    ({"type": "t", "payload": {}, "blobs": ["../../etc/passwd"]}, "blobs[0]"),
    ({"type": "t", "payload": {}, "blobs": "ab" * 32}, "blobs:"),
    ({"type": "t", "payload": {}, "blobs": [{"id": "ab" * 32, "x": 1}]}, "blobs[0]"),
    ({"type": "t", "payload": {}, "txn_id": ""}, "txn_id:"),
    ({"type": "t", "payload": {}, "txn_id": "a b"}, "txn_id:"),
    ({"type": "t", "payload": {}, "txn_id": "x/y"}, "txn_id:"),
    ({"type": "t", "payload": {}, "txn_id": "x" * 65}, "txn_id:"),
    ({"type": "t", "payload": {}, "txn_id": 12}, "txn_id:"),
    ({"type": "t", "payload": {}, "flow": "f 1"}, "flow:"),
    ({"type": "t", "payload": {}, "final": "yes"}, "final:"),
    ({"type": "t", "payload": {}, "extra": 1}, "unknown key"),
]


def test_submit_bad_input(kd, ep):
    d = kd(config(ep))
    c = d.client()
    for args, what in BAD_SUBMITS:
        e = c.err("txn.submit", args=args)
        assert e["code"] == "bad_request", (args, e)
        assert e["message"].startswith("txn.submit: ") and what in e["message"], (str(args)[:120], e)
    # not an object at all
    assert c.err("txn.submit", args=None)["code"] == "bad_request"
    # nothing of it was stored, nothing sent
    a = d.admin()
    counts = a.ok("queue.list")["counts"]
    assert (counts["queued"], counts["sending"], counts["delivered"], counts["failed"]) == (0, 0, 0, 0)
    assert c.ok("txn.list")["transactions"] == []
    # the daemon still works, and the largest payload is accepted
    big = {"pad": "x" * (PAYLOAD_MAX - 10)}
    assert len(json.dumps(big, separators=(",", ":"))) == PAYLOAD_MAX
    r = submit(c, type="t", payload=big)
    wait_txn_state(c, [r["txn_id"]])
    assert ep.applied_one(r["txn_id"])["payload"] == big
    assert ep.stats()["applied"] == 1


def test_idempotent_txn_id(kd, ep):
    d = kd(config(ep, routes={"gas.*": "main"}))
    c = d.client()
    args = {"type": "gas.topup", "payload": {"card": "1", "amount_fen": 5000, "order": "P-1"},
            "txn_id": "ui-0001", "flow": "f-9"}
    r1 = submit(c, **args)
    assert r1["txn_id"] == "ui-0001"
    # the same again (keys in another order): the stored transaction
    r2 = submit(c, type="gas.topup", flow="f-9", txn_id="ui-0001",
                payload={"order": "P-1", "amount_fen": 5000, "card": "1"})
    assert r2["txn_id"] == "ui-0001" and r2["endpoint"] == "main"
    # the same id with other content: refused, the first one unchanged
    for other in ({"payload": {"card": "1", "amount_fen": 5001, "order": "P-1"}},
                  {"type": "gas.refund"},
                  {"payload": {"card": "1", "amount_fen": 5000}}):
        e = c.err("txn.submit", args=dict(args, **other))
        assert e["code"] == "bad_request" and "already used" in e["message"], e
    # flow, final, pii and blobs are part of the content too: a reused id
    # that changes them must not be answered with the stored transaction
    # (a "final" acknowledged but never recorded leaves its flow open)
    for other in ({"final": True}, {"flow": "f-10"}, {"flow": None}):
        a2 = {k: v for k, v in dict(args, **other).items() if v is not None}
        r = c.call("txn.submit", args=a2)
        assert r["ok"] is False and r["error"]["code"] == "bad_request", (other, r)
        assert "already used" in r["error"]["message"], r
    assert get(c, "ui-0001")["final"] is False and get(c, "ui-0001")["flow"] == "f-9"
    # twice in one write: both land in one group commit, one row
    line = json.dumps({"id": 900, "cmd": "txn.submit", "args": dict(args, txn_id="ui-0002")})
    c.send_raw(line + "\n" + line.replace('"id": 900', '"id": 901') + "\n")
    assert c.reply(900)["result"]["txn_id"] == c.reply(901)["result"]["txn_id"] == "ui-0002"
    # a transaction no route matches is kept, never sent, and idempotent too
    n1 = submit(c, type="visit.log", payload={"v": 1}, txn_id="ui-0003")
    assert n1["endpoint"] is None
    assert submit(c, type="visit.log", payload={"v": 1}, txn_id="ui-0003")["endpoint"] is None
    wait_txn_state(c, ["ui-0001", "ui-0002"])
    assert sorted(list_ids(c)) == ["ui-0001", "ui-0002", "ui-0003"]
    # after delivery and a restart: the same submission answers the stored
    # state, and nothing is sent again
    restart(d)
    c = d.client()
    r3 = submit(c, **args)
    assert r3 == {"txn_id": "ui-0001", "state": "delivered", "endpoint": "main"}
    assert get(c, "ui-0003")["state"] == "queued"
    e = c.err("txn.submit", args=dict(args, payload={"card": "2"}))
    assert e["code"] == "bad_request"
    assert ep.applied_ids() == {"ui-0001": 1, "ui-0002": 1}
    assert ep.applied_one("ui-0001")["payload"] == args["payload"]
    assert ep.violations() == []


def test_list_filters_and_paging(kd, ep):
    d = kd(config(ep, routes={"gas.*": "main"}))
    c = d.client()
    ids = {}
    ids["t1"] = submit(c, type="gas.topup", payload={"n": 1}, flow="F1")["txn_id"]
    ids["w1"] = submit(c, type="gas.card_written", payload={"n": 2}, flow="F1", final=True)["txn_id"]
    ids["t2"] = submit(c, type="gas.topup", payload={"n": 3}, flow="F2")["txn_id"]
    ids["rej"] = submit(c, type="gas.refund", payload={"n": 4, "reject": "refund refused"})["txn_id"]
    water = [submit(c, type="water.topup", payload={"n": 100 + i}, flow="W%d" % (i % 2),
                    final=(i == 3))["txn_id"]
             for i in range(25)]
    wait_txn_state(c, [ids["t1"], ids["w1"], ids["t2"]])
    failed = wait_txn_state(c, [ids["rej"]], "failed")[ids["rej"]]
    assert failed["reason"] == "refund refused"

    everything = list_ids(c, limit=1000)
    assert len(everything) == 29
    assert everything == list(reversed([ids["t1"], ids["w1"], ids["t2"], ids["rej"]] + water))
    assert list_ids(c) == everything  # default limit 100
    # type glob
    assert set(list_ids(c, type="gas.*")) == {ids["t1"], ids["w1"], ids["t2"], ids["rej"]}
    assert set(list_ids(c, type="gas.topup")) == {ids["t1"], ids["t2"]}
    assert set(list_ids(c, type="*.card_?ritten")) == {ids["w1"]}
    assert list_ids(c, type="water.*") == list(reversed(water))
    assert list_ids(c, type="nothing.*") == []
    # state
    assert set(list_ids(c, state="delivered")) == {ids["t1"], ids["w1"], ids["t2"]}
    assert list_ids(c, state="failed") == [ids["rej"]]
    assert list_ids(c, state="queued") == list(reversed(water))  # no route: kept, never sent
    assert list_ids(c, state="sending") == []
    # flow
    assert list_ids(c, flow="F1") == [ids["w1"], ids["t1"]]
    assert list_ids(c, flow="W1") == list(reversed(water[1::2]))
    # unfinished: F2 (no final); W0 has none either; F1 and W1 (i == 3) are finished
    assert list_ids(c, unfinished=True) == list(reversed([ids["t2"]] + water[0::2]))
    assert list_ids(c, unfinished=True, type="gas.*") == [ids["t2"]]
    # combined
    assert list_ids(c, type="gas.*", state="delivered", flow="F1") == [ids["w1"], ids["t1"]]
    # time
    assert list_ids(c, since="2000-01-01T00:00:00Z") == everything
    assert list_ids(c, until="2000-01-01T00:00:00Z") == []
    assert list_ids(c, since=int(time.time() * 1000) + 3600_000) == []
    # rows carry no payload
    row = c.ok("txn.list", args={"flow": "F2"})["transactions"][0]
    assert "payload" not in row and row["type"] == "gas.topup" and row["final"] is False
    # paging: limit + before (the last txn_id of the previous page)
    pages, before = [], None
    while True:
        flt = {"type": "water.*", "limit": 10}
        if before:
            flt["before"] = before
        page = list_ids(c, **flt)
        if not page:
            break
        assert len(page) <= 10
        pages.append(page)
        before = page[-1]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == list(reversed(water))
    # bad filters
    for flt, what in [({"state": "done"}, "state:"), ({"limit": 0}, "limit:"),
                      ({"limit": 1001}, "limit:"), ({"limit": "5"}, "limit:"),
                      ({"before": "no-such-id"}, "before:"), ({"unfinished": 1}, "unfinished:"),
                      ({"type": "Gas.*"}, "type:"), ({"since": "yesterday"}, "since:"),
                      ({"flow": "f 1"}, "flow:"), ({"colour": "red"}, "unknown filter")]:
        e = c.err("txn.list", args=flt)
        assert e["code"] == "bad_request" and what in e["message"], (flt, e)


def test_list_next_cursor(kd, ep):
    """docs/protocol.md txn.list: "before (a txn_id, for the next page; the
    reply's next)" -- kioskctl queue list prints "more: --before <next>"
    from it.  A full page must say where the next one starts; the last
    page says null."""
    d = kd(config())  # no endpoint: everything stays queued
    c = d.client()
    ids = [submit(c, type="x.item", payload={"i": i})["txn_id"] for i in range(5)]
    page = c.ok("txn.list", args={"limit": 3})
    assert [t["txn_id"] for t in page["transactions"]] == ids[:1:-1]
    assert "next" in page, "txn.list reply has no 'next': %r" % sorted(page)
    assert page["next"] == ids[2]
    rest = c.ok("txn.list", args={"limit": 3, "before": page["next"]})
    assert [t["txn_id"] for t in rest["transactions"]] == ids[1::-1]
    assert rest.get("next", "missing") is None


def test_scan_blobs_delivered(kd, ep):
    """Blobs from a real (simulated) scan: referenced by a transaction,
    delivered inside its batch; the endpoint checks the base64 data against
    the id (sha256) and the size."""
    d = kd(config(ep, devices=sim_device("scan0", "scanner", latency_ms=0)))
    c = d.client()
    ep.down()  # hold the batch until both transactions are queued
    pages = c.ok("scanner.scan", args={"pages": 2, "source": "adf", "resolution": 100},
                 timeout=20)["pages"]
    blobs = [p["blob"] for p in pages]
    assert len(set(blobs)) == 2 and all(kiosk.hexid(b) for b in blobs)
    for b in blobs:
        # no key configured: the spool file is the content itself
        with open(os.path.join(d.state_dir, "blobs", b), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == b
    t1 = submit(c, type="doc.scan", payload={"doc": "lease"},
                blobs=[{"id": blobs[0], "mime": "image/png"}, blobs[1]])["txn_id"]
    t2 = submit(c, type="doc.scan", payload={"doc": "copy"}, blobs=[blobs[0]])["txn_id"]
    t = get(c, t1)
    sizes = {b["id"]: b["size"] for b in t["blobs"]}
    assert [b["id"] for b in t["blobs"]] == blobs and t["blobs"][0]["mime"] == "image/png"
    assert "mime" not in t["blobs"][1]
    for b in blobs:
        assert sizes[b] == os.path.getsize(os.path.join(d.state_dir, "blobs", b))
    ep.up()
    d.admin().ok("sync.kick")
    wait_txn_state(c, [t1, t2])
    for tid, want in ((t1, blobs), (t2, blobs[:1])):
        got = ep.applied_one(tid)["blobs"]
        # sha256 is computed by the endpoint from the base64 data it got
        assert [b["sha256"] for b in got] == want, got
        assert [b["id"] for b in got] == want and [b["size"] for b in got] == [sizes[b] for b in want]
    assert ep.stats().get("items_rejected", 0) == 0 and ep.violations() == []


# ---------------------------------------------------------------- 2. flows across restarts

@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_flow_unfinished_after_restart(kd, ep, how):
    d = kd(config(ep))
    c = d.client()
    topup = submit(c, type="gas.topup", flow="F-open", payload={"amount_fen": 5000})["txn_id"]
    done1 = submit(c, type="gas.topup", flow="F-done", payload={"amount_fen": 100})["txn_id"]
    done2 = submit(c, type="gas.card_written", flow="F-done", final=True, payload={"ok": 1})["txn_id"]
    wait_txn_state(c, [topup, done1, done2])
    log_before = len(d.log())
    restart(d, kill=how == "sigkill")
    # loud in the log ...
    new_log = d.log()[log_before:]
    lines = [l for l in new_log.splitlines() if "unfinished flow" in l]
    assert len(lines) == 1 and " warning: 1 unfinished flow " in lines[0], new_log
    # ... replayed to a new subscriber of flow.* ...
    c = d.client()
    c.ok("events.subscribe", args={"topics": ["flow.*"]})
    ev = c.event("flow.unfinished")
    assert ev["data"]["flow"] == "F-open" and ev["data"]["txns"] == [topup]
    assert ev["data"]["types"] == ["gas.topup"] and "device" not in ev
    assert ev["data"]["first"] == ev["data"]["last"] == get(c, topup)["created"]
    c.ok("hello")  # a barrier: every replayed event came before this reply
    assert [e for e in c.events if e["event"] == "flow.unfinished"] == []
    # ... not to a subscriber of other topics ...
    other = d.client()
    other.ok("events.subscribe", args={"topics": ["sync.*", "device.*"]})
    other.ok("hello")
    assert other.events == []
    # ... and listed
    assert list_ids(c, unfinished=True) == [topup]
    # the final transaction closes it
    fin = submit(c, type="gas.card_written", flow="F-open", final=True, payload={"ok": 1})["txn_id"]
    assert list_ids(c, unfinished=True) == []
    assert list_ids(c, flow="F-open") == [fin, topup]
    wait_txn_state(c, [fin])
    log_before = len(d.log())
    restart(d, kill=how == "sigkill")
    assert "unfinished flow" not in d.log()[log_before:]
    c = d.client()
    c.ok("events.subscribe", args={"topics": ["flow.*"]})
    c.ok("hello")
    assert c.events == []
    assert list_ids(c, unfinished=True) == []
    assert set(ep.applied_ids()) == {topup, done1, done2, fin}


# ---------------------------------------------------------------- 3. personal data

# Values used with personal data; none may reach a log or a file in clear.
NAME = "Ouyang Xiuying"
NAME_ZH = "\u6b27\u9633\u79c0\u82f1"
ID_NUMBER = "440304198512317965"      # 18 digits
CARD = "6222021234567890123"           # a bank-card-like number
PHONE = "13800138000"
PII_VALUES = (NAME, NAME_ZH, ID_NUMBER, CARD, PHONE)


def needles(values):
    """Every byte form a value could take in a file: UTF-8, JSON-escaped."""
    out = set()
    for v in values:
        out.add(v.encode())
        out.add(json.dumps(v).strip('"').encode())
        out.add(json.dumps(v, ensure_ascii=False).strip('"').encode())
        out.add(base64.b64encode(v.encode()).rstrip(b"="))
    return out


def files_with(paths, values):
    found = []
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        for n in needles(values):
            if n in data:
                found.append((os.path.basename(p), n))
    return found


def test_pii_at_rest_purge_and_logs(kd, ep):
    d = kd("", start=False, args=["--debug"])
    key = write_key(os.path.join(d.tmp, "store.key"))
    d.write_conf(config(ep, store={"key_file": key, "pii_retention_s": 1},
                        devices=sim_device("id0", "idreader", latency_ms=0), log_level="debug"))
    d.start()
    assert d.log_lines(r"personal data is encrypted at rest")
    c, a = d.client(), d.admin()
    ep.down()  # keep everything in the store while its files are searched
    a.ok("sim.inject", "id0", {"what": "place", "identity": {
        "name": NAME_ZH, "id_number": ID_NUMBER, "address": "Futian Lianhua Road 77"}})
    ident = c.ok("idreader.read", timeout=10)
    photo = ident["photo"]
    assert kiosk.hexid(photo) and "photo" in ident["pii"]
    payload = {"name": NAME, "name_zh": NAME_ZH, "id_number": ID_NUMBER, "card": CARD,
               "phone": PHONE, "amount_fen": 5000, "order": "P-778812"}
    pii = ["name", "name_zh", "id_number", "card", "phone"]
    t1 = submit(c, type="id.verify", payload=payload, pii=pii, flow="F-pii",
                blobs=[{"id": photo, "mime": "image/png"}], txn_id="pii-0001")["txn_id"]
    # the same again: compared through the encryption
    assert submit(c, type="id.verify", payload=payload, pii=pii, flow="F-pii",
                  blobs=[{"id": photo, "mime": "image/png"}], txn_id="pii-0001")["txn_id"] == t1
    e = c.err("txn.submit", args={"type": "id.verify", "payload": dict(payload, card=CARD[:-1] + "0"),
                                  "pii": pii, "txn_id": "pii-0001"})
    assert e["code"] == "bad_request"
    # other personal keys, or without the photo: another transaction
    for other in ({"pii": pii[:-1]}, {"blobs": []}):
        e = c.err("txn.submit", args=dict({"type": "id.verify", "payload": payload, "pii": pii,
                                           "flow": "F-pii", "txn_id": "pii-0001",
                                           "blobs": [{"id": photo, "mime": "image/png"}]}, **other))
        assert e["code"] == "bad_request" and "already used" in e["message"], e
    # a second transaction keeps only the card personal (the rest is not)
    t2 = submit(c, type="gas.topup", payload={"card": CARD, "amount_fen": 100}, pii=["card"],
                flow="F-pii", final=True, txn_id="pii-0002")["txn_id"]
    # bad requests around personal data
    e = c.err("txn.submit", args={"type": "x", "payload": {"card": CARD}, "pii": ["cardno"]})
    assert e["code"] == "bad_request"

    # txn.get gives them back decrypted
    t = get(c, t1)
    assert t["payload"] == payload and sorted(t["pii"]) == sorted(pii)
    assert get(c, t2)["payload"] == {"card": CARD, "amount_fen": 100}
    # at rest: nowhere in the database, its WAL, or the spool
    paths = db_files(d.state_dir)
    assert any(p.endswith("-wal") for p in paths) and any("/blobs/" in p for p in paths)
    assert files_with(paths, PII_VALUES) == []
    # the photo in the spool is sealed: no PNG in it, 32 bytes of envelope
    spool = os.path.join(d.state_dir, "blobs", photo)
    with open(spool, "rb") as f:
        sealed = f.read()
    assert not sealed.startswith(b"\x89PNG") and b"IHDR" not in sealed and b"IDAT" not in sealed
    assert len(sealed) == get(c, t1)["blobs"][0]["size"] + 32
    assert hashlib.sha256(sealed).hexdigest() != photo

    # delivered in clear to the endpoint (the photo too: sha256 checked there)
    ep.up()
    a.ok("sync.kick")
    wait_txn_state(c, [t1, t2])
    got = ep.applied_one(t1)
    assert got["payload"] == payload
    assert got["blobs"][0]["sha256"] == photo and got["blobs"][0]["size"] == len(sealed) - 32
    assert ep.applied_one(t2)["payload"]["card"] == CARD
    # still readable until the retention has passed and the purge ran: it
    # runs at start and then hourly (no command triggers it), so restart
    time.sleep(1.1)
    restart(d)
    assert d.log_lines(r"personal data of 2 delivered transactions erased \(retention 1 s\), 1 blob removed")
    c = d.client()
    t = get(c, t1)
    assert t.get("purged") is True
    assert t["payload"] == dict(payload, **{k: None for k in pii})
    assert get(c, t2)["payload"] == {"card": None, "amount_fen": 100}
    assert not os.path.exists(spool)
    # a purged transaction is still idempotent on what is left of it (the
    # personal fields can no longer be compared); other content is refused
    assert submit(c, type="gas.topup", payload={"card": CARD, "amount_fen": 100}, pii=["card"],
                  flow="F-pii", final=True, txn_id="pii-0002")["state"] == "delivered"
    e = c.err("txn.submit", args={"type": "gas.topup", "payload": {"card": CARD, "amount_fen": 101},
                                  "pii": ["card"], "flow": "F-pii", "final": True, "txn_id": "pii-0002"})
    assert e["code"] == "bad_request"
    d.stop()
    assert files_with(db_files(d.state_dir), PII_VALUES) == []
    # nothing personal in the whole log of the run (debug level), nor in
    # the endpoint's
    log = d.log()
    assert "id.verify" in log or t1 in log or "pii-0001" in log or "transaction" in log
    for n in needles(PII_VALUES + ("Futian Lianhua",)):
        assert n.decode(errors="replace") not in log, "PII %r in the log:\n%s" % (
            n, "\n".join(l for l in log.splitlines() if n.decode(errors="replace") in l))
    assert ep.applied_ids() == {t1: 1, t2: 1}


def test_pii_without_key_is_refused(kd, ep):
    d = kd(config(ep, store={"key_file": "/nonexistent-dir/key"}), start=False)
    # a key_file that is missing: the daemon says so and does not start
    d.start(wait_ready=False)
    assert d.wait_exit() != 0
    assert d.log_lines(r"key")
    d.cleanup(keep=False)
    d = kd(config(ep))
    c = d.client()
    assert d.log_lines(r"no key for personal data")
    e = c.err("txn.submit", args={"type": "id.verify", "payload": {"card": CARD, "n": 1},
                                  "pii": ["card"]})
    assert e["code"] == "storage_error" and "key" in e["message"], e
    # nothing was stored; the same without pii works
    assert c.ok("txn.list")["transactions"] == []
    t = submit(c, type="id.verify", payload={"n": 1})["txn_id"]
    wait_txn_state(c, [t])
    d.stop()
    assert files_with(db_files(d.state_dir), (CARD,)) == []
    assert CARD not in d.log()


# ---------------------------------------------------------------- 4. disk full

@pytest.fixture
def small_fs():
    """A 2 MiB tmpfs (root only), unmounted at teardown."""
    path = tempfile.mkdtemp(prefix="kd-full-", dir="/tmp")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M,mode=0700", "tmpfs", path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        os.rmdir(path)
        pytest.skip("cannot mount a tmpfs for the disk-full test (needs root / CAP_SYS_ADMIN): "
                    + p.stdout.decode(errors="replace").strip())
    yield path
    if subprocess.run(["umount", path]).returncode != 0:
        subprocess.run(["umount", "-l", path])
    os.rmdir(path)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_disk_full(small_fs, kd, ep):
    d = kd(config(ep), start=False)
    d.state_dir = small_fs
    d.start()
    pid = d.pid
    c = d.client()
    filler = os.path.join(small_fs, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free_bytes(small_fs) - 400 * 1024))
    acked = {}
    full = None
    for i in range(400):
        payload = {"i": i, "pad": hashlib.sha256(b"%d" % i).hexdigest() * 100}
        r = c.call("txn.submit", args={"type": "bulk.item", "payload": payload})
        if not r["ok"]:
            full = r["error"]
            break
        acked[r["result"]["txn_id"]] = payload
    assert full is not None, "400 submissions of 6.4 KiB fitted in 400 KiB?"
    assert full["code"] == "storage_full", full
    assert len(acked) >= 5
    # it stays full, the daemon stays up and answers
    for _ in range(3):
        r = c.call("txn.submit", args={"type": "bulk.item", "payload": {"pad": "y" * 50000}})
        assert r["ok"] is False and r["error"]["code"] == "storage_full", r
    assert c.ok("hello")["daemon"] == "kioskd"
    assert d.proc.poll() is None and d.pid == pid
    assert d.log_lines(r"warning: store: commit failed.*storage full")
    # everything acknowledged is there, whole
    for tid, payload in acked.items():
        assert get(c, tid)["payload"] == payload
    assert integrity(os.path.join(small_fs, "kioskd.db")) == ["ok"]
    # space comes back: it recovers by itself, no restart
    os.unlink(filler)
    more = [submit(c, type="bulk.item", payload={"after": i})["txn_id"] for i in range(5)]
    wait_txn_state(c, list(acked) + more, timeout=20)
    assert d.pid == pid
    applied = ep.applied_ids()
    assert set(applied) == set(acked) | set(more)
    for tid, payload in acked.items():
        assert ep.applied_one(tid)["payload"] == payload
    d.stop()
    assert integrity(os.path.join(small_fs, "kioskd.db")) == ["ok"]


# ---------------------------------------------------------------- 5. corrupt database at start

def _fill(d, n=300):
    c = d.client()
    for i in range(n):
        c.request("txn.submit", args={"type": "old.item", "payload": {"i": i, "pad": "." * 200}})
    for _ in range(n):
        assert c.next_reply()["ok"]


@pytest.mark.parametrize("how", ["garbage", "pages", "header"])
def test_corrupt_db_at_start(kd, ep, how):
    d = kd(config(ep, routes={"new.*": "main"}))
    _fill(d)
    d.stop()
    db = os.path.join(d.state_dir, "kioskd.db")
    assert not os.path.exists(db + "-wal")  # a clean stop leaves everything in the file
    size = os.path.getsize(db)
    assert size > 20 * 4096
    if how == "garbage":
        bad = os.urandom(20000)
        with open(db, "wb") as f:
            f.write(bad)
    else:
        with open(db, "r+b") as f:
            if how == "pages":  # a valid header, pages 4-7 overwritten
                f.seek(3 * 4096)
                f.write(os.urandom(4 * 4096))
            else:  # the header itself
                f.write(b"this is no sqlite header!")
        with open(db, "rb") as f:
            bad = f.read()
    restart_at = len(d.log())
    for f in (d.notify_sock, d.logfile):
        f.close()
    d.notifications = []
    d.start()  # READY: no crash loop
    kept = glob.glob(db + ".corrupt-*")
    assert len(kept) == 1, os.listdir(d.state_dir)
    with open(kept[0], "rb") as f:
        assert f.read() == bad  # moved aside as it was
    log = d.log()[restart_at:]
    crit = [l for l in log.splitlines() if " crit: " in l and "corrupt" in l]
    assert len(crit) == 1, log
    # one line that names both files, so it is found with its priority
    assert db in crit[0] and kept[0] in crit[0], crit[0]
    # a fresh store that works
    c = d.client()
    assert c.ok("txn.list")["transactions"] == []
    t = submit(c, type="new.item", payload={"fresh": True})["txn_id"]
    wait_txn_state(c, [t])
    assert ep.applied_one(t)["payload"] == {"fresh": True}
    # the fresh store is fine at the next start; the quarantined copy stays
    restart(d)
    assert glob.glob(db + ".corrupt-*") == kept
    assert "corrupt" not in d.log()[restart_at + len(log):]
    assert get(d.client(), t)["state"] == "delivered"
