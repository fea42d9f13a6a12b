"""events.subscribe / unsubscribe with topic patterns, the daemon-wide seq,
and cancel of a running request."""

import re
import time

import pytest

from kiosk import SLOW, daemon_section, sim_device

CONF = (daemon_section(log_level="info")
        + sim_device("card0", "cardreader", latency_ms=0)
        + sim_device("qr0", "barcode", latency_ms=0)
        + sim_device("locker0", "locker", latency_ms=0, doors=8))

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def produce(a):
    """One event of each kind: card inserted/removed, a scan, a door."""
    a.ok("sim.inject", "card0", {"what": "insert", "card": {"type": "mifare"}})
    a.ok("sim.inject", "qr0", {"what": "scan", "code": "HELLO"})
    a.ok("sim.inject", "card0", {"what": "remove"})
    a.ok("sim.inject", "card0", {"what": "unplug"})
    a.ok("sim.inject", "card0", {"what": "replug"})


def test_patterns_filter_and_seq(kd):
    d = kd(CONF)
    a = d.admin()
    cards = d.client()
    assert cards.ok("events.subscribe", args={"topics": ["cardreader.*"]})["topics"] == \
        ["cardreader.*"]
    devs = d.client()
    devs.ok("events.subscribe", args={"topics": ["device.*"]})
    both = d.client()
    r = both.ok("events.subscribe", args={"topics": ["cardreader.*", "device.*"]})
    assert r["topics"] == ["cardreader.*", "device.*"]
    allc = d.client()
    allc.ok("events.subscribe", args={"topics": ["*"]})
    exact = d.client()
    exact.ok("events.subscribe", args={"topics": ["barcode.scanned", "cardreader.insert?d"]})
    none = d.client()
    produce(a)
    d.wait_state("card0", "ready")
    for c in (cards, devs, both, allc, exact, none):
        c.drain(0.1)

    assert [e["event"] for e in cards.events] == ["cardreader.inserted", "cardreader.removed"]
    assert cards.events[0]["data"]["type"] == "mifare"
    assert devs.events and all(e["event"] == "device.state" for e in devs.events)
    assert [e["data"]["state"] for e in devs.events][:1] == ["offline"]
    assert devs.events[-1]["data"]["state"] == "ready"
    assert [e["event"] for e in exact.events] == ["cardreader.inserted", "barcode.scanned"]
    assert none.events == []
    # both = cards + devs, in daemon order
    assert [e["seq"] for e in both.events] == sorted(
        e["seq"] for e in cards.events + devs.events)
    # "*" gets everything; seq increases by exactly one across the daemon
    seqs = [e["seq"] for e in allc.events]
    assert all(b == a_ + 1 for a_, b in zip(seqs, seqs[1:])), seqs
    assert {e["seq"] for e in both.events + exact.events} <= set(seqs)
    for e in allc.events:
        assert set(e) == {"event", "device", "seq", "ts", "data"}, e
        assert TS.fullmatch(e["ts"]), e["ts"]
        assert isinstance(e["data"], dict)
    # status reports the last seq
    assert a.ok("status")["daemon"]["events_seq"] == seqs[-1]
    # no replies leaked into the event stream, and no events into replies
    for c in (cards, devs, both, allc, exact, none):
        assert c.inbox == []


def test_unsubscribe_stops_events(kd):
    d = kd(CONF)
    a = d.admin()
    c = d.client()
    c.ok("events.subscribe", args={"topics": ["barcode.*", "cardreader.*"]})
    # subscribing twice does not duplicate
    assert c.ok("events.subscribe", args={"topics": ["barcode.*"]})["topics"] == \
        ["barcode.*", "cardreader.*"]
    a.ok("sim.inject", "qr0", {"what": "scan", "code": "ONE"})
    assert c.event("barcode.scanned")["data"]["code"] == "ONE"
    r = c.ok("events.unsubscribe", args={"topics": ["barcode.*"]})
    assert r["topics"] == ["cardreader.*"]
    a.ok("sim.inject", "qr0", {"what": "scan", "code": "TWO"})
    a.ok("sim.inject", "card0", {"what": "insert"})
    assert c.event("cardreader.inserted")
    c.drain(0.1)
    assert [e for e in c.events if e["event"].startswith("barcode")] == []
    # without topics: everything goes
    assert c.ok("events.unsubscribe")["topics"] == []
    a.ok("sim.inject", "card0", {"what": "remove"})
    c.drain(0.1)
    assert c.events == []


@pytest.mark.parametrize("args", [
    {}, {"topics": []}, {"topics": "cardreader.*"}, {"topics": [1]}, {"topics": [""]},
    {"topics": ["Cardreader.*"]}, {"topics": ["card reader"]}, {"topics": ["x" * 65]},
    {"topics": ["a/b"]}, {"topics": ["[abc]"]}, {"topics": ["ok.*", None]},
    {"topics": ["t%d" % i for i in range(33)]},
])
def test_bad_patterns(kd_module, args):
    if not kd_module.made:
        kd_module(CONF)
    d = kd_module.made[0]
    c = d.client()
    e = c.err("events.subscribe", args=args)
    assert e["code"] == "bad_request", e
    if args:
        assert c.err("events.unsubscribe", args=args)["code"] == "bad_request"
    # nothing was subscribed by the failed call
    assert c.ok("events.unsubscribe", args={"topics": ["zzz"]})["topics"] == []


def test_cancel_running_wait(kd):
    d = kd(CONF)
    c = d.client()
    wid = c.request("cardreader.wait", timeout_ms=60000)
    c.drain(0.05)
    t0 = time.monotonic()
    r = c.ok("cancel", args={"target": wid})
    assert r["cancelled"] is True
    w = c.reply(wid)
    assert w["ok"] is False and w["error"]["code"] == "cancelled", w
    assert time.monotonic() - t0 < 1 * SLOW
    d.wait_state("card0", "ready")
    # the device is free for the next command
    assert c.call("cardreader.status")["ok"] is True
    # cancelling it again: it is no longer running
    assert c.ok("cancel", args={"target": wid})["cancelled"] is False


def test_cancel_queued_request_and_string_ids(kd):
    d = kd(CONF)
    c = d.client()
    c.request("cardreader.wait", timeout_ms=60000, id="first")
    c.request("cardreader.eject", id="second")
    c.drain(0.05)
    assert c.ok("cancel", args={"target": "second"})["cancelled"] is True
    assert c.reply("second")["error"]["code"] == "cancelled"
    assert c.ok("cancel", args={"target": "first"})["cancelled"] is True
    assert c.reply("first")["error"]["code"] == "cancelled"


def test_cancel_unknown_or_foreign(kd):
    d = kd(CONF)
    c = d.client()
    other = d.client()
    r = c.ok("cancel", args={"target": 12345})
    assert r["cancelled"] is False
    # a request of another session cannot be cancelled
    wid = other.request("cardreader.wait", timeout_ms=60000, id=77)
    other.drain(0.05)
    assert c.ok("cancel", args={"target": 77})["cancelled"] is False
    assert other.inbox == []
    assert other.ok("cancel", args={"target": 77})["cancelled"] is True
    assert other.reply(77)["error"]["code"] == "cancelled"
    for bad in ({}, {"target": None}, {"target": 1.5}, {"target": [1]}):
        assert c.err("cancel", args=bad)["code"] == "bad_request"


def test_timeout_of_a_wait(kd):
    d = kd(CONF)
    c = d.client()
    t0 = time.monotonic()
    r = c.call("cardreader.wait", timeout_ms=200, timeout=3)
    took = time.monotonic() - t0
    assert r["ok"] is False and r["error"]["code"] == "timeout", r
    assert 0.18 <= took < 1.5 * SLOW, took
    d.wait_state("card0", "ready")
    assert c.call("cardreader.status")["ok"] is True


def test_timeout_of_a_queued_request(kd):
    d = kd(CONF)
    c = d.client()
    wid = c.request("cardreader.wait", timeout_ms=30000)
    t0 = time.monotonic()
    r = c.call("cardreader.read", args={"length": 1}, timeout_ms=150, timeout=3)
    assert r["ok"] is False and r["error"]["code"] == "timeout", r
    assert "before it started" in r["error"]["message"]
    assert 0.13 <= time.monotonic() - t0 < 1.5 * SLOW
    # the running wait was not disturbed
    c.drain(0.05)
    assert c.inbox == []
    d.admin().ok("sim.inject", "card0", {"what": "insert"})
    assert c.reply(wid)["ok"] is True


def test_duplicate_ids_each_get_a_reply(kd):
    d = kd(CONF)
    c = d.client()
    for _ in range(3):
        c.request("locker.status", id="same")
    replies = [c.reply("same") for _ in range(3)]
    assert all(r["ok"] for r in replies)
    c.drain(0.05)
    assert c.inbox == []


def test_topic_limit_is_not_silent(kd):
    """Subscriptions are capped at 32 patterns per session; one more must be
    refused, not acknowledged and then never delivered."""
    d = kd(CONF)
    c = d.client()
    c.ok("events.subscribe", args={"topics": ["t%d.*" % i for i in range(32)]})
    r = c.call("events.subscribe", args={"topics": ["barcode.*"]})
    if r["ok"]:
        assert "barcode.*" in r["result"]["topics"], "acknowledged but dropped: %r" % r
    else:
        assert r["error"]["code"] == "bad_request"


def test_status_answers_at_once_while_a_command_runs(kd):
    """<class>.status is not queued behind a running command: a UI polls
    the card reader while a cardreader.wait is pending."""
    d = kd(CONF)
    c = d.client()
    wid = c.request("cardreader.wait", timeout_ms=60000)
    c.drain(0.05)
    st = c.ok("cardreader.status", timeout=1)
    assert st["card"] == "absent" and st["waiting"] is True, st
    assert c.inbox == []  # the wait is still running
    assert c.ok("cancel", args={"target": wid})["cancelled"] is True
