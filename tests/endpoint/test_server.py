"""Self-tests of the reference endpoint: /usr/bin/python3 -m pytest -q tests/endpoint"""

import concurrent.futures
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import warnings

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import certs as certs_mod  # noqa: E402
from endpoint import Endpoint, batch_key, txn  # noqa: E402


@pytest.fixture(scope="session")
def certdir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    certs_mod.ensure(d)
    return d


@pytest.fixture(scope="module")
def shared(tmp_path_factory, certdir):
    e = Endpoint(str(tmp_path_factory.mktemp("ep")), certs=certdir, seed=1).start()
    yield e
    assert e.stop() == 0, e.log_tail()


@pytest.fixture
def ep(shared):
    """The module's endpoint, reset and up, with the default certificate."""
    if not shared.stats()["up"]:
        shared.up()
    shared.reset()
    shared.config(strict=False, paid_after=2)
    yield shared
    shared.reset()
    shared.tls("good")


def ids(n, tag="t"):
    return ["%s-%04d" % (tag, i) for i in range(n)]


def batch(id_list, **payload):
    return [txn(i, "gas.topup", dict(payload, n=i)) for i in id_list]


def statuses(out):
    return [(r["id"], r["status"]) for r in out["results"]]


def network_error(fn):
    """Run fn(); return the exception it raised (a network-level failure)."""
    try:
        fn()
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        return e
    raise AssertionError("expected a network error")


# ------------------------------------------------------------------ certificates


def test_certs_made_once_and_verify(certdir, tmp_path):
    f = certs_mod.files(certdir)
    m = os.stat(f["server.crt"]).st_mtime_ns
    t0 = time.monotonic()
    certs_mod.ensure(certdir)
    assert time.monotonic() - t0 < 0.1 and os.stat(f["server.crt"]).st_mtime_ns == m

    def verify(ca, crt):
        return subprocess.run(["openssl", "verify", "-CAfile", f[ca], f[crt]], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)

    assert verify("ca.crt", "server.crt").returncode == 0
    assert verify("ca.crt", "wrong-host-server.crt").returncode == 0
    assert verify("client-ca.crt", "client.crt").returncode == 0
    assert "expired" in verify("ca.crt", "expired-server.crt").stdout
    assert "expired" in verify("client-ca.crt", "expired-client.crt").stdout
    assert verify("ca.crt", "unknown-ca-server.crt").returncode != 0
    assert verify("client-ca.crt", "unknown-ca-client.crt").returncode != 0
    assert verify("ca.crt", "client.crt").returncode != 0  # separate client CA
    assert os.stat(f["server.key"]).st_mode & 0o077 == 0
    # concurrent first use of an empty directory
    d = str(tmp_path / "c")
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        list(ex.map(lambda _: certs_mod.ensure(d), range(3)))
    assert verify("ca.crt", "server.crt").returncode == 0


# ------------------------------------------------------------------ TLS


def test_mtls_required_curl(ep):
    c = ["curl", "-sS", "--max-time", "5", "--cacert", ep.ca_file, "-H", "Content-Type: application/json",
         "-d", "{}", ep.url + "/echo"]
    ok = subprocess.run(c + ["--cert", ep.client_cert, "--key", ep.client_key], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == "{}", ok.stderr
    for extra in ([], ["--cert", ep.cert("unknown-ca-client.crt"), "--key", ep.cert("unknown-ca-client.key")],
                  ["--cert", ep.cert("expired-client.crt"), "--key", ep.cert("expired-client.key")]):
        bad = subprocess.run(c + extra, capture_output=True, text=True)
        assert bad.returncode in (35, 55, 56), (extra, bad.returncode, bad.stderr)  # TLS 1.3: seen on send or receive
    assert ep.stats()["handshake_failed"] == 3
    assert ep.stats()["requests"] == 1


def test_no_client_cert_http_client(ep):
    for cert in (None, "unknown-ca-client", "expired-client"):
        e = network_error(lambda: ep.post("/echo", {"a": 1}, cert=cert))
        assert isinstance(e, (ssl.SSLError, ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected))
    assert ep.post("/echo", {"a": 1})[0] == 200


def test_tls12_is_the_minimum(ep):
    ctx = ep.ssl_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = http.client.HTTPSConnection("127.0.0.1", ep.port, context=ctx, timeout=5)
    c.request("POST", "/api/echo", body=b"{}", headers={"Content-Type": "application/json"})
    assert c.getresponse().status == 200
    c.close()
    ctx = ep.ssl_context()
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", ep.port), timeout=5) as s:
            ctx.wrap_socket(s, server_hostname="localhost")


@pytest.mark.parametrize("cert,why", [("expired", "expired"), ("unknown_ca", "issuer"),
                                      ("wrong_host", "mismatch")])
def test_bad_server_certificates(ep, cert, why):
    ep.tls(cert)
    e = network_error(lambda: ep.post("/echo", {}))
    assert isinstance(e, ssl.SSLCertVerificationError) and why in str(e).lower(), e
    r = subprocess.run(["curl", "-sS", "--cacert", ep.ca_file, "--cert", ep.client_cert, "--key", ep.client_key,
                        "-d", "{}", ep.url + "/echo"], capture_output=True, text=True)
    assert r.returncode == 60, r.stderr
    ep.tls("good")
    assert ep.post("/echo", {})[0] == 200
    assert ep.post("/echo", {}, host="localhost")[0] == 200


# ------------------------------------------------------------------ batches and the ledger


def test_batch_results_and_applied(ep):
    txns = batch(ids(3))
    txns.append(txn("t-rej", "gas.topup", {"reject": "card number unknown"}))
    txns.append({"id": "t-notype", "created": "2026-12-04T15:20:00.000Z", "payload": {}})
    txns.append(txn("t-flow", "gas.card_written", {"x": 1}, flow="f-1", final=True))
    st, h, out = ep.send_batch(txns)
    assert st == 200 and h["Content-Type"] == "application/json"
    assert statuses(out) == [("t-0000", "ok"), ("t-0001", "ok"), ("t-0002", "ok"), ("t-rej", "rejected"),
                             ("t-notype", "rejected"), ("t-flow", "ok")]
    assert out["results"][3]["reason"] == "card number unknown"
    assert out["results"][4]["reason"] == "missing type"
    a = ep.applied()
    assert [e["id"] for e in a] == ["t-0000", "t-0001", "t-0002", "t-flow"]
    assert a[0]["payload"] == {"n": "t-0000"} and a[0]["type"] == "gas.topup" and a[0]["kiosk"] == "K0001"
    assert a[3]["flow"] == "f-1" and a[3]["final"] is True and a[0]["key"] == batch_key([t["id"] for t in txns])
    assert ep.applied_one("t-flow")["flow"] == "f-1" and ep.applied_one("t-rej") is None
    assert ep.violations() == [] and ep.stats()["items_ok"] == 4


def test_duplicate_ids_across_batches(ep):
    assert statuses(ep.send_batch(batch(["a", "b"]))[2]) == [("a", "ok"), ("b", "ok")]
    # another batch (another key) with a known id, and an id twice in one batch
    out = ep.send_batch(batch(["b", "c", "c"]))[2]
    assert statuses(out) == [("b", "duplicate"), ("c", "ok"), ("c", "duplicate")]
    assert ep.applied_ids() == {"a": 1, "b": 2, "c": 2}
    # a rejected item is not applied: it is judged again when it comes back
    assert statuses(ep.send_batch([txn("r", payload={"reject": "no"})])[2]) == [("r", "rejected")]
    assert statuses(ep.send_batch([txn("r", payload={"reject": "no"})])[2]) == [("r", "rejected")]
    # a known id with different content: still a duplicate, reported as a violation
    assert statuses(ep.send_batch([txn("a", payload={"n": "changed"})])[2]) == [("a", "duplicate")]
    assert "different content" in ep.violations()[0]["what"]


def test_key_replay_conflict_and_mismatch(ep):
    body = {"kiosk": "K0001", "transactions": batch(ids(2))}
    st1, _, out1 = ep.post("/transactions", body)
    st2, h2, out2 = ep.post("/transactions", body)
    assert st1 == st2 == 200 and out1 == out2 and h2.get("Idempotent-Replayed") == "true"
    assert statuses(out2) == [("t-0000", "ok"), ("t-0001", "ok")]  # the stored answer, not "duplicate"
    # the same request reformatted (key order, whitespace) is the same request
    raw = json.dumps(body, indent=2, sort_keys=True).encode()
    st, _, out = ep.post("/transactions", raw, key=batch_key(ids(2)))
    assert st == 200 and out == out1
    # the same key with a different body
    other = {"kiosk": "K0001", "transactions": [txn("t-0000", "gas.topup", {"n": "x"}), txn("t-0001")]}
    st, _, out = ep.post("/transactions", other, key=batch_key(ids(2)))
    assert st == 422, out
    assert ep.applied_ids() == {"t-0000": 3, "t-0001": 3}
    s = ep.stats()
    assert s["key_replay"] == 2 and s["key_mismatch"] == 1 and s["keys"] == 1


def test_key_in_flight_409(ep):
    ep.fault("delay", ms=800, count=1)
    body = {"kiosk": "K0001", "transactions": batch(ids(2))}
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        first = ex.submit(ep.post, "/transactions", body)
        time.sleep(0.3)
        st, _, out = ep.post("/transactions", body)
        assert st == 409, out
        # a different body under the same key while in flight: 422
        st, _, out = ep.post("/transactions", {"kiosk": "K0001", "transactions": batch(["zz"])},
                             key=batch_key(ids(2)))
        assert st == 422
        assert first.result()[0] == 200
    st, h, out = ep.post("/transactions", body)
    assert st == 200 and h.get("Idempotent-Replayed") == "true"
    assert ep.applied_ids() == {"t-0000": 2, "t-0001": 2}


def test_contract_violations_and_strict(ep):
    body = {"kiosk": "K0001", "transactions": batch(["v1"])}
    assert ep.post("/transactions", body, key="not-the-right-key")[0] == 200
    assert ep.post("/transactions", {"kiosk": "K0001", "transactions": batch(["v2"])},
                   headers={"X-Kiosk-Id": "K9999"})[0] == 200
    v = [x["what"] for x in ep.violations()]
    assert any("Idempotency-Key" in x for x in v) and any("X-Kiosk-Id" in x for x in v)
    ep.config(strict=True)
    st, _, out = ep.post("/transactions", {"kiosk": "K0001", "transactions": batch(["v3"])}, key="bad")
    assert st == 400 and "contract" in out["error"]
    assert ep.applied_one("v3") is None
    assert ep.send_batch(batch(["v3"]))[0] == 200


def test_bad_batches(ep):
    assert ep.post("/transactions", b"{not json", key="k1")[0] == 400
    assert ep.post("/transactions", {"transactions": "no"}, key="k2")[0] == 400
    assert ep.post("/transactions", {"kiosk": "K", "transactions": [{"type": "x", "payload": {}}]}, key="k3")[0] == 400
    assert ep.post("/nothing-here", {}, key=None)[0] == 404
    assert ep.stats()["applied"] == 0 and ep.stats()["keys"] == 0


def test_blobs_checked(ep):
    import base64
    import hashlib
    data = b"\x89PNG fake image" * 10
    good = {"id": hashlib.sha256(data).hexdigest(), "mime": "image/png", "size": len(data),
            "data": base64.b64encode(data).decode()}
    bad = dict(good, id="0" * 64)
    out = ep.send_batch([txn("b1", blobs=[good]), txn("b2", blobs=[bad])])[2]
    assert statuses(out) == [("b1", "ok"), ("b2", "rejected")] and "sha256" in out["results"][1]["reason"]
    blob = ep.applied_one("b1")["blobs"][0]
    assert blob["sha256"] == good["id"] and "data" not in blob


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize("name,code,retry", [("500", 500, None), ("503", 503, "1"), ("429", 429, "1"),
                                             ("408", 408, None)])
def test_status_faults_not_applied(ep, name, code, retry):
    ep.fault(name, count=1)
    st, h, _ = ep.send_batch(batch(["s1"]))
    assert st == code and h.get("Retry-After") == retry
    assert ep.applied_ids() == {}
    st, h, out = ep.send_batch(batch(["s1"]))  # one-shot: the retry goes through
    assert st == 200 and statuses(out) == [("s1", "ok")]


def test_retry_after_value_sticky_and_apply(ep):
    ep.fault("503", retry_after=7)
    for _ in range(3):
        st, h, _ = ep.send_batch(batch(["x"]))
        assert st == 503 and h["Retry-After"] == "7"
    assert ep.faults()[0]["fired"] == 3 and ep.faults()[0]["remaining"] is None
    ep.fault("500", apply=True, count=1)  # applied, then the answer is a 500
    assert ep.send_batch(batch(["x"]))[0] == 500
    assert ep.applied_ids() == {"x": 1}
    assert statuses(ep.send_batch(batch(["x"]))[2]) == [("x", "ok")]  # key replay of the stored answer


def test_fault_path_skip_probability(ep):
    ep.fault("500", path="/payment/*")
    assert ep.send_batch(batch(["p"]))[0] == 200
    assert ep.post("/payment/qr", {"amount_fen": 1})[0] == 500
    ep.fault("500", skip=2, count=1)
    assert [ep.post("/echo", {})[0] for _ in range(4)] == [200, 200, 500, 200]
    ep.config(seed=42)
    ep.fault("503", probability=0.3)
    c = ep.connection()
    codes = [ep.post("/echo", {}, conn=c)[0] for _ in range(200)]
    c.close()
    assert 30 < codes.count(503) < 90 and codes.count(200) == 200 - codes.count(503)
    ep.fault("500", count=1)
    ep.add_fault("429", count=1)
    assert [ep.post("/echo", {})[0] for _ in range(3)] == [500, 429, 200]
    ep.fault(None)
    assert ep.faults() == []


def test_hang(ep):
    ep.fault("hang", count=1)
    t0 = time.monotonic()
    e = network_error(lambda: ep.send_batch(batch(["h"]), timeout=0.5))
    assert isinstance(e, (socket.timeout, TimeoutError)) and time.monotonic() - t0 >= 0.45
    assert ep.post("/echo", {"still": "alive"})[2] == {"still": "alive"}
    assert ep.applied_ids() == {}
    assert any(r["status"] == "hang" for r in ep.requests())


@pytest.mark.parametrize("name", ["reset_before", "reset_after"])
def test_resets_not_applied(ep, name):
    ep.fault(name, count=1)
    e = network_error(lambda: ep.send_batch(batch(["r"])))
    assert isinstance(e, (ConnectionResetError, http.client.RemoteDisconnected, ssl.SSLError, BrokenPipeError)), e
    assert ep.applied_ids() == {}
    assert ep.requests()[-1]["status"] == "reset" and ep.requests()[-1]["fault"] == name
    assert statuses(ep.send_batch(batch(["r"]))[2]) == [("r", "ok")]


def test_reset_before_on_a_kept_alive_connection(ep):
    c = ep.connection()
    assert ep.post("/echo", {}, conn=c)[0] == 200
    ep.fault("reset_before", count=1)
    network_error(lambda: ep.post("/echo", {}, conn=c))
    c.close()
    assert ep.post("/echo", {})[0] == 200


def test_commit_drop_then_retry(ep):
    ep.fault("commit_drop", count=1)
    e = network_error(lambda: ep.send_batch(batch(ids(3))))
    assert isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, ssl.SSLError)), e
    assert ep.applied_ids() == {i: 1 for i in ids(3)}  # applied although never acknowledged
    assert ep.requests()[-1]["status"] == "dropped"
    st, h, out = ep.send_batch(batch(ids(3)))  # the retry: same key, stored answer
    assert st == 200 and h["Idempotent-Replayed"] == "true" and [r["status"] for r in out["results"]] == ["ok"] * 3
    out = ep.send_batch(batch(ids(2)))[2]  # regrouped: per-id duplicates
    assert [r["status"] for r in out["results"]] == ["duplicate"] * 2
    ep.fault("commit_drop", rst=True, count=1)
    network_error(lambda: ep.send_batch(batch(["cd"])))
    assert "cd" in ep.applied_ids()


def test_slow_trickle(ep):
    ep.fault("slow", ms=20, chunk=16, count=1)
    t0 = time.monotonic()
    st, _, out = ep.send_batch(batch(ids(2)))
    dt = time.monotonic() - t0
    assert st == 200 and statuses(out) == [("t-0000", "ok"), ("t-0001", "ok")]
    assert dt > 0.2, dt  # ~200 bytes, 16 at a time, 20 ms apart
    # a client that gives up mid-trickle: applied anyway, the retry is answered from the ledger
    ep.fault("slow", ms=400, count=1)
    network_error(lambda: ep.send_batch(batch(["s9"]), timeout=0.2))
    assert ep.applied_ids()["s9"] == 1
    assert ep.send_batch(batch(["s9"]))[0] == 200


def test_garbage_huge_missing(ep):
    ep.fault("garbage", count=1)
    st, h, out = ep.send_batch(batch(["g"]))
    assert st == 200 and isinstance(out, bytes) and h["Content-Type"] == "text/html"
    ep.fault("garbage", body='{"results": [{"id": ', content_type="application/json", count=1)
    assert ep.send_batch(batch(["g2"]))[2] == b'{"results": [{"id": '
    ep.fault("huge", count=1)
    st, h, out = ep.send_batch(batch(["hg"]))
    assert st == 200 and int(h["Content-Length"]) >= 8 << 20 and out["results"] == []
    ep.fault("huge", bytes=100000, count=1)
    assert int(ep.send_batch(batch(["hg2"]))[1]["Content-Length"]) == 100000
    ep.fault("missing_items", count=1)
    out = ep.send_batch(batch(ids(5)))[2]
    assert [r["id"] for r in out["results"]] == ids(2)
    ep.fault("missing_items", mode="status", keep=1, count=1)
    out = ep.send_batch(batch(ids(3, "m")))[2]
    assert [r["status"] for r in out["results"]] == ["ok", "maybe", "maybe"]
    # every one of them was applied: the garbage answers hid successful batches
    assert set(ep.applied_ids()) == {"g", "g2", "hg", "hg2"} | set(ids(5)) | set(ids(3, "m"))
    out = ep.send_batch(batch(ids(5)))[2]  # the whole batch again: the true answer
    assert [r["status"] for r in out["results"]] == ["ok"] * 5


def test_delay_and_close(ep):
    ep.fault("delay", ms=300, count=1)
    t0 = time.monotonic()
    assert ep.post("/echo", {"a": 1})[2] == {"a": 1}
    assert time.monotonic() - t0 >= 0.3
    ep.fault("close", count=1)
    c = ep.connection()
    assert ep.post("/echo", {"b": 1}, conn=c)[0] == 200
    assert c.sock is None or network_error(lambda: ep.post("/echo", {}, conn=c))
    c.close()


def test_down_and_up(ep):
    c = ep.connection()
    assert ep.post("/echo", {}, conn=c)[0] == 200
    ep.down()
    assert not ep.stats()["up"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", ep.port), timeout=2)
    network_error(lambda: ep.post("/echo", {}, conn=c))  # the kept-alive connection was closed
    c.close()
    ep.up()
    assert ep.post("/echo", {"back": True})[2] == {"back": True}
    assert ep.down()["changed"] and not ep.down()["changed"]
    ep.up()


def test_down_releases_a_hung_request(ep):
    ep.fault("hang")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        f = ex.submit(lambda: network_error(lambda: ep.send_batch(batch(["d"]), timeout=10)))
        time.sleep(0.2)
        t0 = time.monotonic()
        ep.down()
        f.result(timeout=5)
        assert time.monotonic() - t0 < 2
    ep.clear_faults()
    ep.up()
    assert ep.applied_ids() == {}


def test_keep_alive(ep):
    c = ep.connection()
    for i in range(20):
        assert ep.send_batch(batch(["k%d" % i]), conn=c)[0] == 200
    c.close()
    assert len({r["conn"] for r in ep.requests()}) == 1


# ------------------------------------------------------------------ remote.call targets


def test_remote_calls(ep):
    assert ep.post("/echo", {"x": [1, 2]})[2] == {"x": [1, 2]}
    who = ep.post("/whoami", {})[2]
    assert who["client_cn"] == "kiosk-0001" and who["kiosk_id"] == "K0001"
    st, _, qr = ep.post("/payment/qr", {"amount_fen": 5000})
    assert st == 200 and qr["order"] and qr["qr"] and qr["amount_fen"] == 5000
    polls = [ep.post("/payment/status", {"order": qr["order"]})[2]["status"] for _ in range(3)]
    assert polls == ["pending", "pending", "paid"]
    qr = ep.post("/payment/qr", {"amount_fen": 1, "paid_after": 0})[2]
    assert ep.post("/payment/status", {"order": qr["order"]})[2]["status"] == "paid"
    assert ep.post("/payment/status", {"order": "nope"})[0] == 404
    st, h, out = ep.post("/anything", {"fail": 503, "retry_after": 3})
    assert st == 503 and h["Retry-After"] == "3"
    assert ep.post("/payment/qr", {"fail": 400, "error": "amount too small"})[2] == {"error": "amount too small"}
    assert ep.post("/no/such/call", {})[0] == 404
    assert ep.post("/echo", {"fail": "soon"})[0] == 400 and ep.post("/echo", {"sleep_ms": "x"})[0] == 400
    assert ep.post("/eligibility", {"deny": "blocked card"})[2]["eligible"] is False


def test_remote_call_idempotency_key(ep):
    a = ep.post("/payment/qr", {"amount_fen": 7}, key="ui-key-1")
    b = ep.post("/payment/qr", {"amount_fen": 7}, key="ui-key-1")
    assert a[2] == b[2] and b[1]["Idempotent-Replayed"] == "true"
    assert ep.post("/payment/qr", {"amount_fen": 8}, key="ui-key-1")[0] == 422
    assert ep.post("/echo", {"amount_fen": 7}, key="ui-key-1")[0] == 422  # another path
    # failures are not stored: the same key may try again
    assert ep.post("/echo", {"fail": 500}, key="ui-key-2")[0] == 500
    assert ep.post("/echo", {"fail": 500}, key="ui-key-2")[0] == 500


# ------------------------------------------------------------------ control API


def test_control_api(ep):
    ep.send_batch(batch(ids(3)))
    ep.fault("503", count=5)
    s = ep.stats()
    assert s["applied"] == 3 and s["requests"] == 1 and s["faults"][0]["remaining"] == 5
    r = ep.requests()
    assert r[0]["path"] == "/api/transactions" and r[0]["items"] == 3 and r[0]["ids"] == ids(3)
    assert ep.requests(since=r[-1]["n"]) == []
    assert [e["id"] for e in ep.applied(since=1)] == ids(3)[1:]
    with pytest.raises(Exception):
        ep.fault("no_such_fault")
    with pytest.raises(Exception):
        ep.fault("503", bogus=1)
    info = ep.control("GET", "/info")
    assert info["url"] == ep.url and info["pid"] == ep.pid
    ep.reset()
    assert ep.stats()["applied"] == 0 and ep.faults() == [] and ep.requests() == []


# ------------------------------------------------------------------ other configurations


def test_token_and_hmac(tmp_path, certdir):
    with Endpoint(str(tmp_path), certs=certdir, token="s3cret", hmac_key="k3y") as e:
        assert e.send_batch(batch(["ok"]))[0] == 200
        st, h, _ = e.send_batch(batch(["a"]), auth=False)
        assert st == 401 and h["WWW-Authenticate"] == "Bearer"
        assert e.send_batch(batch(["a"]), headers={"Authorization": "Bearer wrong"})[0] == 401
        assert e.send_batch(batch(["a"]), sign=False)[0] == 401
        assert e.send_batch(batch(["a"]), headers={"X-Kiosk-Signature": "sha256=" + "0" * 64})[0] == 401
        assert set(e.applied_ids()) == {"ok"}
        assert "token_file = " in e.conf("x") and "hmac_key_file = " in e.conf("x")
        assert open(e.token_file).read() == "s3cret"


def test_hmac_key_file_with_newline(tmp_path, certdir):
    e = Endpoint(str(tmp_path), certs=certdir, hmac_key=b"k3y\n").start()
    try:
        assert e.send_batch(batch(["a"]))[0] == 200  # signed with the key's bytes
        e.hmac_key = b"k3y"
        assert e.send_batch(batch(["b"]))[0] == 200  # or without the newline
    finally:
        e.stop()


def test_no_client_cert_mode(tmp_path, certdir):
    with Endpoint(str(tmp_path), certs=certdir, client_cert=False) as e:
        assert e.post("/echo", {}, cert=None)[0] == 200


def test_ledger_survives_kill(tmp_path, certdir):
    e = Endpoint(str(tmp_path), certs=certdir, ledger=True).start()
    try:
        port = e.port
        assert e.send_batch(batch(ids(3)))[0] == 200
        e.fault("commit_drop", count=1)
        network_error(lambda: e.send_batch(batch(["late"])))
        e.restart(kill=True)
        assert e.port == port
        assert e.applied_ids() == {i: 1 for i in ids(3)} | {"late": 1}
        st, h, out = e.send_batch(batch(["late"]))  # the lost answer, replayed after the restart
        assert st == 200 and h["Idempotent-Replayed"] == "true" and statuses(out) == [("late", "ok")]
        assert statuses(e.send_batch(batch(["t-0001", "new"]))[2]) == [("t-0001", "duplicate"), ("new", "ok")]
        e.restart()
        assert len(e.applied_ids()) == 5
    finally:
        e.stop()


def test_throughput(ep):
    """The kioskd benchmark drains 100,000 transactions through the endpoint."""
    c = ep.connection()
    t0 = time.monotonic()
    for s in range(0, 10000, 250):
        st, _, _ = ep.send_batch(batch(["p%06d" % i for i in range(s, s + 250)]), conn=c)
        assert st == 200
    dt = time.monotonic() - t0
    c.close()
    assert ep.stats()["applied"] == 10000
    assert dt < 3.0, "10,000 transactions took %.2f s" % dt


def test_cli_port_file_and_sigterm(tmp_path, certdir):
    pf = tmp_path / "port"
    p = subprocess.Popen([sys.executable if not os.path.exists("/usr/bin/python3") else "/usr/bin/python3",
                          os.path.join(os.path.dirname(__file__), "server.py"), "--certs", certdir, "--port-file",
                          str(pf), "--verbose", "--prefix", "/v1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode()
        info = json.loads(pf.read_text())
        assert "https://127.0.0.1:%d/v1" % info["port"] in line and info["pid"] == p.pid
        e = Endpoint(str(tmp_path), certs=certdir, prefix="/v1")
        e.port, e.control_port = info["port"], info["control_port"]
        assert e.send_batch(batch(["c"]))[0] == 200
    finally:
        p.terminate()
        _, err = p.communicate(timeout=5)
    assert p.returncode == 0
    assert b"POST /v1/transactions key=" in err and b"n=1 -> 200" in err
