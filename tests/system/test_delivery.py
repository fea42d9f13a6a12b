"""Delivery end to end: the real kioskd delivering to the real reference
endpoint (tests/endpoint/) over mTLS with certificates made at test time.

What is checked is docs/delivery.md and issue 3's "Bad input and faults":
routing and batching, every fault the endpoint offers, permanent
failures (item, not batch), TLS failures, backoff without a busy loop,
the start-up delay, wall-clock jumps (libfaketime), bearer token and
HMAC.  The invariant after every fault: everything kioskd acknowledged
is applied at the endpoint exactly once, with the payload it was
submitted with, nothing else is, and the endpoint saw no contract
violation.

Every wait polls with a deadline (scaled by kiosk.SLOW under ASan).
"""

import email.utils
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time

import pytest

import kiosk
from kiosk import SLOW, daemon_section, run_kioskd, wait_until

sys.path.insert(0, os.path.join(kiosk.REPO, "tests", "endpoint"))
from endpoint import Endpoint, batch_key  # noqa: E402

# Small backoff so that faults cost little time.
FAST = dict(backoff_min_ms=50, backoff_max_ms=1000, startup_delay_ms=0)

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def certs_dir():
    """One certificate directory for the module (making them takes 0.15 s)."""
    d = tempfile.mkdtemp(prefix="kd-certs-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mk_ep(certs_dir):
    """Factory: mk_ep(**Endpoint kwargs) -> a started Endpoint; all stopped at teardown."""
    made = []
    tmp = tempfile.mkdtemp(prefix="kd-ep-", dir="/tmp")

    def make(**kw):
        ep = Endpoint(os.path.join(tmp, "ep%d" % len(made)), certs=certs_dir, **kw)
        made.append(ep)
        return ep.start()

    yield make
    for ep in made:
        ep.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_ep(certs_dir):
    tmp = tempfile.mkdtemp(prefix="kd-ep-", dir="/tmp")
    e = Endpoint(os.path.join(tmp, "shared"), certs=certs_dir).start()
    yield e
    e.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def ep(shared_ep):
    """The module's endpoint, up, with the good certificate and a clean
    slate (ledger, applied, faults, counters, request log, violations)."""
    shared_ep.up()
    shared_ep.tls("good")
    shared_ep.reset()
    return shared_ep


# ---------------------------------------------------------------- helpers

def conf(*sections, routes=(("*", "gas"),), **daemon):
    """A configuration: [daemon] (kiosk_id K0001), the sections, [route]."""
    daemon.setdefault("kiosk_id", "K0001")
    text = daemon_section(**daemon) + "\n".join(sections) + "\n"
    if routes:
        text += "[route]\n" + "".join("%s = %s\n" % r for r in routes) + "\n"
    return text


def ep_conf(ep, name="gas", drop=(), **keys):
    """ep.conf() with FAST backoff, minus the keys in drop."""
    kw = dict(FAST)
    kw.update(keys)
    lines = ep.conf(name, **kw).splitlines()
    return "\n".join(l for l in lines if l.split(" = ")[0] not in drop) + "\n"


_marker = [0]


def payload(tag="p"):
    """A payload unique in the whole run: the same payload under two ids
    at the endpoint would be a resend under a new id."""
    _marker[0] += 1
    return {"marker": "%s-%d-%d" % (tag, os.getpid(), _marker[0]), "amount_fen": 100 + _marker[0]}


def submit(c, n, type="gas.topup", tag="p", **extra):
    """n submissions one after the other: {txn_id: payload} of the acknowledged."""
    acked = {}
    for _ in range(n):
        p = payload(tag)
        args = {"type": type, "payload": p}
        args.update(extra)
        r = c.ok("txn.submit", args=args, timeout=10)
        assert r["state"] == "queued", r
        acked[r["txn_id"]] = p
    return acked


def submit_burst(c, n, type="gas.topup", tag="b", payloads=None):
    """n submissions written at once (one group commit, so one kick and
    full batches): {txn_id: payload}, in submission order."""
    payloads = payloads or [payload(tag) for _ in range(n)]
    ids = []
    data = b""
    for p in payloads:
        i = c.next_id
        c.next_id += 1
        ids.append(i)
        data += json.dumps({"id": i, "cmd": "txn.submit", "args": {"type": type, "payload": p}}).encode() + b"\n"
    c.send_raw(data)
    acked = {}
    for i, p in zip(ids, payloads):
        r = c.reply(i, timeout=10)
        assert r["ok"], r
        acked[r["result"]["txn_id"]] = p
    return acked


def submit_held(d, ui, ep, n=None, payloads=None, name="gas"):
    """Submissions that reach the endpoint as one batch: queued while it
    refuses connections, then released with sync.kick (a burst alone may
    be split over two commits on a loaded machine)."""
    ep.down()
    before = endpoint_status(ui, name)["queued"]
    acked = submit_burst(ui, n or len(payloads), payloads=payloads)
    wait_until(lambda: endpoint_status(ui, name)["queued"] == before + len(acked)
               and endpoint_status(ui, name)["inflight"] == 0, 5, "all queued")
    ep.up()
    d.admin().ok("sync.kick")
    return acked


def sync_status(c):
    return c.ok("sync.status")


def endpoint_status(c, name="gas"):
    for e in c.ok("sync.status")["endpoints"]:
        if e["name"] == name:
            return e
    raise AssertionError("no endpoint %s in sync.status" % name)


def counts(c):
    return c.ok("sync.status")["queue"]


def wait_counts(c, timeout=10.0, what="queue counts", **want):
    """Wait until sync.status' queue counts have these values."""
    last = {}

    def check():
        last["q"] = counts(c)
        return all(last["q"].get(k) == v for k, v in want.items())

    try:
        wait_until(check, timeout, what, interval=0.02)
    except AssertionError:
        raise AssertionError("queue counts never became %r: %r" % (want, last.get("q")))
    return last["q"]


def txn_states(c):
    """{txn_id: txn.list entry} of every transaction in the store, page by page."""
    out, before = {}, None
    while True:
        args = {"limit": 1000}
        if before:
            args["before"] = before
        r = c.ok("txn.list", args=args)
        for t in r["transactions"]:
            out[t["txn_id"]] = t
        if len(r["transactions"]) < 1000:
            return out
        before = r.get("next") or r["transactions"][-1]["txn_id"]


def wait_delivered(c, ids, timeout=10.0):
    """Wait until kioskd says every one of ids is delivered."""
    ids = set(ids)
    last = {}

    def states():
        if len(ids) <= 20:
            return {i: c.ok("txn.get", args={"txn_id": i}) for i in ids}
        return txn_states(c)

    def check():
        st = states()
        last["bad"] = {i: st.get(i, {}).get("state") for i in ids if st.get(i, {}).get("state") != "delivered"}
        return not last["bad"]

    try:
        wait_until(check, timeout, "delivery", interval=0.05)
    except AssertionError:
        bad = last.get("bad", {})
        raise AssertionError("%d of %d not delivered (e.g. %r); sync.status %r"
                             % (len(bad), len(ids), dict(list(bad.items())[:5]), c.ok("sync.status")))


def assert_exactly_once(ep, acked, others=()):
    """Every acknowledged transaction is applied once at ep, with its
    payload; nothing else is (others: ids known to be elsewhere, not here);
    no contract violation."""
    applied = ep.applied()
    ids = [e["id"] for e in applied]
    assert len(ids) == len(set(ids)), "an id applied twice"
    missing = set(acked) - set(ids)
    extra = set(ids) - set(acked)
    assert not missing, "acknowledged but not applied: %r" % sorted(missing)[:10]
    assert not extra, "applied but not acknowledged (or not routed here): %r" % sorted(extra)[:10]
    assert not set(others) & set(ids)
    markers = {}
    for e in applied:
        assert e["payload"] == acked[e["id"]], "payload of %s changed: %r" % (e["id"], e["payload"])
        assert e["kiosk"] == "K0001"
        m = e["payload"]["marker"]
        assert m not in markers, "payload %s applied under two ids: %s %s" % (m, markers[m], e["id"])
        markers[m] = e["id"]
    assert ep.violations() == [], ep.violations()


def delivered_requests(ep, path="/api/transactions"):
    return [r for r in ep.requests() if r["path"] == path]


def fault_fired(ep):
    return sum(f.get("fired", 0) for f in ep.faults())


def subscribe(d, topics=("sync.*",)):
    c = d.client()
    c.ok("events.subscribe", args={"topics": list(topics)})
    return c


def events(c, topic):
    c.drain(0.02)
    return [e for e in c.events if e["event"] == topic]


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s" % key)


def sync_warnings(d, name="gas"):
    """Log lines about endpoint name failing."""
    return d.log_lines(r"warning: endpoint %s: " % name)


# ---------------------------------------------------------------- 1. the happy path

def test_routes_batches_events_status(kd, ep, mk_ep):
    gas, water = ep, mk_ep()
    d = kd(conf(ep_conf(gas, "gas", batch_size=4, concurrency=2),
                ep_conf(water, "water", batch_size=3, concurrency=1),
                routes=[("gas.*", "gas"), ("water.*", "water"), ("*.audit", "water")]))
    ev = subscribe(d)
    ui = d.client()

    # while both are down the queue fills; then they come back and drain it in full batches
    gas.down()
    water.down()
    g = submit(ui, 10, "gas.topup", tag="g")
    w = submit(ui, 5, "water.topup", tag="w")
    w.update(submit(ui, 2, "door.audit", tag="a"))
    r = ui.ok("txn.submit", args={"type": "visit.log", "payload": payload("v")})
    assert r["endpoint"] is None and r["state"] == "queued"
    unrouted = r["txn_id"]
    for tid in g:
        assert ui.ok("txn.get", args={"txn_id": tid})["endpoint"] == "gas"
    for tid in w:
        assert ui.ok("txn.get", args={"txn_id": tid})["endpoint"] == "water"
    wait_counts(ui, queued=18, sending=0, delivered=0, failed=0)
    wait_until(lambda: endpoint_status(ui, "gas")["state"] == "down"
               and endpoint_status(ui, "water")["state"] == "down", 5, "endpoints down")
    # retries go on during the outage: a batch in an attempt is not counted
    # as queued until its failure is committed, so look until it is
    wait_until(lambda: endpoint_status(ui, "gas")["queued"] == 10, 5, "10 queued for gas")
    st = endpoint_status(ui, "gas")
    assert st["delivered"] == 0 and "last_error" in st, st
    assert events(ev, "sync.delivered") == []

    t0 = time.monotonic()
    gas.up()
    water.up()
    # no kick: the backoff timer brings them back within backoff_max_ms
    wait_counts(ui, timeout=FAST["backoff_max_ms"] / 1000 + 3, queued=1, sending=0, delivered=17, failed=0)
    assert time.monotonic() - t0 < FAST["backoff_max_ms"] / 1000 + 2 * SLOW
    wait_delivered(ui, list(g) + list(w))

    assert_exactly_once(gas, g)
    assert_exactly_once(water, w)
    # delivered once on the wire too: nothing was resent
    assert set(gas.applied_ids().values()) == {1}
    assert set(water.applied_ids().values()) == {1}
    # full batches, batch_size honoured
    assert sorted(r["items"] for r in delivered_requests(gas) if r["status"] == 200) == [2, 4, 4]
    assert sorted(r["items"] for r in delivered_requests(water) if r["status"] == 200) == [1, 3, 3]
    for r in delivered_requests(gas) + delivered_requests(water):
        assert r["kiosk_id"] == "K0001"
        assert r["key"] == batch_key(r["ids"]), r

    # the unrouted one is kept and never sent
    t = ui.ok("txn.get", args={"txn_id": unrouted})
    assert t["state"] == "queued" and t["endpoint"] is None and t["attempts"] == 0
    tid = next(iter(g))
    t = ui.ok("txn.get", args={"txn_id": tid})
    assert t["state"] == "delivered" and t["payload"] == g[tid] and t["type"] == "gas.topup"
    assert t["attempts"] >= 2 and t["delivered"] >= t["created"]  # the refused attempt counts

    # events: the counts of sync.delivered add up per endpoint; down, then up
    wait_until(lambda: sum(e["data"]["count"] for e in events(ev, "sync.delivered")) == 17, 5,
               "sync.delivered events")
    per = {}
    for e in events(ev, "sync.delivered"):
        per[e["data"]["endpoint"]] = per.get(e["data"]["endpoint"], 0) + e["data"]["count"]
        assert 1 <= e["data"]["count"] <= 4
    assert per == {"gas": 10, "water": 7}
    states = [(e["data"]["endpoint"], e["data"]["state"]) for e in events(ev, "sync.endpoint")]
    for name in ("gas", "water"):
        mine = [s for n, s in states if n == name]
        assert mine[0] == "down" and mine[-1] == "up", states
    down = [e for e in events(ev, "sync.endpoint") if e["data"]["state"] == "down"]
    assert all(e["data"].get("error") for e in down), down

    # sync.status and status agree
    s = ui.ok("sync.status")
    assert s["queue"] == {"queued": 1, "sending": 0, "delivered": 17, "failed": 0,
                          "oldest_queued_s": s["queue"]["oldest_queued_s"]}
    assert s["queue"]["oldest_queued_s"] is not None  # the unrouted one
    eps = {e["name"]: e for e in s["endpoints"]}
    assert set(eps) == {"gas", "water"}
    assert eps["gas"]["url"] == gas.url and eps["water"]["url"] == water.url
    for name, n in (("gas", 10), ("water", 7)):
        assert eps[name]["state"] == "idle" and eps[name]["delivered"] == n
        assert eps[name]["failed"] == 0 and eps[name]["inflight"] == 0 and eps[name]["queued"] == 0
        assert "last_error" not in eps[name]
    st = ui.ok("status")
    assert st["queue"]["delivered"] == 17 and {e["name"] for e in st["endpoints"]} == {"gas", "water"}
    # the admin's view
    q = d.admin().ok("queue.list", args={"state": "delivered"})
    assert q["counts"]["delivered"] == 17 and len(q["transactions"]) == 17


def test_delivers_at_once_when_up(kd, ep):
    """startup_delay_ms = 0 and a working endpoint: each submission is on
    its way at once, one request each, on a kept-alive connection."""
    d = kd(conf(ep_conf(ep)))
    ui = d.client()
    acked = {}
    for _ in range(5):
        t0 = time.monotonic()
        a = submit(ui, 1)
        acked.update(a)
        wait_until(lambda: set(a) <= set(ep.applied_ids()), 2, "delivery")
        assert time.monotonic() - t0 < 0.5 * SLOW
    wait_delivered(ui, acked)
    assert_exactly_once(ep, acked)
    reqs = delivered_requests(ep)
    assert len(reqs) == 5
    assert len({r["conn"] for r in reqs}) <= 2  # concurrency 2: connections are reused


# ---------------------------------------------------------------- 2. the endpoint's faults

# name, parameters, whether a faulted request took effect at the endpoint
TRANSIENT_FAULTS = [
    ("500", {}, False),
    ("502", {}, False),
    ("503", {"retry_after": 0}, False),
    ("429", {"retry_after": 0}, False),
    ("408", {}, False),
    ("reset_before", {}, False),
    ("reset_before", {"rst": False}, False),
    ("reset_after", {}, False),
    ("hang", {}, False),
    ("commit_drop", {}, True),
    ("commit_drop", {"rst": True}, True),
    ("garbage", {}, True),
    ("garbage", {"body": '{"results": [', "content_type": "application/json"}, True),
    ("garbage", {"body": '{"results": {"x": 1}}', "content_type": "application/json"}, True),
    ("garbage", {"body": "", "content_type": "application/json"}, True),
    ("missing_items", {}, True),
    ("missing_items", {"keep": 0}, True),
    ("missing_items", {"mode": "status"}, True),
    ("missing_items", {"mode": "id"}, True),
    ("huge", {"bytes": 2 << 20}, True),
    ("close", {}, True),
    ("500", {"apply": True}, True),
    ("302", {}, False),
    ("307", {}, False),
]


@pytest.mark.parametrize("name,params,applies", TRANSIENT_FAULTS,
                         ids=["%s%s" % (n, "-" + "-".join("%s=%s" % kv for kv in p.items()) if p else "")
                              for n, p, _ in TRANSIENT_FAULTS])
def test_transient_fault_then_exactly_once(kd, ep, name, params, applies):
    timeout_ms = int(1000 * SLOW)
    d = kd(conf(ep_conf(ep, batch_size=3, concurrency=2, timeout_ms=timeout_ms)))
    ui = d.client()
    ev = subscribe(d)
    path = {} if name == "reset_before" else {"path": "/transactions"}
    ep.fault(name, count=2, **dict(params, **path))
    acked = submit_burst(ui, 5)
    wait_delivered(ui, acked, timeout=10)
    assert fault_fired(ep) == 2, ep.faults()
    assert_exactly_once(ep, acked)
    assert counts(ui)["failed"] == 0
    assert events(ev, "sync.rejected") == []
    received = ep.applied_ids()
    if applies and name != "close":
        # the lost answer made kioskd send again; the endpoint knew the ids
        # (the same batch: its stored answer; a regrouped one: "duplicate")
        assert max(received.values()) >= 2, received
        st = ep.stats()
        assert st.get("key_replay", 0) + st.get("items_duplicate", 0) >= 1, st
    elif not applies:
        assert set(received.values()) == {1}, received
    if name != "close":
        # a failure was noticed (a state change with the error), and the endpoint is up again
        bad = [e for e in events(ev, "sync.endpoint") if e["data"]["state"] in ("backoff", "down")]
        assert bad and bad[0]["data"].get("error"), events(ev, "sync.endpoint")
        wait_until(lambda: endpoint_status(ui)["state"] == "idle", 3, "idle again")
        assert "last_error" not in endpoint_status(ui)


@pytest.mark.parametrize("status", ["503", "429"])
def test_retry_after_is_honoured(kd, ep, status):
    d = kd(conf(ep_conf(ep, backoff_max_ms=3000)))
    ui = d.client()
    ep.fault(status, retry_after=1, count=1, path="/transactions")
    acked = submit(ui, 1)
    wait_delivered(ui, acked, timeout=6)
    reqs = delivered_requests(ep)
    assert [r["status"] for r in reqs] == [int(status), 200], reqs
    gap = reqs[1]["t"] - reqs[0]["t"]
    # not before Retry-After; and not much later (the backoff after one failure is <= 100 ms)
    assert gap >= 0.95, "retried %.3f s after Retry-After: 1" % gap
    assert gap < 1.0 + 0.6 * SLOW, "retried %.3f s after Retry-After: 1" % gap
    st = endpoint_status(ui)
    assert st["state"] == "idle" and st["delivered"] == 1
    assert_exactly_once(ep, acked)


def test_retry_after_as_http_date(kd, ep):
    d = kd(conf(ep_conf(ep, backoff_max_ms=4000)))
    ui = d.client()
    when = email.utils.formatdate(int(time.time()) + 2, usegmt=True)
    ep.fault("503", retry_after=when, count=1, path="/transactions")
    acked = submit(ui, 1)
    wait_delivered(ui, acked, timeout=8)
    reqs = delivered_requests(ep)
    assert [r["status"] for r in reqs] == [503, 200]
    gap = reqs[1]["t"] - reqs[0]["t"]
    assert gap >= 0.95, "retried %.3f s after Retry-After: %s" % (gap, when)
    assert_exactly_once(ep, acked)


def test_hang_is_cut_by_timeout_ms(kd, ep):
    d = kd(conf(ep_conf(ep, timeout_ms=500)))
    ui = d.client()
    ev = subscribe(d)
    ep.fault("hang", count=1, path="/transactions")
    t0 = time.monotonic()
    acked = submit(ui, 1)
    wait_delivered(ui, acked, timeout=5)
    took = time.monotonic() - t0
    assert 0.45 < took < 0.5 + 1.5 * SLOW, took
    reqs = delivered_requests(ep)
    assert [r["status"] for r in reqs] == ["hang", 200], reqs
    assert reqs[1]["t"] - reqs[0]["t"] >= 0.45
    down = [e for e in events(ev, "sync.endpoint") if e["data"]["state"] != "up"]
    assert down and re.search(r"(?i)time", down[0]["data"]["error"]), down
    assert_exactly_once(ep, acked)
    assert set(ep.applied_ids().values()) == {1}


def test_slow_trickle_hits_the_low_speed_limit(kd, ep):
    """The answer trickles at 20 bytes/s: the low-speed limit (100 bytes/s
    for 1 s) gives up long before timeout_ms; the batch was applied, so the
    retry is answered from the endpoint's ledger."""
    d = kd(conf(ep_conf(ep, timeout_ms=60000, low_speed_bytes=100, low_speed_time_s=1)))
    ui = d.client()
    ev = subscribe(d)
    ep.fault("slow", ms=50, chunk=1, count=1, path="/transactions")
    t0 = time.monotonic()
    acked = submit(ui, 1)
    wait_delivered(ui, acked, timeout=8)
    # the whole answer would have taken > 10 s at this rate
    assert time.monotonic() - t0 < 2.5 + 2 * SLOW
    down = [e for e in events(ev, "sync.endpoint") if e["data"]["state"] != "up"]
    assert down and re.search(r"(?i)slow", down[0]["data"]["error"]), down
    assert_exactly_once(ep, acked)
    assert list(ep.applied_ids().values()) == [2]  # applied once, answered twice


def test_409_while_the_first_attempt_is_in_flight(kd, ep):
    """kioskd gives up on a slow batch (timeout_ms) and sends it again while
    the endpoint still works on the first: 409 (transient), later the
    stored answer."""
    d = kd(conf(ep_conf(ep, timeout_ms=400, backoff_min_ms=50, backoff_max_ms=300)))
    ui = d.client()
    ep.fault("delay", ms=int(1500 * SLOW), count=1, path="/transactions")
    acked = submit_burst(ui, 3)
    wait_delivered(ui, acked, timeout=8)
    st = ep.stats()
    assert st.get("key_inflight", 0) >= 1, st
    reqs = delivered_requests(ep)
    delayed = [r for r in reqs if r.get("fault") == "delay"]
    assert len(delayed) == 1, reqs
    # the same batch again, under the same key, while the first is in flight
    assert [r for r in reqs if r["status"] == 409 and r["key"] == delayed[0]["key"]], reqs
    assert_exactly_once(ep, acked)
    assert counts(ui)["failed"] == 0


def test_huge_answers_keep_memory_bounded(kd, ep):
    """A storm of 16 MiB answers: each is cut at 1 MiB (transient), the
    daemon's peak RSS does not grow by anything like an answer's size."""
    d = kd(conf(ep_conf(ep, batch_size=1, concurrency=2, backoff_min_ms=20, backoff_max_ms=100)))
    ui = d.client()
    warm = submit(ui, 2)
    wait_delivered(ui, warm)
    rss0 = max(vm(d.pid, "VmRSS"), vm(d.pid, "VmHWM"))
    ep.fault("huge", bytes=16 << 20, count=10, path="/transactions")
    acked = submit_burst(ui, 4)
    wait_until(lambda: fault_fired(ep) == 10, 20, "the huge-answer storm")
    wait_delivered(ui, acked, timeout=10)
    grown = vm(d.pid, "VmHWM") - rss0
    if not kiosk.SAN:  # ASan's quarantine keeps freed buffers: RSS says nothing there
        assert grown < 8 * 1024, "peak RSS grew by %d KiB during the storm" % grown
    assert d.log_lines("larger than 1 MiB")
    acked.update(warm)
    assert_exactly_once(ep, acked)
    assert d.proc.poll() is None


def test_mixed_fault_soak(kd, ep):
    """Probabilistic faults of every kind while submissions stream in;
    then the faults stop: everything acknowledged is applied exactly once."""
    ep.config(seed=1234)
    d = kd(conf(ep_conf(ep, batch_size=20, concurrency=3, timeout_ms=int(1000 * SLOW),
                        low_speed_bytes=100, low_speed_time_s=1, backoff_max_ms=500)))
    ui = d.client()
    mix = [("reset_before", dict(probability=0.02)),
           ("reset_after", dict(probability=0.04)),
           ("commit_drop", dict(probability=0.05)),
           ("commit_drop", dict(probability=0.02, rst=True)),
           ("500", dict(probability=0.03)),
           ("503", dict(probability=0.03, retry_after=0)),
           ("429", dict(probability=0.02, retry_after=0)),
           ("garbage", dict(probability=0.03)),
           ("missing_items", dict(probability=0.04)),
           ("missing_items", dict(probability=0.02, mode="id")),
           ("huge", dict(probability=0.02, bytes=2 << 20)),
           ("slow", dict(probability=0.03, ms=5, chunk=64)),
           ("hang", dict(probability=0.01, ms=3000)),
           ("delay", dict(probability=0.02, ms=200)),
           ("close", dict(probability=0.03))]
    ep.fault(None)
    for name, params in mix:
        ep.add_fault(name, **params)

    acked, errors = {}, []
    stop = threading.Event()
    soak_s = 3.0 if kiosk.SAN else 6.0

    def stream(cl, tag):
        rnd = random.Random(tag)
        try:
            while not stop.is_set():
                if rnd.random() < 0.5:
                    acked.update(submit(cl, 1, tag=tag))
                else:
                    acked.update(submit_burst(cl, rnd.randint(2, 8), tag=tag))
                time.sleep(rnd.uniform(0.01, 0.05))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=stream, args=(d.client(), "s%d" % i)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(soak_s)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    fired = {f["name"]: f.get("fired", 0) for f in ep.faults()}
    ep.fault(None)
    assert sum(fired.values()) >= 10, fired
    wait_delivered(ui, acked, timeout=15)
    assert_exactly_once(ep, acked)
    q = counts(ui)
    assert q["failed"] == 0 and q["queued"] == 0 and q["sending"] == 0
    assert q["delivered"] == len(acked)
    assert d.proc.poll() is None


# ---------------------------------------------------------------- 3. permanent failures

def test_rejected_item_fails_alone(kd, ep):
    d = kd(conf(ep_conf(ep, batch_size=10)))
    ui = d.client()
    ev = subscribe(d)
    pls = [payload("r") for _ in range(5)]
    pls[2]["reject"] = "card number unknown"
    acked = submit_held(d, ui, ep, payloads=pls)
    ids = list(acked)
    bad = ids[2]
    good = {i: acked[i] for i in ids if i != bad}
    wait_until(lambda: ui.ok("txn.get", args={"txn_id": bad})["state"] == "failed", 5, "the rejection")
    wait_delivered(ui, good)
    t = ui.ok("txn.get", args={"txn_id": bad})
    assert t["reason"] == "card number unknown", t
    # one batch of five: the item failed, not the batch
    reqs = delivered_requests(ep)
    assert [r["items"] for r in reqs] == [5], reqs
    assert_exactly_once(ep, good)
    rej = events(ev, "sync.rejected")
    assert [e["data"] for e in rej] == [{"endpoint": "gas", "txn_id": bad, "reason": "card number unknown"}]
    lines = d.log_lines("rejected transaction")
    assert len(lines) == 1 and bad in lines[0] and "card number unknown" in lines[0], lines
    assert pls[2]["marker"] not in d.log()  # the payload stays out of the log
    q = counts(ui)
    assert q["failed"] == 1 and q["delivered"] == 4
    st = endpoint_status(ui)
    assert st["failed"] == 1 and st["delivered"] == 4 and st["state"] == "idle"

    # queue.retry: queued again, judged again, refused again (the endpoint stores no rejection)
    adm = d.admin()
    assert adm.ok("queue.retry", args={"txn_id": bad}) == {"txn_id": bad, "state": "queued"}
    wait_until(lambda: len(events(ev, "sync.rejected")) == 2, 5, "the second rejection")
    t2 = ui.ok("txn.get", args={"txn_id": bad})
    assert t2["state"] == "failed" and t2["attempts"] == t["attempts"] + 1
    assert ep.applied_one(bad) is None
    # only a failed one can be retried
    e = adm.err("queue.retry", args={"txn_id": ids[0]})
    assert e["code"] == "bad_request"
    e = adm.err("queue.retry", args={"txn_id": "no-such-txn"})
    assert e["code"] == "bad_request"
    assert ui.err("queue.retry", args={"txn_id": bad})["code"] == "not_permitted"


def test_4xx_for_a_batch_fails_only_one_item(kd, ep):
    """The endpoint refuses a batch of five with 400 and then the first
    single that follows: kioskd splits the batch (docs/delivery.md: "the
    items are retried one by one, so only the offending one fails")."""
    d = kd(conf(ep_conf(ep, batch_size=10, concurrency=1)))
    ui = d.client()
    ev = subscribe(d)
    ep.fault("400", count=2, path="/transactions", body='{"error": "bad item"}',
             content_type="application/json")
    acked = submit_held(d, ui, ep, 5)
    wait_until(lambda: counts(ui)["delivered"] + counts(ui)["failed"] == 5, 8, "all settled")
    reqs = delivered_requests(ep)
    assert [r["status"] for r in reqs[:2]] == [400, 400] and reqs[0]["items"] == 5, reqs
    assert all(r["items"] == 1 for r in reqs[1:]), reqs  # one by one after the 400
    bad = reqs[1]["ids"][0]
    st = txn_states(ui)
    assert [i for i in acked if st[i]["state"] == "failed"] == [bad]
    t = ui.ok("txn.get", args={"txn_id": bad})
    assert "400" in t["reason"] and "bad item" in t["reason"], t
    good = {i: p for i, p in acked.items() if i != bad}
    assert_exactly_once(ep, good)
    assert [e["data"]["txn_id"] for e in events(ev, "sync.rejected")] == [bad]
    assert len(d.log_lines("rejected transaction %s" % bad)) == 1

    # the cause is gone (the fault is spent): queue.retry delivers it, once
    d.admin().ok("queue.retry", args={"txn_id": bad})
    wait_delivered(ui, [bad])
    assert_exactly_once(ep, acked)
    assert counts(ui)["failed"] == 0


def test_reload_with_a_batch_in_flight(kd, ep):
    """A reload that changes the endpoint while a batch is on the wire: the
    batch is abandoned and its transactions go out again at once from the
    new endpoint (no stall until the next submission)."""
    d = kd(conf(ep_conf(ep, batch_size=10)))
    ui = d.client()
    ep.fault("hang", count=1, path="/transactions")
    acked = submit_held(d, ui, ep, 3)
    wait_until(lambda: [r["status"] for r in delivered_requests(ep)] == ["hang"], 3, "the batch at the endpoint")
    assert endpoint_status(ui)["inflight"] == 1
    d.write_conf(conf(ep_conf(ep, batch_size=5)))
    t0 = time.monotonic()
    d.admin().ok("config.reload")
    wait_delivered(ui, acked, timeout=3)
    assert time.monotonic() - t0 < 1.0 * SLOW
    assert_exactly_once(ep, acked)


# ---------------------------------------------------------------- 4. TLS

TLS_CASES = {
    # case: (what the endpoint presents, kioskd's files, what fixes it)
    "server_unknown_ca": "unknown_ca",
    "server_expired": "expired",
    "server_wrong_host": "wrong_host",
    "client_missing": None,
    "client_unknown_ca": "unknown-ca-client",
    "client_expired": "expired-client",
}


def tls_setup(ep, case):
    """(the [endpoint gas] section of the broken setup, the fixed one).
    A broken server certificate is fixed at the endpoint (tls good) unless
    kioskd can be told to trust it (unknown CA: ca_file = rogue-ca.crt)."""
    good = ep_conf(ep, backoff_max_ms=200)
    if case.startswith("server_"):
        ep.tls(TLS_CASES[case])
        if case == "server_unknown_ca":
            return good, good.replace(ep.ca_file, ep.cert("rogue-ca.crt"))
        return good, None
    if case == "client_missing":
        return ep_conf(ep, backoff_max_ms=200, drop=("cert_file", "key_file")), good
    n = TLS_CASES[case]
    return good.replace(ep.client_cert, ep.cert(n + ".crt")).replace(ep.client_key, ep.cert(n + ".key")), good


TLS_WORDS = r"(?i)ssl|tls|certificate|alert"


@pytest.mark.parametrize("case", list(TLS_CASES))
def test_tls_failure_holds_then_delivers(kd, ep, case):
    """No delivery through a bad certificate; retries with backoff, the
    endpoint down with a TLS error, one log line; nothing lost once fixed.
    What an admin reads (sync.status' last_error at each attempt, the log
    line) says that it is TLS; that is checked last."""
    broken, fixed = tls_setup(ep, case)
    d = kd(conf(broken))
    ui = d.client()
    acked = submit(ui, 3)
    tid = next(iter(acked))
    seen = set()

    def retried():
        e = endpoint_status(ui).get("last_error")
        if e:
            seen.add(e)
        return ui.ok("txn.get", args={"txn_id": tid})["attempts"] >= want

    # a refused client certificate shows up in one of several ways
    # (README of tests/endpoint): enough attempts to see each of them
    want = 15 if case.startswith("client_") else 6
    wait_until(retried, 15, "retries", interval=0.005)
    st = endpoint_status(ui)
    assert st["state"] in ("down", "backoff") and st.get("last_error"), st
    assert ep.applied_ids() == {} and ep.stats().get("batches", 0) == 0
    q = counts(ui)
    assert q["failed"] == 0 and q["delivered"] == 0 and q["queued"] + q["sending"] == 3
    # one log line for the outage, not one per retry
    warn = sync_warnings(d)
    assert len(warn) == 1, warn

    if fixed is None:
        ep.tls("good")
    else:
        d.write_conf(conf(fixed))
        d.admin().ok("config.reload")
    wait_delivered(ui, acked, timeout=5)
    assert_exactly_once(ep, acked)
    assert endpoint_status(ui)["state"] == "idle"
    assert d.log_lines(r"endpoint gas: up")

    assert re.search(TLS_WORDS, warn[0]), "the log line does not say TLS: %s" % warn[0]
    notls = [e for e in seen if not re.search(TLS_WORDS, e)]
    assert not notls, "last_error values that do not say TLS: %r (all seen: %r)" % (notls, seen)


BARE = "[endpoint gas]\nurl = https://127.0.0.1:9/api\n"


def check_config(kd, text):
    d = kd(text, start=False)
    return run_kioskd(["--check-config", "--config", d.conf_path])


def test_url_must_be_https(kd):
    rc, out, err = check_config(kd, conf(BARE))
    assert rc == 0, (out, err)
    for url in ["http://127.0.0.1:8080/api", "ftp://127.0.0.1/api", "127.0.0.1:443/api",
                "HTTP://example.com/", "file:///etc/passwd"]:
        rc, out, err = check_config(kd, conf(BARE.replace("https://127.0.0.1:9/api", url)))
        assert rc != 0 and "https" in out + err, (url, rc, out, err)


VERIFY_KEYS = ["insecure", "verify", "ssl_verify", "verify_peer", "verify_host", "tls_verify",
               "ssl_verify_peer", "ssl_verifypeer", "insecure_skip_verify", "skip_verify", "no_verify",
               "tls_insecure", "allow_insecure", "verify_tls", "check_certificate"]


def test_no_key_switches_verification_off(kd):
    for key in VERIFY_KEYS:
        for value in ("false", "0", "no"):
            rc, out, err = check_config(kd, conf(BARE + "%s = %s\n" % (key, value)))
            assert rc != 0 and key in out + err, (key, rc, out, err)
    # nor in [daemon]
    rc, out, err = check_config(kd, conf(BARE, insecure="true"))
    assert rc != 0 and "insecure" in out + err


def test_endpoint_keys_have_no_verification_switch():
    """The table of [endpoint] keys (src/conf.c) and the documentation name
    no key that could turn verification off."""
    with open(os.path.join(kiosk.REPO, "src", "conf.c")) as f:
        src = f.read()
    table = src[src.index("endpoint_keys[]"):]
    table = table[:table.index("};")]
    keys = re.findall(r'\{"(\w+)"', table)
    assert "url" in keys and "ca_file" in keys
    for k in keys:
        assert not re.search(r"(?i)insecure|verify|skip|trust_all|no_check", k), k
    with open(os.path.join(kiosk.REPO, "docs", "configuration.md")) as f:
        doc = f.read()
    assert "always verified" in doc


# ---------------------------------------------------------------- 5. backoff, no busy loop, start-up delay

def test_outage_backs_off_without_busy_loop(kd, ep):
    bmin, bmax = 100, 1000
    d = kd(conf(ep_conf(ep, backoff_min_ms=bmin, backoff_max_ms=bmax, batch_size=50)))
    ui = d.client()
    ep.down()
    acked = submit(ui, 5)
    tid = next(iter(acked))
    wait_until(lambda: endpoint_status(ui)["state"] == "down", 3, "down")
    outage = 4.0 if not kiosk.SAN else 6.0
    a0 = ui.ok("txn.get", args={"txn_id": tid})["attempts"]
    c0, t0 = cpu_ticks(d.pid), time.monotonic()
    nexts = []
    while time.monotonic() - t0 < outage:
        st = endpoint_status(ui)
        if "next_attempt_s" in st:
            nexts.append(st["next_attempt_s"])
        time.sleep(0.25)
    wall = time.monotonic() - t0
    cpu = (cpu_ticks(d.pid) - c0) / os.sysconf("SC_CLK_TCK")
    attempts = ui.ok("txn.get", args={"txn_id": tid})["attempts"] - a0
    # full jitter up to 1 s: about 2 attempts a second; a busy loop makes thousands
    assert 2 <= attempts <= 4 * wall + 4, "%d attempts in %.1f s" % (attempts, wall)
    assert cpu / wall < (0.05 if kiosk.SAN else 0.02), "CPU %.3f s in %.1f s of outage" % (cpu, wall)
    assert nexts and max(nexts) <= bmax / 1000 + 0.05, nexts
    assert len(sync_warnings(d)) == 1, sync_warnings(d)
    st = endpoint_status(ui)
    assert st["state"] == "down" and re.search(r"(?i)connect|refused", st["last_error"]), st
    q = counts(ui)
    assert q["queued"] + q["sending"] == 5 and q["delivered"] == 0, q

    # back: drained by the backoff timer, no kick
    t1 = time.monotonic()
    ep.up()
    wait_delivered(ui, acked, timeout=bmax / 1000 + 3)
    assert time.monotonic() - t1 < bmax / 1000 + 0.5 * SLOW
    assert_exactly_once(ep, acked)
    assert d.log_lines(r"endpoint gas: up again after \d+ failed attempts")


def test_kick_skips_the_backoff(kd, ep):
    d = kd(conf(ep_conf(ep, backoff_min_ms=20000, backoff_max_ms=60000)))
    ui = d.client()
    ep.fault("503", retry_after=30, count=1, path="/transactions")
    acked = submit_held(d, ui, ep, 2)  # one batch, and it meets the fault
    wait_until(lambda: endpoint_status(ui)["state"] == "backoff", 3, "backoff")
    assert endpoint_status(ui)["next_attempt_s"] > 10
    assert ui.err("sync.kick")["code"] == "not_permitted"
    assert d.admin().ok("sync.kick") == {"kicked": True}
    wait_delivered(ui, acked, timeout=3)
    assert_exactly_once(ep, acked)


@pytest.mark.parametrize("delay_ms", [0, 2000])
def test_startup_delay(kd, ep, delay_ms):
    d = kd(conf(ep_conf(ep, startup_delay_ms=delay_ms)), start=False)
    t_start = time.time()
    d.start()
    ui = d.client()
    acked = submit(ui, 1)
    wait_delivered(ui, acked, timeout=delay_ms / 1000 + 3)
    first = delivered_requests(ep)[0]["time"]
    after = first - t_start
    assert after >= 0
    assert after <= delay_ms / 1000 + 0.3 * SLOW + 0.2, "first delivery %.3f s after start" % after
    assert_exactly_once(ep, acked)


def test_startup_delay_spreads_a_fleet(kd, ep):
    """Five kiosks with startup_delay_ms = 1000: the delay from each one's
    start to its first delivery is random, not the same for all."""
    ds, started = [], []
    for i in range(5):
        ds.append(kd(conf(ep_conf(ep, startup_delay_ms=1000), kiosk_id="K%04d" % (i + 1)), start=False))
    for d in ds:
        started.append(time.time())
        d.start()
    for d in ds:
        submit(d.client(), 1)
    wait_until(lambda: len(ep.applied_ids()) == 5, 5, "five deliveries")
    first = {}
    for r in delivered_requests(ep):
        first.setdefault(r["kiosk_id"], r["time"])
    delays = [first["K%04d" % (i + 1)] - started[i] for i in range(5)]
    assert all(0 <= x <= 1.0 + 0.5 * SLOW for x in delays), delays
    assert max(delays) - min(delays) > 0.1, delays


# ---------------------------------------------------------------- 6. the wall clock jumps

def faketime_env(rc_path):
    env = {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
           "FAKETIME_TIMESTAMP_FILE": rc_path, "FAKETIME_NO_CACHE": "1"}
    if kiosk.SAN:
        env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "detect_leaks=1") + ":verify_asan_link_order=0"
    return env


def set_clock(path, offset):
    with open(path + ".new", "w") as f:
        f.write(offset + "\n")
    os.rename(path + ".new", path)


@pytest.mark.skipif(not os.path.exists(FAKETIME_LIB), reason="needs the faketime package")
@pytest.mark.parametrize("jump", ["+365d", "-365d"])
def test_wall_clock_jump_during_outage(kd, ep, jump):
    rc = os.path.join(tempfile.mkdtemp(prefix="kd-ft-", dir="/tmp"), "faketime.rc")
    set_clock(rc, "+0")
    bmax = 600
    d = kd(conf(ep_conf(ep, backoff_min_ms=100, backoff_max_ms=bmax)), env=faketime_env(rc))
    ui = d.client()
    ep.down()
    acked = submit(ui, 3)
    tid = next(iter(acked))
    wait_until(lambda: endpoint_status(ui)["state"] == "down", 3, "down")

    def rate(seconds):
        a0, t0 = ui.ok("txn.get", args={"txn_id": tid})["attempts"], time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(0.1)
        return (ui.ok("txn.get", args={"txn_id": tid})["attempts"] - a0) / (time.monotonic() - t0)

    window = 1.5
    before = rate(window)
    set_clock(rc, jump)
    after = rate(window)
    # the jump is seen by the daemon's wall clock
    t = submit(ui, 1, tag="after-jump")
    created = ui.ok("txn.get", args={"txn_id": next(iter(t))})["created"]
    want_year = time.gmtime(time.time() + (365 if jump[0] == "+" else -365) * 86400).tm_year
    assert created.startswith(str(want_year)), created
    acked.update(t)
    # no storm, no stall: about the same rate (full jitter: mean bmax/2)
    assert after <= 4 * 1000 / bmax + 2, "%.1f attempts/s after the jump (%.1f before)" % (after, before)
    assert after >= 0.3, "%.1f attempts/s after the jump (%.1f before): stuck" % (after, before)
    st = endpoint_status(ui)
    assert st.get("next_attempt_s", 0) <= bmax / 1000 + 0.05, st
    t1 = time.monotonic()
    ep.up()
    wait_delivered(ui, acked, timeout=bmax / 1000 + 3)
    assert time.monotonic() - t1 < bmax / 1000 + 0.5 * SLOW
    assert_exactly_once(ep, acked)
    # and back again: still delivering at once
    set_clock(rc, "+0")
    more = submit(ui, 2, tag="back")
    wait_delivered(ui, more, timeout=3)
    acked.update(more)
    assert_exactly_once(ep, acked)
    shutil.rmtree(os.path.dirname(rc), ignore_errors=True)


# ---------------------------------------------------------------- 8. bearer token and HMAC

def test_token_and_hmac_delivered(kd, mk_ep):
    ep = mk_ep(token="s3cr3t-t0ken", hmac_key="k3y-for-hmac\n")
    d = kd(conf(ep_conf(ep)))
    ui = d.client()
    acked = submit_burst(ui, 4)
    wait_delivered(ui, acked)
    assert_exactly_once(ep, acked)
    st = ep.stats()
    assert not any(k.startswith("auth_") and v for k, v in st.items() if k.endswith("_failed")), st
    log = d.log()
    assert "s3cr3t-t0ken" not in log and "k3y-for-hmac" not in log


@pytest.mark.parametrize("what", ["token", "hmac"])
def test_wrong_credentials_401_keep_the_queue(kd, mk_ep, what):
    """A wrong token or HMAC key gets 401 for every batch.  docs/delivery.md:
    "401, 403, 407: the kiosk's credentials are refused: the endpoint is
    `down` and everything stays `queued`" -- not `failed` one by one."""
    ep = mk_ep(token="right-token", hmac_key="right-key")
    wrong = os.path.join(ep.workdir, "wrong")
    with open(wrong, "w") as f:
        f.write("wrong-secret\n")
    os.chmod(wrong, 0o600)
    good = ep_conf(ep, backoff_max_ms=200, batch_size=10)
    d = kd(conf(good.replace(ep.token_file if what == "token" else ep.hmac_key_file, wrong)))
    ui = d.client()
    ev = subscribe(d)
    acked = submit_held(d, ui, ep, 4)
    tid = next(iter(acked))
    wait_until(lambda: ui.ok("txn.get", args={"txn_id": tid})["attempts"] >= 5, 5, "retries")
    reqs = delivered_requests(ep)
    assert reqs and all(r["status"] == 401 for r in reqs), reqs
    # the whole batch each time, not isolated item by item
    assert {r.get("key") for r in reqs} == {batch_key(list(acked))}, reqs
    q = counts(ui)
    assert q["failed"] == 0 and q["delivered"] == 0 and q["queued"] + q["sending"] == 4, q
    st = endpoint_status(ui)
    assert st["state"] == "down" and "401" in st["last_error"], st
    assert ep.applied_ids() == {}
    assert events(ev, "sync.rejected") == []
    assert len(sync_warnings(d)) == 1, sync_warnings(d)
    assert "wrong-secret" not in d.log()


@pytest.mark.parametrize("status", ["403", "407"])
def test_403_407_keep_the_queue(kd, ep, status):
    d = kd(conf(ep_conf(ep, backoff_max_ms=200, batch_size=10)))
    ui = d.client()
    ep.fault(status, path="/transactions")
    acked = submit_burst(ui, 3)
    wait_until(lambda: len(delivered_requests(ep)) >= 3, 5, "retries")
    assert all(r["items"] == 3 for r in delivered_requests(ep))
    q = counts(ui)
    assert q["failed"] == 0 and q["delivered"] == 0, q
    assert endpoint_status(ui)["state"] == "down"
    ep.fault(None)
    wait_delivered(ui, acked, timeout=3)
    assert_exactly_once(ep, acked)


@pytest.mark.parametrize("what", ["token", "hmac"])
def test_wrong_credentials_then_fixed_nothing_lost(kd, mk_ep, what):
    """Whatever the classification: after the secret file is fixed and the
    configuration reloaded, nothing acknowledged is lost or doubled."""
    ep = mk_ep(token="right-token", hmac_key="right-key")
    secret = ep.token_file if what == "token" else ep.hmac_key_file
    with open(secret, "rb") as f:
        right = f.read()
    with open(secret, "wb") as f:
        f.write(b"wrong-secret\n")
    d = kd(conf(ep_conf(ep, backoff_max_ms=300)))
    ui = d.client()
    acked = submit(ui, 2)
    wait_until(lambda: any(r["status"] == 401 for r in delivered_requests(ep)), 5, "a 401")
    assert ep.applied_ids() == {}
    with open(secret, "wb") as f:
        f.write(right)
    for tid, t in txn_states(ui).items():  # a failed one comes back through queue.retry
        if t["state"] == "failed":
            d.admin().ok("queue.retry", args={"txn_id": tid})
    d.admin().ok("config.reload")
    wait_delivered(ui, acked, timeout=5)
    assert_exactly_once(ep, acked)
    assert "wrong-secret" not in d.log() and "right-" not in d.log()
