"""Backpressure and limits: pipelining, a client that stops reading,
disconnect in the middle of a command, max_clients."""

import collections
import json
import socket
import time

import kiosk
from kiosk import SAN, SLOW, Client, daemon_section, sim_device, wait_until


def test_1000_pipelined_requests_in_one_write(kd):
    d = kd(daemon_section() + sim_device("printer0", "printer", latency_ms=0)
           + sim_device("qr0", "barcode", latency_ms=0)
           + sim_device("locker0", "locker", latency_ms=0, doors=4))
    c = d.client()
    kinds = [
        ("hello", None, None),
        ("printer.status", "printer0", None),
        ("barcode.status", "qr0", None),
        ("locker.status", None, None),
        ("status", None, None),
        ("devices.list", None, None),
    ]
    lines = []
    for i in range(1000):
        cmd, dev, args = kinds[i % len(kinds)]
        msg = {"id": i if i % 2 else "s%d" % i, "cmd": cmd}
        if dev:
            msg["device"] = dev
        if args is not None:
            msg["args"] = args
        lines.append(json.dumps(msg))
    c.send_raw("\n".join(lines) + "\n")
    got = collections.Counter()
    oks = 0
    end = time.monotonic() + 20 * SLOW
    while sum(got.values()) < 1000:
        assert time.monotonic() < end, "only %d replies" % sum(got.values())
        r = c.next_reply(timeout=10)
        got[json.dumps(r["id"])] += 1
        oks += r["ok"] is True
    c.drain(0.2)
    assert c.inbox == [], "more replies than requests: %r" % c.inbox[:3]
    want = {json.dumps(i if i % 2 else "s%d" % i) for i in range(1000)}
    assert set(got) == want
    assert all(v == 1 for v in got.values())
    assert oks == 1000
    # the connection is still fine
    c.ok("hello")


def test_event_flood_drops_a_client_that_never_reads(kd):
    import os
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
    d = kd(daemon_section(client_buffer_bytes=65536, log_level="info")
           + sim_device("qr0", "barcode", latency_ms=0),
           env={"ASAN_OPTIONS": asan + ":quarantine_size_mb=8"})
    sleeper = d.client()
    sleeper.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.ok("events.subscribe", args={"topics": ["barcode.*"]})
    reader = d.client()
    reader.ok("events.subscribe", args={"topics": ["barcode.*"]})
    prod = d.admin()

    code = "Q" * 8000
    batch = 4
    total = 3000 if not SAN else 1200
    # warm up, then take the baseline
    for i in range(batch):
        prod.request("sim.inject", "qr0", {"what": "scan", "code": code})
    for i in range(batch):
        assert prod.next_reply()["ok"] is True
    wait_until(lambda: (reader.drain(0.001), len(reader.events) >= batch)[1], 5, "warm-up")
    rss0 = d.rss_kb()

    sent = batch
    received = list(reader.events)
    reader.events.clear()
    while sent < total:
        ids = [prod.request("sim.inject", "qr0", {"what": "scan", "code": code + str(sent + k)})
               for k in range(batch)]
        for i in ids:
            r = prod.reply(i)
            assert r["ok"] is True, r
        sent += batch
        # the reader keeps up
        end = time.monotonic() + 5 * SLOW
        while len(received) + len(reader.events) < sent:
            assert time.monotonic() < end, "reader starved at %d/%d" % (
                len(received) + len(reader.events), sent)
            reader._fill(time.monotonic() + 0.5)
        received.extend(reader.events)
        reader.events.clear()
    rss1 = d.rss_kb()
    print("rss %d -> %d kB" % (rss0, rss1))

    # every event reached the reader, in order, seq without gaps
    assert len(received) == total
    seqs = [e["seq"] for e in received]
    assert all(b == a + 1 for a, b in zip(seqs, seqs[1:])), "seq gaps"
    assert all(e["event"] == "barcode.scanned" and e["device"] == "qr0" for e in received)
    assert received[-1]["data"]["code"] == code + str(total - 1)

    # the sleeper was dropped: its socket ends after what was queued
    sleeper.sock.setblocking(True)
    sleeper.sock.settimeout(5 * SLOW)
    n = 0
    while True:
        try:
            chunk = sleeper.sock.recv(1 << 16)
        except ConnectionResetError:
            break
        if not chunk:
            break
        n += len(chunk)
    produced = total * (len(code) + 100)
    assert n < produced / 4, "sleeper got %d of %d bytes: not dropped early" % (n, produced)
    assert d.log_lines(r"client \d+ \(pid \d+\) dropped: not reading"), d.log()

    # memory stayed bounded although ~%d MiB of events went out
    grown_mib = (rss1 - rss0) / 1024
    limit = 24 if SAN else 8
    assert grown_mib < limit, "RSS grew %.1f MiB (%d -> %d kB) while flooding %.0f MiB" % (
        grown_mib, rss0, rss1, produced / 2**20)

    # the daemon still serves
    reader.ok("hello")
    assert d.admin().ok("status")["daemon"]["clients"] >= 2


def test_disconnect_mid_command_frees_the_device(kd):
    d = kd(daemon_section() + sim_device("card0", "cardreader", latency_ms=0)
           + sim_device("audio0", "audio", latency_ms=0))
    a = d.client()
    wid = a.request("cardreader.wait", timeout_ms=60000)
    a.request("cardreader.read", args={"length": 4})  # queued behind the wait
    rid = a.request("audio.record", args={"duration_ms": 5000})
    a.drain(0.1)
    assert a.inbox == [] or all("progress" in m for m in a.inbox), a.inbox
    st = d.device("card0")
    assert st["state"] == "busy"
    a.close()
    b = d.client()
    t0 = time.monotonic()
    # the card reader answers a new command at once (not after 60 s)
    r = b.call("cardreader.status", timeout=2)
    assert r["ok"] is True, r
    r = b.call("audio.volume", args={"level": 30}, timeout=2)
    assert r["ok"] is True, r
    assert time.monotonic() - t0 < 1.5 * SLOW
    # and a new wait is really served: a card inserted now completes it
    wid = b.request("cardreader.wait", timeout_ms=5000)
    d.admin().ok("sim.inject", "card0", {"what": "insert"})
    r = b.reply(wid)
    assert r["ok"] is True, r
    d.wait_state("card0", "ready")
    d.wait_state("audio0", "ready")


def test_max_clients(kd):
    d = kd(daemon_section(max_clients=4))
    cs = [d.client(admin=(i == 0)) for i in range(4)]
    for c in cs:
        c.ok("hello")
    extra = Client(d.ui_sock)
    msgs = extra.expect_eof()
    assert len(msgs) == 1, msgs
    assert msgs[0]["id"] is None and msgs[0]["ok"] is False
    assert msgs[0]["error"]["code"] == "not_permitted"
    extra.close()
    # admin.sock still has places of its own
    extra = Client(d.admin_sock)
    assert extra.ok("hello")["role"] == "admin"
    extra.close()
    # the four keep working
    for c in cs:
        c.ok("hello")
    assert d.log_lines("too many clients")
    # after one leaves, a new one is accepted
    cs[1].close()

    def accepted():
        c = Client(d.ui_sock)
        try:
            c.request("hello")
            r = c.next_reply(2)
            if r["ok"]:
                return c
        except Exception:
            pass
        c.close()
        return None

    c = wait_until(accepted, 5, "a free client slot")
    assert c.ok("hello")["role"] == "ui"
    c.close()


def test_pipelining_client_that_reads_is_not_dropped(kd):
    """A client that pipelines requests in one write and reads every reply
    is not "a client that stops reading": it must get a final reply for each
    request, even when the replies to one socket read's worth of requests
    exceed client_buffer_bytes.  (The daemon should stop taking requests
    from a session while its replies are queued, not drop it.)"""
    conf = daemon_section(client_buffer_bytes=65536)
    for i in range(12):
        conf += sim_device("locker%d" % i, "locker", doors=4)
    d = kd(conf)
    c = d.client()
    one = len(json.dumps(c.ok("devices.list")))
    n = 300  # ~9 kB of requests: one read for the daemon
    assert n * one > 4 * 65536, one
    c.send_raw("".join('{"id":%d,"cmd":"devices.list"}\n' % i for i in range(n)))
    got = set()
    try:
        while len(got) < n:
            got.add(c.next_reply(timeout=5)["id"])
    except kiosk.ProtocolEOF:
        pass
    assert len(got) == n, "dropped after %d of %d replies; log: %s" % (
        len(got), n, d.log_lines("dropped"))
    c.ok("hello")


def test_dropped_client_with_running_command_frees_the_device(kd):
    d = kd(daemon_section(client_buffer_bytes=4096)
           + sim_device("card0", "cardreader", latency_ms=0)
           + sim_device("qr0", "barcode", latency_ms=0))
    sleeper = d.client()
    sleeper.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.ok("events.subscribe", args={"topics": ["barcode.*"]})
    sleeper.request("cardreader.wait", timeout_ms=60000)
    sleeper.request("cardreader.status")  # queued behind the wait
    wait_until(lambda: d.device("card0")["state"] == "busy", 2, "card0 busy")
    a = d.admin()
    code = "Z" * 4000
    for i in range(400):
        a.ok("sim.inject", "qr0", {"what": "scan", "code": code})
        if d.log_lines("dropped: not reading"):
            break
    assert d.log_lines("dropped: not reading")
    d.wait_state("card0", "ready", timeout=2)
    other = d.client()
    assert other.call("cardreader.status", timeout=2)["ok"] is True


def test_half_closed_client_still_gets_its_replies(kd):
    """A one-shot client (printf ... | socat - UNIX:ui.sock) sends its request
    and shuts down its write side: the connection is still open for the
    reply, which must come ("exactly one final reply per request, always")."""
    d = kd(daemon_section() + sim_device("locker0", "locker", latency_ms=50))
    c = Client(d.ui_sock)
    c.send_raw('{"id":1,"cmd":"hello"}\n{"id":2,"cmd":"locker.open","args":{"door":1}}\n')
    c.sock.shutdown(socket.SHUT_WR)
    msgs = c.expect_eof(timeout=3)
    c.close()
    assert sorted(m["id"] for m in msgs if "ok" in m) == [1, 2], msgs


def test_ui_clients_cannot_lock_out_the_admin(kd):
    """max_clients UI connections leave admin.sock a few places of its own."""
    d = kd(daemon_section(max_clients=2))
    ui = [d.client(), d.client()]
    for c in ui:
        c.ok("hello")
    extra = Client(d.ui_sock)
    msgs = extra.expect_eof(timeout=3)
    assert msgs and msgs[0]["error"]["code"] == "not_permitted", msgs
    extra.close()
    admins = [d.admin() for _ in range(4)]
    for a in admins:
        assert a.ok("hello")["role"] == "admin"
    # the reserve is bounded too
    over = Client(d.admin_sock)
    msgs = over.expect_eof(timeout=3)
    assert msgs and msgs[0]["error"]["code"] == "not_permitted", msgs
    over.close()


def test_requests_arriving_a_byte_at_a_time(kd):
    """A line split over many reads is taken whole once its newline comes;
    two requests in one stream of single bytes get two replies, in order."""
    d = kd(daemon_section())
    c = d.client()
    data = b'{"id":1,"cmd":"hello"}\n{"id":"two","cmd":"status"}\n'
    for i in range(len(data)):
        c.sock.sendall(data[i:i + 1])
        if i % 7 == 0:
            time.sleep(0.002)  # let the daemon read a partial line
    assert c.next_reply()["id"] == 1
    r = c.next_reply()
    assert r["id"] == "two" and r["ok"] is True
    c.ok("hello")


def test_reply_larger_than_the_socket_buffer_arrives_whole(kd):
    """A reply bigger than the socket takes at once (a 250 kB payload in
    txn.get, against a ~200 kB send buffer, the client not reading yet) is
    written as the client reads it, and the next reply comes after it."""
    d = kd(daemon_section())
    c = d.client()
    blob = "".join("%07d" % i for i in range(250000 // 7))
    txn = c.ok("txn.submit", args={"type": "bench.big", "payload": {"blob": blob}})["txn_id"]
    sndbuf = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    c.send_raw('{"id":"get","cmd":"txn.get","args":{"txn_id":"%s"}}\n'
               '{"id":"after","cmd":"hello"}\n' % txn)
    time.sleep(0.3)  # the daemon's write stops at its buffer: nothing read yet
    r = c.reply("get", timeout=10)
    assert r["ok"] is True, r
    assert r["result"]["payload"]["blob"] == blob
    assert len(json.dumps(r)) > sndbuf
    assert c.next_reply()["id"] == "after"
    c.drain(0.2)
    assert c.inbox == []
