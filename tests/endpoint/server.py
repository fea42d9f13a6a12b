#!/usr/bin/python3
"""kioskd's reference endpoint: HTTPS + mTLS, an idempotency ledger, and
switchable faults, driven through a plain-HTTP control port.  Stdlib only.
See README.md in this directory for the API; docs/delivery.md for the
contract it implements.

    server.py --certs DIR [--port N] [--control-port N] [--port-file F]
              [--prefix /api] [--token T | --token-file F] [--hmac-key FILE]
              [--ledger FILE] [--no-client-cert] [--server-cert good|expired|
              unknown_ca|wrong_host] [--paid-after N] [--strict] [--seed N]
              [--verbose]
"""

import argparse
import base64
import binascii
import collections
import fnmatch
import hashlib
import hmac
import http.server
import json
import os
import random
import signal
import socket
import sqlite3
import ssl
import struct
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import certs as certs_mod  # noqa: E402

MAX_BODY = 64 << 20
REQUEST_LOG = 10000
MAX_VIOLATIONS = 1000
IDLE_TIMEOUT = 300.0
HANDSHAKE_TIMEOUT = 10.0

# fault name -> (phase, applies the request by default)
#   phase "before": fires when a request starts to arrive, nothing read yet
#   phase "read": fires after the whole request was read, before processing
#   phase "process": changes how the request is processed or answered
FAULTS = {
    "reset_before": ("before", False),
    "reset_after": ("read", False),
    "hang": ("read", False),
    "status": ("read", False),  # any HTTP status: {"name": "503"} or {"name": "status", "code": 503}
    "delay": ("process", True),
    "commit_drop": ("process", True),
    "slow": ("process", True),
    "garbage": ("process", True),
    "huge": ("process", True),
    "missing_items": ("process", True),
    "close": ("process", True),
}
RULE_PARAMS = {"name", "count", "probability", "path", "skip", "apply", "add", "code", "retry_after", "ms", "bytes",
               "body", "rst", "keep", "mode", "chunk", "content_type"}


_JDUMP = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_CANON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def jdump(o):
    return _JDUMP(o).encode()


def canon(o):
    """The canonical form of a JSON value: two requests that differ only in
    whitespace or key order are the same request."""
    return _CANON(o).encode()


class BadRequest(Exception):
    pass


# ----------------------------------------------------------------------------
# faults


class Rule:
    def __init__(self, spec):
        spec = dict(spec)
        name = str(spec.get("name", ""))
        unknown = set(spec) - RULE_PARAMS
        if unknown:
            raise BadRequest("unknown fault parameter(s): %s" % ", ".join(sorted(unknown)))
        if name.isdigit() and len(name) == 3:
            spec.setdefault("code", int(name))
            name = "status"
        if name not in FAULTS:
            raise BadRequest("unknown fault %r (known: %s, or an HTTP status such as 503)" %
                             (name, ", ".join(sorted(FAULTS))))
        self.name = name
        self.phase, default_apply = FAULTS[name]
        self.count = spec.get("count")  # None: sticky
        self.probability = float(spec.get("probability", 1.0))
        self.path = spec.get("path")  # fnmatch pattern on the path below the prefix
        self.skip = int(spec.get("skip", 0))  # let this many matching requests through first
        self.apply = bool(spec.get("apply", default_apply))
        self.code = int(spec.get("code", 500))
        ra = spec.get("retry_after")
        if ra is None and name == "status" and self.code in (429, 503):
            ra = 1
        self.retry_after = ra
        self.ms = int(spec.get("ms", {"slow": 20, "delay": 1000}.get(name, 0)))
        self.bytes = int(spec.get("bytes", 8 << 20))
        self.body = spec.get("body")
        self.content_type = spec.get("content_type")
        self.rst = bool(spec.get("rst", name in ("reset_before", "reset_after")))
        self.keep = spec.get("keep")
        self.mode = spec.get("mode", "drop")
        self.chunk = max(1, int(spec.get("chunk", 1)))
        if self.count is not None:
            self.count = int(self.count)
        if not 0.0 <= self.probability <= 1.0:
            raise BadRequest("probability must be within 0..1")
        if name == "status" and not 100 <= self.code <= 599:
            raise BadRequest("bad status code")
        if name == "missing_items" and self.mode not in ("drop", "status", "id"):
            raise BadRequest("missing_items mode is drop, status or id")
        self.spec = spec
        self.fired = 0

    def describe(self):
        d = dict(self.spec)
        d.update(name=self.spec.get("name"), remaining=self.count, fired=self.fired, phase=self.phase,
                 apply=self.apply)
        d.pop("add", None)
        return d


class Faults:
    def __init__(self, seed=None):
        self.lock = threading.Lock()
        self.rules = []
        self.rng = random.Random(seed)

    def set(self, spec, add=False):
        r = Rule(spec)
        with self.lock:
            if not add:
                self.rules = []
            self.rules.append(r)

    def clear(self):
        with self.lock:
            self.rules = []

    def seed(self, s):
        with self.lock:
            self.rng.seed(s)

    def describe(self):
        with self.lock:
            return [r.describe() for r in self.rules]

    def pick(self, phases, path):
        """The first rule of one of phases that fires for path, or None."""
        with self.lock:
            for r in self.rules:
                if r.phase not in phases or r.count == 0:
                    continue
                if r.path is not None and path is not None and not fnmatch.fnmatchcase(path, r.path):
                    continue
                if r.skip > 0:
                    r.skip -= 1
                    continue
                if r.probability < 1.0 and self.rng.random() >= r.probability:
                    continue
                if r.count is not None:
                    r.count -= 1
                r.fired += 1
                return r
        return None


# ----------------------------------------------------------------------------
# the ledger


SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT,
    kiosk TEXT,
    doc TEXT NOT NULL,
    digest TEXT NOT NULL,
    batch_key TEXT,
    applied_at REAL NOT NULL,
    received INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    ctype TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL
);
"""


class Ledger:
    """Idempotency keys and applied effects.  One sqlite connection shared by
    every thread under self.lock: on a file (--ledger, WAL,
    synchronous=NORMAL) it survives restarts, otherwise it is in memory."""

    def __init__(self, path=None):
        self.lock = threading.RLock()
        self.path = path
        self.db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        if path:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.inflight = {}  # key -> request hash

    def reset(self):
        with self.lock:
            self.db.execute("DELETE FROM applied")
            self.db.execute("DELETE FROM keys")
            self.db.execute("DELETE FROM sqlite_sequence WHERE name='applied'")
            self.inflight.clear()

    def close(self):
        with self.lock:
            self.db.close()

    # -- idempotency keys

    def begin(self, key, h):
        """('new'|'inflight'|'mismatch'|'replay', stored) for a request's key."""
        with self.lock:
            if key in self.inflight:
                return ("inflight" if self.inflight[key] == h else "mismatch"), None
            row = self.db.execute("SELECT hash, status, ctype, body FROM keys WHERE key=?", (key,)).fetchone()
            if row is not None:
                if row[0] != h:
                    return "mismatch", None
                return "replay", (row[1], row[2], bytes(row[3]))
            self.inflight[key] = h
            return "new", None

    def release(self, key):
        with self.lock:
            self.inflight.pop(key, None)

    def _store_key(self, key, h, path, status, ctype, body):
        self.db.execute("INSERT OR REPLACE INTO keys(key, hash, path, status, ctype, body, created) "
                        "VALUES (?,?,?,?,?,?,?)", (key, h, path, status, ctype, body, time.time()))

    def finish(self, key, h, path, status, ctype, body):
        """Store the answer of a request that had no effect on applied."""
        with self.lock:
            if key is not None:
                self._store_key(key, h, path, status, ctype, body)
                self.inflight.pop(key, None)

    # -- transactions

    def apply_batch(self, items, kiosk, key, h, path, make_answer, on_violation):
        """Apply the parsed items (see parse_batch) at most once per id, store
        the answer for key in the same sqlite transaction; returns
        (results, answer_body).  make_answer(results) -> bytes."""
        now = time.time()
        with self.lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                known = {}
                ids = [it["id"] for it in items if "id" in it]
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    q = "SELECT id, digest FROM applied WHERE id IN (%s)" % ",".join("?" * len(chunk))
                    for row in cur.execute(q, chunk):
                        known[row[0]] = row[1]
                results, new, dup = [], [], collections.Counter()
                for it in items:
                    tid = it["id"]
                    if tid in known:
                        if known[tid] != it["digest"]:
                            on_violation("transaction %s delivered again with different content" % tid)
                        dup[tid] += 1
                        results.append({"id": tid, "status": "duplicate"})
                    elif it.get("error"):
                        results.append({"id": tid, "status": "rejected", "reason": it["error"]})
                    elif it.get("reject") is not None:
                        results.append({"id": tid, "status": "rejected", "reason": it["reject"]})
                    else:
                        known[tid] = it["digest"]
                        new.append((tid, it["type"], kiosk, it["doc"], it["digest"], key, now))
                        results.append({"id": tid, "status": "ok"})
                if new:
                    cur.executemany("INSERT INTO applied(id, type, kiosk, doc, digest, batch_key, applied_at) "
                                    "VALUES (?,?,?,?,?,?,?)", new)
                if dup:
                    cur.executemany("UPDATE applied SET received = received + ? WHERE id = ?",
                                    [(n, tid) for tid, n in dup.items()])
                body = make_answer(results)
                if key is not None:
                    self._store_key(key, h, path, 200, "application/json", body)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                if key is not None:
                    self.inflight.pop(key, None)
        return results, body

    def count_replay(self, ids):
        with self.lock:
            self.db.executemany("UPDATE applied SET received = received + 1 WHERE id = ?", [(i,) for i in ids])

    def applied(self, since=0, brief=False, tid=None):
        with self.lock:
            if tid is not None:
                rows = self.db.execute("SELECT seq, id, type, kiosk, doc, batch_key, applied_at, received "
                                       "FROM applied WHERE id=?", (tid,)).fetchall()
            elif brief:
                rows = self.db.execute("SELECT seq, id, type, received FROM applied WHERE seq > ? ORDER BY seq",
                                       (since,)).fetchall()
            else:
                rows = self.db.execute("SELECT seq, id, type, kiosk, doc, batch_key, applied_at, received "
                                       "FROM applied WHERE seq > ? ORDER BY seq", (since,)).fetchall()
            total = self.db.execute("SELECT count(*) FROM applied").fetchone()[0]
        out = []
        for r in rows:
            if brief and tid is None:
                out.append({"seq": r[0], "id": r[1], "type": r[2], "received": r[3]})
                continue
            e = json.loads(r[4])
            e.update(seq=r[0], id=r[1], type=r[2], kiosk=r[3], key=r[5], applied_at=r[6], received=r[7])
            out.append(e)
        return total, out

    def counts(self):
        with self.lock:
            return {
                "applied": self.db.execute("SELECT count(*) FROM applied").fetchone()[0],
                "received": self.db.execute("SELECT coalesce(sum(received), 0) FROM applied").fetchone()[0],
                "keys": self.db.execute("SELECT count(*) FROM keys").fetchone()[0],
                "inflight": len(self.inflight),
            }


def parse_batch(obj, violation):
    """Validate a batch body; returns (kiosk, items).  Each item: id, type,
    digest (content hash), doc (what is stored), and error or reject."""
    if not isinstance(obj, dict) or not isinstance(obj.get("transactions"), list):
        raise BadRequest('body must be {"kiosk": ..., "transactions": [...]}')
    kiosk = obj.get("kiosk")
    if not isinstance(kiosk, str) or not kiosk:
        violation('batch has no "kiosk"')
        kiosk = None if not isinstance(kiosk, str) else kiosk
    items = []
    for n, t in enumerate(obj["transactions"]):
        if not isinstance(t, dict) or not isinstance(t.get("id"), str) or not t["id"]:
            raise BadRequest("transaction %d has no string id" % n)
        it = {"id": t["id"], "type": t.get("type")}
        doc = {k: v for k, v in t.items() if k not in ("id", "type", "blobs")}
        err = None
        if not isinstance(t.get("type"), str) or not t["type"]:
            err = "missing type"
        elif not isinstance(t.get("payload"), dict):
            err = "payload must be an object"
        for k, typ in (("created", str), ("flow", str), ("final", bool)):
            if k in t and not isinstance(t[k], typ):
                violation("transaction %s: %s has the wrong type" % (t["id"], k))
        if "created" not in t:
            violation("transaction %s has no created time" % t["id"])
        if "blobs" in t:
            metas = []
            if not isinstance(t["blobs"], list):
                err = err or "blobs must be a list"
            else:
                for b in t["blobs"]:
                    meta, berr = check_blob(b)
                    metas.append(meta)
                    err = err or berr
            doc["blobs"] = metas
        if err is None and isinstance(t["payload"], dict) and "reject" in t["payload"]:
            it["reject"] = str(t["payload"]["reject"])
        it["error"] = err
        d = canon(doc)
        it["doc"] = d.decode()
        it["digest"] = hashlib.sha256(t["id"].encode() + b"\0" + str(t.get("type")).encode() + b"\0" + d).hexdigest()
        items.append(it)
    return kiosk, items


def check_blob(b):
    if not isinstance(b, dict):
        return {}, "blob is not an object"
    meta = {k: v for k, v in b.items() if k != "data"}
    if not isinstance(b.get("id"), str) or not isinstance(b.get("data"), str):
        return meta, "blob needs id and data"
    try:
        raw = base64.b64decode(b["data"], validate=True)
    except (binascii.Error, ValueError):
        return meta, "blob %s: data is not base64" % b["id"][:16]
    got = hashlib.sha256(raw).hexdigest()
    meta["sha256"] = got
    if got != b["id"]:
        return meta, "blob %s: sha256 mismatch" % b["id"][:16]
    if "size" in b and b["size"] != len(raw):
        return meta, "blob %s: size mismatch" % b["id"][:16]
    return meta, None


# ----------------------------------------------------------------------------
# state shared by the HTTPS handlers and the control API


class State:
    def __init__(self, args):
        self.args = args
        self.prefix = args.prefix.rstrip("/")
        self.ledger = Ledger(args.ledger)
        self.faults = Faults(args.seed)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.token = args.token
        if args.token_file:
            with open(args.token_file) as f:
                self.token = f.read().strip()
        self.hmac_keys = None
        if args.hmac_key:
            with open(args.hmac_key, "rb") as f:
                raw = f.read()
            # the file's bytes less one trailing \n and then one \r, as kioskd
            # reads it; the bytes as they are are accepted too
            short = raw[:-1] if raw.endswith(b"\n") else raw
            short = short[:-1] if short.endswith(b"\r") else short
            self.hmac_keys = [short] + ([raw] if short != raw else [])
        self.strict = args.strict
        self.verbose = args.verbose
        self.paid_after = args.paid_after
        self.server_cert = args.server_cert
        self.ctx = self.make_context(args.server_cert)
        self.conns = set()
        self.conn_serial = 0
        self.reset_data()

    def reset_data(self):
        with self.lock:
            self.requests = collections.deque(maxlen=REQUEST_LOG)
            self.req_serial = 0
            self.stats = collections.Counter()
            self.violations = collections.deque(maxlen=MAX_VIOLATIONS)
            self.handshake_errors = collections.deque(maxlen=100)
            self.orders = {}
            self.order_serial = 0

    def make_context(self, which):
        d = self.args.certs
        role = certs_mod.SERVER_CERTS.get(which)
        if role is None:
            raise BadRequest("server cert is one of %s" % ", ".join(certs_mod.SERVER_CERTS))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(os.path.join(d, role + ".crt"), os.path.join(d, role + ".key"))
        if self.args.no_client_cert:
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.load_verify_locations(os.path.join(d, "client-ca.crt"))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def count(self, *names):
        with self.lock:
            for n in names:
                self.stats[n] += 1

    def violation(self, msg):
        with self.lock:
            self.stats["violations"] += 1
            self.violations.append({"t": round(time.monotonic() - self.t0, 4), "what": msg})
        if self.verbose:
            log("contract violation: %s" % msg)

    def count_results(self, results):
        with self.lock:
            self.stats["batches"] += 1
            for r in results:
                self.stats["items_" + r["status"]] += 1

    def log_request(self, entry):
        with self.lock:
            self.req_serial += 1
            entry["n"] = self.req_serial
            self.requests.append(entry)
            self.stats["requests"] += 1
            self.stats["status_%s" % entry["status"]] += 1
            if entry.get("fault"):
                self.stats["fault_%s" % entry["fault"]] += 1
        if self.verbose:
            key = entry.get("key") or "-"
            log("%s %s key=%s n=%s -> %s%s %.1fms conn=%d" % (
                entry["method"], entry["path"], key[:16], entry.get("items", "-"), entry["status"],
                " fault=" + entry["fault"] if entry.get("fault") else "", entry["ms"], entry["conn"]))

    def close_connections(self):
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                socket.socket.shutdown(c, socket.SHUT_RDWR)  # bypass SSLSocket.shutdown
            except OSError:
                pass
        return len(conns)


def log(msg):
    sys.stderr.write("endpoint: %s\n" % msg)
    sys.stderr.flush()


# ----------------------------------------------------------------------------
# HTTPS


class Dropped(Exception):
    """The connection was closed on purpose: write nothing more."""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT
    server_version = "kioskd-reference-endpoint/1"
    sys_version = ""
    server_conn_id = 0

    def log_message(self, *a):
        pass

    @property
    def st(self):
        return self.server.state

    # one request, with the "before" faults checked once it starts to arrive
    def handle_one_request(self):
        try:
            first = self.rfile.peek(1)
        except (OSError, ValueError):
            self.close_connection = True
            return
        if not first:
            self.close_connection = True
            return
        self.t0 = time.monotonic()
        rule = self.st.faults.pick(("before",), None)
        if rule is not None:
            self.path = "?"
            self.record("?", "reset", fault=rule.name)
            self.drop(rule.rst)
        super().handle_one_request()

    def record(self, method, status, **kw):
        e = {"t": round(self.t0 - self.st.t0, 4), "time": time.time(), "method": method,
             "path": urllib.parse.urlsplit(self.path).path, "status": status, "conn": self.server_conn_id,
             "ms": round((time.monotonic() - self.t0) * 1000, 2)}
        if method == "POST":
            e["key"] = self.headers.get("Idempotency-Key")
            e["kiosk_id"] = self.headers.get("X-Kiosk-Id")
        e.update({k: v for k, v in kw.items() if v is not None})
        self.st.log_request(e)

    def drop(self, rst):
        """Close the connection without an answer (RST or a plain FIN) and
        unwind to finish_request."""
        self.close_connection = True
        try:
            if rst:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.wfile.close()
            self.connection.close()
        except OSError:
            pass
        raise Dropped()

    def finish(self):
        try:
            super().finish()
        except (OSError, ValueError):
            pass

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            parts, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise BadRequest("truncated chunked body")
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += n
                if total > MAX_BODY:
                    raise BadRequest("too large")
                parts.append(self.rfile.read(n))
                self.rfile.readline(16)
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise BadRequest("too large")
        body = self.rfile.read(n)
        if len(body) != n:
            raise BadRequest("truncated body")
        return body

    def raw_response(self, code, body, ctype="application/json", extra=None):
        reason = self.responses.get(code, ("",))[0]
        h = ["HTTP/1.1 %d %s" % (code, reason), "Server: " + self.server_version,
             "Content-Type: " + ctype, "Content-Length: %d" % len(body)]
        for k, v in (extra or {}).items():
            h.append("%s: %s" % (k, v))
        if self.close_connection:
            h.append("Connection: close")
        return ("\r\n".join(h) + "\r\n\r\n").encode("latin-1") + body

    def send_raw(self, code, body, ctype="application/json", extra=None):
        if not isinstance(body, bytes):
            body = jdump(body)
        try:
            self.wfile.write(self.raw_response(code, body, ctype, extra))
        except OSError:
            self.close_connection = True

    def do_GET(self):
        self.t0 = time.monotonic()
        path = urllib.parse.urlsplit(self.path).path
        if path in (self.st.prefix + "/health", "/health"):
            self.send_raw(200, b"ok\n", "text/plain")
            return
        self.send_raw(404, {"error": "not found"})
        self.record("GET", 404)

    def do_POST(self):
        self.t0 = time.monotonic()
        self.n_items = None
        try:
            body = self.read_body()
        except (BadRequest, ValueError) as e:
            self.close_connection = True
            code = 413 if "too large" in str(e) else 400
            self.send_raw(code, {"error": str(e)})
            self.record("POST", code)
            return
        code, fault = self.process(urllib.parse.urlsplit(self.path).path, body)
        self.record("POST", code, items=self.n_items, fault=fault, ids=getattr(self, "ids", None))

    def process(self, path, body):
        """Answer one POST; returns (status, fault name) for the log, or
        raises Dropped."""
        st = self.st
        key = self.headers.get("Idempotency-Key")
        self.ids = None
        if not (path == st.prefix or path.startswith(st.prefix + "/")):
            return self.reply(404, {"error": "not under %s" % (st.prefix or "/")})
        sub = path[len(st.prefix):] or "/"
        is_batch = sub == "/transactions"

        # authentication: a request that fails it never has any effect
        err = self.check_auth(body)
        if err:
            return self.reply(401, {"error": err}, extra={"WWW-Authenticate": "Bearer"} if "token" in err else None)

        rule = st.faults.pick(("read", "process"), sub)
        if rule is not None and rule.name in ("reset_after", "hang"):
            self.record("POST", "reset" if rule.name == "reset_after" else "hang", fault=rule.name)
            if rule.name == "hang":
                self.hang(rule)
            self.drop(rule.rst)

        # parse and check the request against the contract
        violations = []
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            violations.append("Content-Type is %r, not application/json" % self.headers.get("Content-Type"))
        try:
            obj = json.loads(body) if body else None
        except ValueError:
            obj = None
            if is_batch:
                return self.reply(400, {"error": "body is not JSON"})
        items = kiosk = None
        if is_batch:
            try:
                kiosk, items = parse_batch(obj, violations.append)
            except BadRequest as e:
                return self.reply(400, {"error": str(e)})
            self.n_items = len(items)
            self.ids = [it["id"] for it in items[:100]]
            expect = hashlib.sha256("".join(it["id"] + "\n" for it in items).encode()).hexdigest()
            if key is None:
                violations.append("batch without Idempotency-Key")
            elif key.lower() != expect:
                violations.append("Idempotency-Key %s... is not sha256 of the ids (%s...)" % (key[:16], expect[:16]))
            hid = self.headers.get("X-Kiosk-Id")
            if hid is None:
                violations.append("no X-Kiosk-Id header")
            elif kiosk is not None and hid != kiosk:
                violations.append("X-Kiosk-Id %r differs from the body's kiosk %r" % (hid, kiosk))
            h = hashlib.sha256(sub.encode() + b"\0" + str(kiosk).encode() + b"\0" +
                               "\n".join(it["digest"] for it in items).encode()).hexdigest()
        else:
            h = hashlib.sha256(sub.encode() + b"\0" + (canon(obj) if obj is not None else body)).hexdigest()
        for v in violations:
            st.violation("POST %s: %s" % (path, v))
        if violations and st.strict:
            return self.reply(400, {"error": "contract: " + "; ".join(violations)})

        # an injected HTTP status, before any effect (unless apply)
        if rule is not None and rule.name == "status" and not rule.apply:
            return self.status_fault(rule)

        # the idempotency key
        if key is not None:
            verdict, stored = st.ledger.begin(key, h)
            if verdict == "inflight":
                st.count("key_inflight")
                return self.reply(409, {"error": "a request with this Idempotency-Key is in progress"})
            if verdict == "mismatch":
                st.count("key_mismatch")
                return self.reply(422, {"error": "Idempotency-Key reused with a different request"})
            if verdict == "replay":
                st.count("key_replay")
                if items:
                    st.ledger.count_replay([it["id"] for it in items])
                code, ctype, out = stored
                return self.deliver(rule, code, out, ctype, {"Idempotent-Replayed": "true"}, is_batch)
        # key is now in flight: from here on it must be released
        try:
            if rule is not None and rule.name == "delay":
                time.sleep(rule.ms / 1000.0)
            extra = None
            if is_batch:
                results, out = st.ledger.apply_batch(items, kiosk, key, h, sub, jdump_results, st.violation)
                st.count_results(results)
                code, ctype = 200, "application/json"
            else:
                try:
                    code, resp, extra = self.remote(sub, obj)
                except (TypeError, ValueError) as e:
                    code, resp, extra = 400, {"error": "bad request: %s" % e}, None
                out, ctype = jdump(resp), "application/json"
                if key is not None and 200 <= code < 300:
                    st.ledger.finish(key, h, sub, code, ctype, out)
        finally:
            if key is not None:
                st.ledger.release(key)
        if rule is not None and rule.name == "status":  # apply=true: it took effect, the answer is lost
            return self.status_fault(rule)
        return self.deliver(rule, code, out, ctype, extra, is_batch)

    def deliver(self, rule, code, out, ctype, extra, is_batch):
        """Send a computed answer through the response faults."""
        name = rule.name if rule is not None else None
        if name == "commit_drop":
            self.record("POST", "dropped", items=self.n_items, fault=name, ids=self.ids)
            self.drop(rule.rst)
        if name == "garbage":
            g = rule.body if rule.body is not None else "<html><body><h1>502 Bad Gateway</h1></body></html>\n"
            self.send_raw(200, g.encode(), rule.content_type or "text/html")
            return 200, name
        if name == "huge":
            head = b'{"results":[],"padding":"'
            big = head + b"x" * max(0, rule.bytes - len(head) - 2) + b'"}'
            self.send_raw(200, big)
            return 200, name
        if name == "missing_items" and is_batch and code == 200:
            res = json.loads(out)["results"]
            keep = len(res) // 2 if rule.keep is None else int(rule.keep)
            if rule.mode == "drop":
                res = res[:keep]
            elif rule.mode == "status":
                res = res[:keep] + [dict(r, status="maybe") for r in res[keep:]]
            else:
                res = res[:keep] + [dict(r, id=r["id"] + "-unknown") for r in res[keep:]]
            self.send_raw(200, {"results": res}, extra=extra)
            return 200, name
        if name == "slow":
            data = self.raw_response(code, out, ctype, extra)
            for i in range(0, len(data), rule.chunk):
                try:
                    self.wfile.write(data[i:i + rule.chunk])
                except OSError:
                    self.close_connection = True
                    break
                if i + rule.chunk < len(data):
                    time.sleep(rule.ms / 1000.0)
            return code, name
        self.send_raw(code, out, ctype, extra)
        if name == "close":  # answered, then closed without saying so
            self.close_connection = True
        return code, name

    def status_fault(self, rule):
        extra = {}
        if rule.retry_after is not None:
            extra["Retry-After"] = str(rule.retry_after)
        body = rule.body if rule.body is not None else jdump({"error": "injected %d" % rule.code})
        if isinstance(body, str):
            body = body.encode()
        self.send_raw(rule.code, body, rule.content_type or "application/json", extra)
        return rule.code, str(rule.code)

    def reply(self, code, obj, extra=None):
        self.send_raw(code, obj, extra=extra)
        return code, None

    def hang(self, rule):
        """Never answer: wait until the peer goes away (or ms pass)."""
        try:
            self.connection.settimeout(rule.ms / 1000.0 if rule.ms else None)
            while self.rfile.read1(65536):
                pass
        except (OSError, ValueError):
            pass

    def check_auth(self, body):
        st = self.st
        if st.token is not None:
            got = self.headers.get("Authorization") or ""
            if not got.startswith("Bearer ") or not hmac.compare_digest(got[7:].strip().encode(), st.token.encode()):
                st.count("auth_token_failed")
                return "missing or bad bearer token"
        if st.hmac_keys is not None:
            sig = (self.headers.get("X-Kiosk-Signature") or "").strip()
            if not sig.startswith("sha256="):
                st.count("auth_signature_failed")
                return "missing X-Kiosk-Signature"
            want = sig[7:].lower().encode()
            if not any(hmac.compare_digest(hmac.new(k, body, hashlib.sha256).hexdigest().encode(), want)
                       for k in st.hmac_keys):
                st.count("auth_signature_failed")
                return "bad X-Kiosk-Signature"
        return None

    # remote.call targets: (code, json, extra headers)
    def remote(self, sub, obj):
        st = self.st
        if isinstance(obj, dict):
            if obj.get("sleep_ms"):
                time.sleep(min(float(obj["sleep_ms"]), 600000) / 1000.0)
            if "fail" in obj:
                code = int(obj["fail"])
                if not 100 <= code <= 599:
                    raise ValueError("fail must be an HTTP status")
                extra = {"Retry-After": str(obj["retry_after"])} if "retry_after" in obj else None
                return code, {"error": obj.get("error", "requested failure %d" % code)}, extra
        if sub == "/echo":
            return 200, obj, None
        if sub == "/whoami":
            cert = self.connection.getpeercert() or {}
            cn = dict(x[0] for x in cert.get("subject", ())).get("commonName")
            return 200, {"client_cn": cn, "kiosk_id": self.headers.get("X-Kiosk-Id"),
                         "idempotency_key": self.headers.get("Idempotency-Key"),
                         "authorized": bool(self.headers.get("Authorization")),
                         "signed": bool(self.headers.get("X-Kiosk-Signature"))}, None
        if sub == "/payment/qr":
            o = obj if isinstance(obj, dict) else {}
            with st.lock:
                st.order_serial += 1
                order = "P-%06d" % st.order_serial
                st.orders[order] = {"polls": 0, "paid_after": int(o.get("paid_after", st.paid_after)),
                                    "amount_fen": o.get("amount_fen")}
            return 200, {"order": order, "qr": "https://pay.invalid/qr/%s?amount=%s" % (order, o.get("amount_fen")),
                         "amount_fen": o.get("amount_fen"), "expires_s": 300}, None
        if sub == "/payment/status":
            order = obj.get("order") if isinstance(obj, dict) else None
            with st.lock:
                o = st.orders.get(order)
                if o is None:
                    return 404, {"error": "unknown order"}, None
                o["polls"] += 1
                paid = o["polls"] > o["paid_after"]
                return 200, {"order": order, "status": "paid" if paid else "pending", "polls": o["polls"],
                             "amount_fen": o["amount_fen"]}, None
        if sub == "/eligibility":
            o = obj if isinstance(obj, dict) else {}
            return 200, {"eligible": not o.get("deny"), "reason": o.get("deny") or None}, None
        return 404, {"error": "no such call %s" % sub}, None


def jdump_results(results):
    return jdump({"results": results})


class HTTPSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, state):
        self.state = state
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        st = self.state
        with st.lock:
            st.conn_serial += 1
            cid = st.conn_serial
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = st.ctx.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError):
            return
        with st.lock:
            st.conns.add(conn)
        try:
            try:
                conn.do_handshake()
            except (OSError, ValueError) as e:
                with st.lock:
                    st.stats["handshake_failed"] += 1
                    st.handshake_errors.append({"t": round(time.monotonic() - st.t0, 4), "error": str(e)[:200]})
                if st.verbose:
                    log("TLS handshake failed (conn %d): %s" % (cid, e))
                return
            st.count("connections")
            h = Handler.__new__(Handler)
            h.server_conn_id = cid
            h.__init__(conn, client_address, self)
        except Dropped:
            pass
        except (OSError, ValueError) as e:
            if st.verbose:
                log("conn %d: %s" % (cid, e))
        finally:
            with st.lock:
                st.conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def shutdown_request(self, request):
        try:
            request.close()
        except OSError:
            pass

    def handle_error(self, request, client_address):
        if self.state.verbose:
            super().handle_error(request, client_address)


class Listener:
    """The HTTPS server that can stop listening (down) and listen again (up)
    on the same port."""

    def __init__(self, state, port):
        self.state = state
        self.port = port
        self.srv = None
        self.thread = None
        self.lock = threading.Lock()

    def up(self):
        with self.lock:
            if self.srv is not None:
                return False
            self.srv = HTTPSServer(("127.0.0.1", self.port), self.state)
            self.port = self.srv.server_address[1]
            self.thread = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05},
                                           daemon=True)
            self.thread.start()
            return True

    def down(self, close=True):
        with self.lock:
            srv, self.srv = self.srv, None
            if srv is None:
                return False
            srv.shutdown()
            srv.server_close()
        if close:
            self.state.close_connections()
        return True

    @property
    def is_up(self):
        return self.srv is not None


# ----------------------------------------------------------------------------
# control API (plain HTTP on 127.0.0.1)


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "kioskd-endpoint-control/1"

    def log_message(self, *a):
        pass

    def send(self, code, obj):
        out = jdump(obj) + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        ctl = self.server.ctl
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        body = {}
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            try:
                body = json.loads(self.rfile.read(n))
            except ValueError:
                return self.send(400, {"error": "body is not JSON"})
            if not isinstance(body, dict):
                return self.send(400, {"error": "body must be an object"})
        try:
            code, out = ctl.dispatch(method, u.path.rstrip("/") or "/", q, body)
        except BadRequest as e:
            code, out = 400, {"error": str(e)}
        self.send(code, out)


class Control:
    def __init__(self, state, listener, stop):
        self.st = state
        self.listener = listener
        self.stop = stop

    def dispatch(self, method, path, q, body):
        st = self.st
        if (method, path) == ("GET", "/health"):
            return 200, {"ok": True, "up": self.listener.is_up}
        if (method, path) == ("GET", "/info"):
            return 200, self.info()
        if method == "GET" and path == "/applied":
            total, rows = st.ledger.applied(int(q.get("since", 0)), brief=q.get("brief") in ("1", "true"))
            return 200, {"count": total, "applied": rows}
        if method == "GET" and path.startswith("/applied/"):
            _, rows = st.ledger.applied(tid=urllib.parse.unquote(path[len("/applied/"):]))
            return (200, rows[0]) if rows else (404, {"error": "not applied"})
        if (method, path) == ("GET", "/stats"):
            with st.lock:
                s = dict(st.stats)
                hs = list(st.handshake_errors)
            s.update(st.ledger.counts())
            s.update(up=self.listener.is_up, handshake_errors=hs, faults=st.faults.describe())
            return 200, s
        if (method, path) == ("GET", "/requests"):
            since = int(q.get("since", 0))
            with st.lock:
                rows = [r for r in st.requests if r["n"] > since]
            return 200, {"requests": rows}
        if (method, path) == ("GET", "/violations"):
            with st.lock:
                return 200, {"violations": list(st.violations)}
        if path in ("/faults", "/fault"):
            if method == "GET":
                return 200, {"faults": st.faults.describe()}
            if method == "DELETE" or (method == "POST" and body.get("name") in (None, "", "none")):
                st.faults.clear()
                return 200, {"faults": []}
            if method == "POST":
                st.faults.set(body, add=bool(body.get("add")))
                return 200, {"faults": st.faults.describe()}
        if (method, path) == ("POST", "/faults/clear"):
            st.faults.clear()
            return 200, {"faults": []}
        if (method, path) == ("POST", "/reset"):
            st.faults.clear()
            st.ledger.reset()
            st.reset_data()
            return 200, {"ok": True}
        if (method, path) == ("POST", "/down"):
            was = self.listener.down(close=body.get("close", True))
            return 200, {"up": False, "changed": was}
        if (method, path) == ("POST", "/up"):
            was = self.listener.up()
            return 200, {"up": True, "changed": was, "port": self.listener.port}
        if (method, path) == ("POST", "/tls"):
            which = body.get("cert", "good")
            ctx = st.make_context(which)
            with st.lock:
                st.ctx, st.server_cert = ctx, which
            closed = st.close_connections() if body.get("close", True) else 0
            return 200, {"cert": which, "closed": closed}
        if (method, path) == ("POST", "/config"):
            for k in body:
                if k not in ("paid_after", "strict", "verbose", "seed"):
                    raise BadRequest("unknown setting %r" % k)
            if "paid_after" in body:
                st.paid_after = int(body["paid_after"])
            if "strict" in body:
                st.strict = bool(body["strict"])
            if "verbose" in body:
                st.verbose = bool(body["verbose"])
            if "seed" in body:
                st.faults.seed(body["seed"])
            return 200, {"paid_after": st.paid_after, "strict": st.strict, "verbose": st.verbose}
        if (method, path) == ("POST", "/close_connections"):
            return 200, {"closed": st.close_connections()}
        if (method, path) == ("POST", "/shutdown"):
            threading.Thread(target=self.stop, daemon=True).start()
            return 200, {"ok": True}
        return 404, {"error": "no such control call %s %s" % (method, path)}

    def info(self):
        st = self.st
        return {"pid": os.getpid(), "port": self.listener.port, "control_port": self.port,
                "url": "https://127.0.0.1:%d%s" % (self.listener.port, st.prefix),
                "prefix": st.prefix, "certs": os.path.abspath(st.args.certs), "ledger": st.args.ledger,
                "server_cert": st.server_cert, "client_cert_required": not st.args.no_client_cert,
                "token": st.token is not None, "hmac": st.hmac_keys is not None, "up": self.listener.is_up}


class ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


# ----------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description="kioskd reference endpoint (HTTPS, mTLS, idempotency ledger, faults)")
    ap.add_argument("--certs", required=True, help="certificate directory (created with certs.py when missing)")
    ap.add_argument("--port", type=int, default=0, help="HTTPS port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--control-port", type=int, default=0, help="control API port on 127.0.0.1 (0: any)")
    ap.add_argument("--port-file", help="write {port, control_port, pid, url} here (JSON) once listening")
    ap.add_argument("--prefix", default="/api", help="path prefix of the API (default /api)")
    ap.add_argument("--token", help="expect Authorization: Bearer TOKEN")
    ap.add_argument("--token-file", help="the same, read from a file")
    ap.add_argument("--hmac-key", help="file with the key of X-Kiosk-Signature")
    ap.add_argument("--ledger", help="sqlite file: the ledger survives restarts (default: in memory)")
    ap.add_argument("--no-client-cert", action="store_true", help="do not ask for a client certificate")
    ap.add_argument("--server-cert", default="good", choices=sorted(certs_mod.SERVER_CERTS),
                    help="which certificate the server presents")
    ap.add_argument("--paid-after", type=int, default=2, help="/payment/status answers pending this many times")
    ap.add_argument("--strict", action="store_true", help="answer 400 to requests that break the contract")
    ap.add_argument("--seed", type=int, help="seed of the probabilistic faults")
    ap.add_argument("--verbose", "-v", action="store_true", help="one line per request on stderr")
    args = ap.parse_args(argv)
    if args.prefix and not args.prefix.startswith("/"):
        ap.error("--prefix must start with /")

    certs_mod.ensure(args.certs)
    state = State(args)
    listener = Listener(state, args.port)
    listener.up()
    done = threading.Event()

    def stop(*_):
        done.set()

    ctl = Control(state, listener, stop)
    csrv = ControlServer(("127.0.0.1", args.control_port), ControlHandler)
    csrv.ctl = ctl
    ctl.port = csrv.server_address[1]
    threading.Thread(target=csrv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    info = ctl.info()
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f)
            f.write("\n")
        os.rename(tmp, args.port_file)
    print("endpoint: %s (control http://127.0.0.1:%d, pid %d)" % (info["url"], ctl.port, os.getpid()), flush=True)
    while not done.wait(0.1):
        pass
    listener.down()
    csrv.shutdown()
    state.ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
