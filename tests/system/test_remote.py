"""remote.call end to end: the real kioskd calling the real reference
endpoint (tests/endpoint/) with the daemon's credentials (mTLS, bearer
token, HMAC signature) -- docs/protocol.md "remote.call" and
docs/delivery.md "remote.call".

Results and error codes, path checks, the credentials never reaching the
UI, timeouts and clients that leave mid-call (the transfer is abandoned,
nothing crashes), never queued or retried.
"""

import json
import os
import signal
import time

import pytest

import kiosk
from kiosk import SLOW, wait_until
from test_delivery import FAST, certs_dir, conf, ep, ep_conf, mk_ep, shared_ep, submit, wait_delivered  # noqa: F401

TOKEN = "tok-7f3a9c1e5b"
HMAC_KEY = "hmac-2b8d4f6a0c"


def remote(c, path, body=None, endpoint="gas", timeout_ms=None, key=None, timeout=10.0):
    args = {"endpoint": endpoint, "path": path}
    if body is not None:
        args["body"] = body
    if key is not None:
        args["idempotency_key"] = key
    return c.call("remote.call", args=args, timeout_ms=timeout_ms, timeout=timeout)


def ok(r):
    assert r.get("ok") is True, r
    return r["result"]


def err(r, code):
    assert r.get("ok") is False and r["error"]["code"] == code, r
    return r["error"]["message"]


def posts(ep, path):
    return [r for r in ep.requests() if r["path"] == "/api" + path]


def conns_to(pid, port):
    """ESTABLISHED TCP connections of process pid to 127.0.0.1:port."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    n = 0
    with open("/proc/%d/net/tcp" % pid) as f:
        next(f)
        for line in f:
            x = line.split()
            rport = int(x[2].split(":")[1], 16)
            if rport == port and x[3] == "01" and x[9] in inodes:
                n += 1
    return n


@pytest.fixture
def secured(mk_ep):
    """An endpoint that wants a token and an HMAC signature too."""
    return mk_ep(token=TOKEN, hmac_key=HMAC_KEY)


def test_results(kd, ep):
    d = kd(conf(ep_conf(ep)))
    ui = d.client()
    body = {"hello": "world", "n": [1, 2, 3], "nested": {"ü": "ß"}}
    assert ok(remote(ui, "/echo", body)) == {"status": 200, "body": body}
    r = ok(remote(ui, "/payment/qr", {"amount_fen": 5000}))
    assert r["status"] == 200 and r["body"]["amount_fen"] == 5000 and r["body"]["order"].startswith("P-")
    order = r["body"]["order"]
    polls = [ok(remote(ui, "/payment/status", {"order": order}))["body"]["status"] for _ in range(3)]
    assert polls == ["pending", "pending", "paid"]
    assert ok(remote(ui, "/eligibility", {}))["body"]["eligible"] is True
    assert ok(remote(ui, "/eligibility", {"deny": "quota used"}))["body"] == {"eligible": False,
                                                                            "reason": "quota used"}
    # without token_file and hmac_key_file no such header goes out
    assert ok(remote(ui, "/whoami", {}))["body"] == {"client_cn": "kiosk-0001", "kiosk_id": "K0001",
                                                   "idempotency_key": None, "authorized": False,
                                                   "signed": False}
    # no body: {} is sent
    assert ok(remote(ui, "/echo")) == {"status": 200, "body": {}}
    # an answer that is not JSON comes back as a string
    ep.fault("garbage", path="/echo", count=1)
    r = ok(remote(ui, "/echo", {"x": 1}))
    assert r["status"] == 200 and isinstance(r["body"], str) and "<" in r["body"], r
    # never queued: nothing in the outbox
    assert ui.ok("sync.status")["queue"]["queued"] == 0
    assert ep.applied_ids() == {}
    assert ep.violations() == []


def test_errors(kd, ep):
    d = kd(conf(ep_conf(ep)))
    ui = d.client()
    m = err(remote(ui, "/echo", {"fail": 400}), "remote_rejected")
    assert "400" in m and "requested failure" in m
    err(remote(ui, "/echo", {"fail": 422}), "remote_rejected")
    err(remote(ui, "/no/such/call", {}), "remote_rejected")  # 404
    err(remote(ui, "/payment/status", {"order": "P-999999"}), "remote_rejected")
    for code in (500, 502, 503):
        m = err(remote(ui, "/echo", {"fail": code, "retry_after": 1}), "remote_unavailable")
        assert str(code) in m
    # never retried by kioskd, not even after a 503 with Retry-After
    n = len(posts(ep, "/echo"))
    err(remote(ui, "/echo", {"fail": 503, "retry_after": 0}), "remote_unavailable")
    time.sleep(0.2)
    assert len(posts(ep, "/echo")) == n + 1
    # redirects are not followed
    ep.fault("302", path="/echo", count=1)
    err(remote(ui, "/echo", {}), "remote_unavailable")
    # an answer over 1 MiB
    ep.fault("huge", bytes=3 << 20, path="/echo", count=1)
    err(remote(ui, "/echo", {}), "remote_unavailable")
    # connection reset, dropped answer
    ep.fault("reset_after", path="/echo", count=1)
    err(remote(ui, "/echo", {}), "remote_unavailable")
    ep.fault("reset_before", count=1)
    err(remote(ui, "/echo", {}), "remote_unavailable")
    # down
    ep.down()
    m = err(remote(ui, "/echo", {}), "remote_unavailable")
    assert "gas" in m
    ep.up()
    assert ok(remote(ui, "/echo", {"ok": 1}))["body"] == {"ok": 1}
    # the delivery side is not disturbed by remote.call failures
    acked = submit(ui, 2)
    wait_delivered(ui, acked)
    assert d.proc.poll() is None


def test_timeout(kd, ep):
    d = kd(conf(ep_conf(ep)))
    ui = d.client()
    t0 = time.monotonic()
    m = err(remote(ui, "/echo", {"sleep_ms": 5000}, timeout_ms=500), "timeout")
    took = time.monotonic() - t0
    assert 0.45 < took < 0.5 + 1.0 * SLOW, took
    assert "500" in m or "timed out" in m, m
    ep.fault("hang", path="/payment/*")
    t0 = time.monotonic()
    err(remote(ui, "/payment/qr", {"amount_fen": 1}, timeout_ms=300), "timeout")
    assert time.monotonic() - t0 < 0.3 + 1.0 * SLOW
    ep.fault(None)
    # and the daemon goes on
    assert ok(remote(ui, "/echo", {"after": 1}))["body"] == {"after": 1}


BAD_PATHS = ["../x", "//evil.example/", "x", "echo", "", "/../x", "/a/../echo", "/./echo", "/a/.",
             "/echo?x=1", "/echo#frag", "/e cho", "/%2e%2e/x", "/%2fevil", "/echo\\x", "/echo\n",
             "/\u00e9", "//", "https://evil.example/echo", "@evil.example/x", "/a//b"]


def test_bad_requests(kd, ep):
    d = kd(conf(ep_conf(ep)))
    ui = d.client()
    before = len(ep.requests())
    for p in BAD_PATHS:
        m = err(remote(ui, p, {}), "bad_request")
        assert m.startswith("remote.call: "), m
    assert "no endpoint named 'nope'" in err(remote(ui, "/echo", {}, endpoint="nope"), "bad_request")
    err(remote(ui, "/echo", {}, endpoint=""), "bad_request")
    for args in ({"path": "/echo"}, {"endpoint": "gas"}, {"endpoint": 1, "path": "/echo"},
                 {"endpoint": "gas", "path": ["/echo"]}, {"endpoint": "gas", "path": "/echo", "body": "x"},
                 {"endpoint": "gas", "path": "/echo", "body": 3},
                 {"endpoint": "gas", "path": "/echo", "idempotency_key": "has space"},
                 {"endpoint": "gas", "path": "/echo", "idempotency_key": ""},
                 {"endpoint": "gas", "path": "/echo", "idempotency_key": "k" * 256},
                 {"endpoint": "gas", "path": "/echo", "idempotency_key": "a\r\nX-Evil: 1"}):
        r = ui.call("remote.call", args=args)
        assert r.get("ok") is False and r["error"]["code"] == "bad_request", (args, r)
    # none of these reached the endpoint
    assert len(ep.requests()) == before, ep.requests()[before:]
    # a good one still works
    assert ok(remote(ui, "/echo", {"x": 1}, key="k" * 255))["status"] == 200


def test_credentials_are_sent_never_shown(kd, secured):
    ep = secured
    d = kd(conf(ep_conf(ep)))
    ui = d.client()
    r = remote(ui, "/whoami", {"q": 1})
    who = ok(r)["body"]
    assert who["client_cn"] == "kiosk-0001"
    assert who["kiosk_id"] == "K0001"
    assert who["authorized"] is True and who["signed"] is True, who
    assert who["idempotency_key"] is None
    who = ok(remote(ui, "/whoami", {}, key="pay-778812"))["body"]
    assert who["idempotency_key"] == "pay-778812"
    text = json.dumps(r)
    assert TOKEN not in text and HMAC_KEY not in text
    # nothing the UI can ask shows them either
    for cmd in ("status", "sync.status"):
        out = json.dumps(ui.ok(cmd))
        assert TOKEN not in out and HMAC_KEY not in out and ep.token_file not in out
    assert TOKEN not in d.log() and HMAC_KEY not in d.log()


def test_wrong_secret_is_rejected_without_showing_it(kd, secured):
    ep = secured
    wrong = os.path.join(ep.workdir, "wrong-token")
    with open(wrong, "w") as f:
        f.write("WRONG-tok-5e6f\n")
    os.chmod(wrong, 0o600)
    d = kd(conf(ep_conf(ep).replace(ep.token_file, wrong)))
    ui = d.client()
    r = remote(ui, "/whoami", {})
    m = err(r, "remote_rejected")
    assert "401" in m
    assert "WRONG-tok-5e6f" not in json.dumps(r) and "WRONG-tok-5e6f" not in d.log()


def test_without_client_certificate_the_endpoint_refuses(kd, ep):
    d = kd(conf(ep_conf(ep, drop=("cert_file", "key_file"))))
    ui = d.client()
    err(remote(ui, "/whoami", {}), "remote_unavailable")
    assert ep.stats().get("handshake_failed", 0) >= 1


def test_client_gone_mid_call_abandons_the_transfer(kd, ep):
    d = kd(conf(ep_conf(ep)))
    ep.fault("hang", path="/payment/*")
    for _ in range(3):
        c = d.client()
        c.request("remote.call", args={"endpoint": "gas", "path": "/payment/qr", "body": {"amount_fen": 1}},
                  timeout_ms=60000)
        wait_until(lambda: any(r["status"] == "hang" for r in ep.requests()[-1:]), 5, "the call at the endpoint")
        wait_until(lambda: conns_to(d.pid, ep.port) >= 1, 2, "kioskd's connection")
        c.close()
        # the transfer is abandoned: kioskd closes its connection (else it would hang for 60 s)
        wait_until(lambda: conns_to(d.pid, ep.port) == 0, 3, "the connection closed")
        ep.requests()
    ep.fault(None)
    ui = d.client()
    assert ok(remote(ui, "/echo", {"still": "here"}))["body"] == {"still": "here"}
    assert d.proc.poll() is None


def test_cancel_a_call(kd, ep):
    d = kd(conf(ep_conf(ep)))
    ep.fault("hang", path="/echo")
    ui = d.client()
    i = ui.request("remote.call", args={"endpoint": "gas", "path": "/echo", "body": {}}, timeout_ms=60000)
    wait_until(lambda: conns_to(d.pid, ep.port) >= 1, 3, "the call under way")
    assert ui.ok("cancel", args={"target": i})["cancelled"] is True
    r = ui.reply(i)
    assert r["ok"] is False and r["error"]["code"] == "cancelled", r
    wait_until(lambda: conns_to(d.pid, ep.port) == 0, 3, "the connection closed")


def test_many_calls_at_once(kd, ep):
    d = kd(conf(ep_conf(ep)))
    ui = d.client()
    ids = [ui.request("remote.call", args={"endpoint": "gas", "path": "/echo", "body": {"n": n, "sleep_ms": 50}})
           for n in range(20)]
    for n, i in enumerate(ids):
        r = ui.reply(i)
        assert r["ok"] and r["result"]["body"]["n"] == n, r


def _hang_then_stop(d, ep, n=3):
    ep.fault("hang", path="/echo")
    ui = d.client()
    ids = [ui.request("remote.call", args={"endpoint": "gas", "path": "/echo", "body": {}}, timeout_ms=60000)
           for _ in range(n)]
    wait_until(lambda: conns_to(d.pid, ep.port) >= n, 3, "calls under way")
    d.signal(signal.SIGTERM)
    return ui, ids


def test_daemon_stop_mid_call_exits_cleanly(kd, ep):
    d = kd(conf(ep_conf(ep)))
    _hang_then_stop(d, ep)
    assert d.wait_exit(5) == 0
    kiosk.assert_no_sanitizer(d.log())


def test_daemon_stop_mid_call_answers_the_call(kd, ep):
    """A call still running when the daemon stops is answered
    (remote_unavailable, as src/sync.h says sync_shutdown does; device
    commands get device_offline "daemon stopping" the same way) before the
    connection closes."""
    d = kd(conf(ep_conf(ep)))
    ui, ids = _hang_then_stop(d, ep)
    got = []
    try:
        for i in ids:
            got.append(ui.reply(i, timeout=5))
    except kiosk.ProtocolEOF:
        pass
    assert d.wait_exit(5) == 0
    assert len(got) == len(ids), "%d of %d running remote.call answered before the daemon hung up: %r" % (
        len(got), len(ids), got)
    for r in got:
        assert r["ok"] is False and r["error"]["code"] == "remote_unavailable", r
