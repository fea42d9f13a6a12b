"""Start and drive the reference endpoint (server.py) from Python tests.

    from endpoint import Endpoint          # sys.path: tests/endpoint
    ep = Endpoint(tmpdir).start()          # certs made (or reused), free port, TLS accepted
    conf = ep.conf("fleet")                # an [endpoint fleet] section for kioskd
    ep.fault("503", retry_after=2, count=1)
    ...
    assert set(ep.applied_ids()) == acked
    ep.stop()

Everything the server offers through its control port has a method here;
see README.md for the semantics.
"""

import hashlib
import hmac as hmac_mod
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "server.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

sys.path.insert(0, HERE)
import certs as certs_mod  # noqa: E402


def batch_key(ids):
    """The Idempotency-Key of a batch: hex sha256 of each id followed by a newline."""
    return hashlib.sha256("".join(i + "\n" for i in ids).encode()).hexdigest()


def txn(tid, type="test.item", payload=None, **kw):
    """One transaction of a batch body."""
    t = {"id": tid, "type": type, "created": "2026-12-04T15:20:00.000Z", "payload": payload or {}}
    t.update(kw)
    return t


class ControlError(Exception):
    pass


class Endpoint:
    def __init__(self, workdir, certs=None, port=0, control_port=0, prefix="/api", token=None, hmac_key=None,
                 ledger=False, client_cert=True, server_cert="good", strict=False, verbose=False, paid_after=None,
                 seed=None, kiosk_id="K0001"):
        """workdir: private directory (port file, log, token/key files, ledger).
        certs: certificate directory (default workdir/certs; share one to save time).
        token / hmac_key: strings; written to workdir/token and workdir/hmac.key.
        ledger: False (memory), True (workdir/ledger.db) or a path."""
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.certs_dir = os.path.abspath(certs or os.path.join(self.workdir, "certs"))
        self.port, self.control_port = port, control_port
        self.prefix = prefix.rstrip("/")
        self.token, self.hmac_key = token, hmac_key
        self.ledger = os.path.join(self.workdir, "ledger.db") if ledger is True else (ledger or None)
        self.client_cert_required = client_cert
        self.server_cert = server_cert
        self.strict, self.verbose = strict, verbose
        self.paid_after, self.seed = paid_after, seed
        self.kiosk_id = kiosk_id
        self.port_file = os.path.join(self.workdir, "endpoint.port")
        self.log_path = os.path.join(self.workdir, "endpoint.log")
        self.token_file = self.hmac_key_file = None
        if token is not None:
            self.token_file = os.path.join(self.workdir, "token")
            _write(self.token_file, token.encode())
        if hmac_key is not None:
            self.hmac_key_file = os.path.join(self.workdir, "hmac.key")
            _write(self.hmac_key_file, hmac_key.encode() if isinstance(hmac_key, str) else hmac_key)
        self.proc = None
        self.certs = None

    # ------------------------------------------------------------------ process

    def start(self, timeout=15.0):
        self.certs = certs_mod.ensure(self.certs_dir)
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("endpoint already running")
        try:
            os.unlink(self.port_file)
        except FileNotFoundError:
            pass
        args = [PYTHON, SERVER, "--certs", self.certs_dir, "--port", str(self.port),
                "--control-port", str(self.control_port), "--port-file", self.port_file, "--prefix", self.prefix,
                "--server-cert", self.server_cert]
        if self.token_file:
            args += ["--token-file", self.token_file]
        if self.hmac_key_file:
            args += ["--hmac-key", self.hmac_key_file]
        if self.ledger:
            args += ["--ledger", self.ledger]
        if not self.client_cert_required:
            args.append("--no-client-cert")
        if self.strict:
            args.append("--strict")
        if self.verbose:
            args.append("--verbose")
        if self.paid_after is not None:
            args += ["--paid-after", str(self.paid_after)]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                         close_fds=True)
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise RuntimeError("endpoint exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("endpoint did not start:\n" + self.log_tail())
            time.sleep(0.01)
        with open(self.port_file) as f:
            info = json.load(f)
        self.port, self.control_port = info["port"], info["control_port"]
        self._wait_tls(deadline)
        return self

    def _wait_tls(self, deadline):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the server may present a bad certificate on purpose
        ctx.load_cert_chain(self.client_cert, self.client_key)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    with ctx.wrap_socket(s) as t:
                        t.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                        if t.recv(12).startswith(b"HTTP/1.1 200"):
                            return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("endpoint does not accept TLS:\n" + self.log_tail())
            time.sleep(0.02)

    def stop(self, timeout=10.0):
        """SIGTERM and wait (SIGKILL after timeout); returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self):
        """SIGKILL (a crash: with a ledger file, what was committed stays)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, kill=False):
        """Stop (or kill) and start again on the same ports and ledger."""
        self.kill() if kill else self.stop()
        return self.start()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def __enter__(self):
        return self.start() if not self.alive() else self

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ files and URLs

    @property
    def url(self):
        return "https://127.0.0.1:%d%s" % (self.port, self.prefix)

    @property
    def control_url(self):
        return "http://127.0.0.1:%d" % self.control_port

    def _cert(self, name):
        return os.path.join(self.certs_dir, name)

    ca_file = property(lambda self: self._cert("ca.crt"))
    client_cert = property(lambda self: self._cert("client.crt"))
    client_key = property(lambda self: self._cert("client.key"))

    def cert(self, name):
        """Any file of the certificate directory, e.g. cert('unknown-ca-client.crt')."""
        return self._cert(name)

    def conf(self, name="main", **extra):
        """An [endpoint NAME] section for kioskd's configuration."""
        lines = ["[endpoint %s]" % name, "url = " + self.url, "ca_file = " + self.ca_file,
                 "cert_file = " + self.client_cert, "key_file = " + self.client_key]
        if self.token_file:
            lines.append("token_file = " + self.token_file)
        if self.hmac_key_file:
            lines.append("hmac_key_file = " + self.hmac_key_file)
        for k, v in extra.items():
            lines.append("%s = %s" % (k, v))
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ control API

    def control(self, method, path, body=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            r = c.getresponse()
            out = json.loads(r.read() or b"null")
            if r.status != 200:
                raise ControlError("%s %s: %s %s" % (method, path, r.status, out))
            return out
        finally:
            c.close()

    def fault(self, name, **kw):
        """Replace every fault rule by this one; fault(None) clears them.
        e.g. fault("503", retry_after=2, count=1), fault("hang", path="/transactions"),
        fault("reset_after", probability=0.1)."""
        if name is None:
            return self.clear_faults()
        kw["name"] = str(name)
        return self.control("POST", "/fault", kw)["faults"]

    def add_fault(self, name, **kw):
        """Add a rule after the existing ones (the first that fires wins)."""
        kw.update(name=str(name), add=True)
        return self.control("POST", "/fault", kw)["faults"]

    def clear_faults(self):
        return self.control("POST", "/faults/clear")["faults"]

    def faults(self):
        return self.control("GET", "/faults")["faults"]

    def applied(self, since=0, brief=False):
        """The applied effects in order: [{seq, id, type, payload, created, flow?, final?,
        blobs?, kiosk, key, applied_at, received}] (brief: seq, id, type, received)."""
        q = "/applied?since=%d%s" % (since, "&brief=1" if brief else "")
        return self.control("GET", q)["applied"]

    def applied_ids(self):
        """{id: times received} of every applied transaction (each applied exactly once)."""
        return {e["id"]: e["received"] for e in self.applied(brief=True)}

    def applied_one(self, tid):
        try:
            return self.control("GET", "/applied/" + tid)
        except ControlError:
            return None

    def wait_applied(self, n, timeout=30.0):
        """Wait until at least n transactions are applied; returns the count."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.stats()["applied"]
            if c >= n or time.monotonic() > deadline:
                return c
            time.sleep(0.05)

    def stats(self):
        return self.control("GET", "/stats")

    def requests(self, since=0):
        """The request log: [{n, t, time, method, path, status, conn, ms, key?, kiosk_id?, items?,
        ids? (first 100), fault?}]; status is an HTTP code, or reset / hang / dropped."""
        return self.control("GET", "/requests?since=%d" % since)["requests"]

    def violations(self):
        """Contract violations seen (wrong Idempotency-Key, missing headers, ...)."""
        return self.control("GET", "/violations")["violations"]

    def reset(self):
        """Forget everything: ledger, applied effects, faults, logs, counters."""
        return self.control("POST", "/reset")

    def down(self, close=True):
        """Stop listening (connections refused) and close open connections."""
        return self.control("POST", "/down", {"close": close})

    def up(self):
        return self.control("POST", "/up")

    def tls(self, cert="good", close=True):
        """Present another server certificate: good, expired, unknown_ca, wrong_host."""
        return self.control("POST", "/tls", {"cert": cert, "close": close})

    def close_connections(self):
        return self.control("POST", "/close_connections")["closed"]

    def config(self, **kw):
        """paid_after, strict, verbose, seed."""
        return self.control("POST", "/config", kw)

    # ------------------------------------------------------------------ a client, for tests

    def ssl_context(self, cert="client", verify=True):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            ctx.load_verify_locations(self.ca_file)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(self._cert(cert + ".crt"), self._cert(cert + ".key"))
        return ctx

    def connection(self, timeout=10, host="127.0.0.1", **ctxkw):
        return http.client.HTTPSConnection(host, self.port, context=self.ssl_context(**ctxkw), timeout=timeout)

    def post(self, path, body, key=None, headers=None, conn=None, timeout=10, sign=True, auth=True, **ctxkw):
        """POST to <url><path>; returns (status, headers, parsed JSON or raw bytes).
        body: a dict (sent as JSON) or bytes.  key: Idempotency-Key; for
        /transactions it defaults to the batch's key.  conn: reuse a
        connection from connection()."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Content-Type": "application/json", "X-Kiosk-Id": self.kiosk_id}
        if key is None and path == "/transactions" and isinstance(body, dict):
            key = batch_key([t["id"] for t in body.get("transactions", [])])
        if key:
            h["Idempotency-Key"] = key
        if auth and self.token is not None:
            h["Authorization"] = "Bearer " + self.token
        if sign and self.hmac_key is not None:
            k = self.hmac_key.encode() if isinstance(self.hmac_key, str) else self.hmac_key
            h["X-Kiosk-Signature"] = "sha256=" + hmac_mod.new(k, data, hashlib.sha256).hexdigest()
        h.update(headers or {})
        c = conn or self.connection(timeout=timeout, **ctxkw)
        try:
            c.request("POST", self.prefix + path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            try:
                out = json.loads(raw)
            except ValueError:
                out = raw
            return r.status, dict(r.getheaders()), out
        finally:
            if conn is None:
                c.close()

    def send_batch(self, txns, kiosk=None, **kw):
        """POST these transactions as one batch (see txn())."""
        return self.post("/transactions", {"kiosk": kiosk or self.kiosk_id, "transactions": txns}, **kw)


def _write(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
