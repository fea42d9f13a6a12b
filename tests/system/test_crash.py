"""kill -9 of kioskd, through the real daemon (issue 3, "Bad input and
faults"; docs/delivery.md "Guarantees").

- test_kill9_soak: repeated cycles of start -> a client streaming
  txn.submit -> deliveries to the reference endpoint (with lost acks,
  resets and 5xx switched on at random) -> kill -9 at a random moment.
  After every cycle PRAGMA integrity_check is ok and every acknowledged
  transaction is in the database, whole.  After a last clean run that
  drains the queue: every acknowledged transaction is applied at the
  endpoint exactly once, and everything there or in the database that was
  never acknowledged is whole as well (no partial rows).
  KIOSKD_SOAK_CYCLES=N sets the number of cycles (default 200, also under
  ASan; about 25 s either way); KIOSKD_SOAK_SEED=N replays a run.  The
  database grows by ~30 transactions a cycle and both the daemon's start
  (quick_check) and the check after each kill read all of it, so long
  soaks slow down: 1500 cycles take about 8 minutes.  Run with -s to see
  the summary (kills before READY, rows requeued, resends, faults).
- test_sending_requeued_after_kill: rows left `sending` by a kill (the
  endpoint hangs, or applies the batch only after the daemon died) go back
  to `queued` at start and are delivered, exactly once in effect.
"""

import hashlib
import json
import os
import random
import select
import socket
import time

import pytest

import kiosk
from kiosk import wait_until
from test_store_sys import config, db_copy, restart, wait_txn_state

CYCLES = int(os.environ.get("KIOSKD_SOAK_CYCLES") or 200)
SEED = int(os.environ.get("KIOSKD_SOAK_SEED") or 20261204)
WINDOW = 16          # submissions in flight per client
KILL_AFTER_MS = 150  # a kill comes at most this long after READY


ENDPOINT_SEED = SEED  # the conftest's endpoint fixtures


# ---------------------------------------------------------------- what a whole transaction is

def expected(tid):
    """The one transaction a txn_id stands for: type and payload follow from
    the id, so anything found anywhere can be checked for completeness."""
    h = hashlib.sha256(tid.encode()).hexdigest()
    n = int(h[:8], 16)
    # mostly small rows; one in 16 spills onto overflow pages (4-8 KiB)
    pad = h * (1 + n % 4) if n % 16 else h * (64 + n % 64)
    return "soak.t%d" % (n % 3), {"tid": tid, "amount_fen": n % 100000, "n": n, "pad": pad}


def check_whole(tid, type_, payload, where):
    want_type, want_payload = expected(tid)
    assert type_ == want_type and payload == want_payload, \
        "%s: transaction %s is not whole: type %r payload %r" % (where, tid, type_, str(payload)[:200])


def snapshot(db_path, after_seq=0):
    """(PRAGMA integrity_check, [(seq, id, type, payload, state)] of the rows
    after after_seq) of a copy of the database and its WAL: the daemon's
    files stay as the kill left them, and sqlite3 cannot checkpoint them."""
    with db_copy(db_path) as db:
        ic = [r[0] for r in db.execute("PRAGMA integrity_check")]
        rows = db.execute("SELECT seq, id, type, payload, state FROM transactions WHERE seq > ? "
                          "ORDER BY seq", (after_seq,)).fetchall()
        return ic, rows


def read_rows(db_path, after_seq=0):
    return snapshot(db_path, after_seq)[1]


# ---------------------------------------------------------------- one streaming client

class Streamer:
    """Pipelines txn.submit on one connection (WINDOW in flight) and
    records a txn_id as acknowledged only when its ok reply was read."""

    def __init__(self, path, prefix, interval=0.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.prefix = prefix
        self.interval = interval  # seconds between two submissions
        self.next_at = 0.0
        self.n = 0
        self.pending = {}  # request id -> txn_id
        self.sent, self.acked, self.refused = [], [], []
        self.out = b""
        self.inbuf = b""
        self.eof = False

    def _queue(self):
        while len(self.pending) < WINDOW and time.monotonic() >= self.next_at:
            self.next_at = time.monotonic() + self.interval
            self.n += 1
            tid = "%s-%04d" % (self.prefix, self.n)
            type_, payload = expected(tid)
            self.pending[self.n] = tid
            self.sent.append(tid)
            self.out += (json.dumps({"id": self.n, "cmd": "txn.submit",
                                     "args": {"type": type_, "payload": payload, "txn_id": tid}},
                                    separators=(",", ":")) + "\n").encode()

    def _parse(self):
        while b"\n" in self.inbuf:
            line, self.inbuf = self.inbuf.split(b"\n", 1)
            msg = json.loads(line)
            tid = self.pending.pop(msg.get("id"), None)
            if tid is not None and "ok" in msg:
                (self.acked if msg["ok"] else self.refused).append((tid, msg))

    def _read(self):
        """What is there now (non-blocking)."""
        while not self.eof:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.eof = True
            self.inbuf += data
        self._parse()

    def run_until(self, t_end):
        while not self.eof:
            self._queue()
            now = time.monotonic()
            if now >= t_end:
                return
            wait = min(t_end - now, 0.005)
            if self.next_at > now:
                wait = min(wait, self.next_at - now)
            r, w, _ = select.select([self.sock], [self.sock] if self.out else [], [], wait)
            if w:
                try:
                    k = self.sock.send(self.out)
                    self.out = self.out[k:]
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    self.eof = True
            if r:
                self._read()

    def finish(self):
        """After the kill: the replies the daemon wrote before it died are
        still in the socket; read them, up to EOF."""
        self.sock.settimeout(5)
        while not self.eof:
            try:
                data = self.sock.recv(1 << 16)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.eof = True
            self.inbuf += data
        self._parse()
        self.sock.close()


# ---------------------------------------------------------------- the soak

def spawn(d):
    """Start d again (not waiting for READY): old handles closed, old
    notifications forgotten."""
    for f in (d.notify_sock, d.logfile):
        if f is not None:
            f.close()
    d.notify_sock = d.logfile = None
    d.notifications = []
    d.start(wait_ready=False)


def ready(d):
    d.poll_notify()
    return "READY=1" in d.notify_lines()


# The soak's daemon: small batches (more of them on the wire at a kill),
# short backoff.
SOAK_EP = dict(batch_size=8, backoff_min_ms=10, backoff_max_ms=60)


def test_kill9_soak(kd, ep):
    rng = random.Random(SEED)
    # the endpoint misbehaves now and then: lost acks, resets, 5xx, delays
    ep.fault("commit_drop", path="/transactions", probability=0.04)
    ep.add_fault("reset_after", path="/transactions", probability=0.03)
    ep.add_fault("500", path="/transactions", probability=0.03)
    ep.add_fault("delay", path="/transactions", ms=40, probability=0.05)
    d = kd(config(ep, ep_opts=SOAK_EP), start=False)
    db_path = os.path.join(d.state_dir, "kioskd.db")
    slow = kiosk.SLOW if kiosk.SAN else 1.0  # for deadlines only
    ready_s = 0.02  # how long the last start took to READY
    sent, acked, refused = set(), set(), []
    in_db, watermark = set(), 0
    t_start = time.monotonic()
    stats = {"before_ready": 0, "streamed": 0}
    for cycle in range(CYCLES):
        spawn(d)
        t0 = time.monotonic()
        early = rng.random() < 0.1  # now and then during start-up
        kill_at = t0 + rng.uniform(0, ready_s) if early else None
        while not ready(d):
            if d.proc.poll() is not None:
                raise AssertionError("cycle %d: kioskd exited with %s:\n%s"
                                     % (cycle, d.proc.returncode, d.log()[-3000:]))
            if kill_at and time.monotonic() >= kill_at:
                break
            if time.monotonic() - t0 > 10 * slow:
                raise AssertionError("cycle %d: no READY:\n%s" % (cycle, d.log()[-3000:]))
            select.select([d.notify_sock], [], [], 0.002)
        streamer = None
        if ready(d):
            ready_s = time.monotonic() - t0
            if kill_at is None:
                kill_at = time.monotonic() + rng.uniform(0, KILL_AFTER_MS / 1000)
            # a steady stream (so that a kill finds submissions in flight),
            # paced so that the database stays small enough for quick cycles
            streamer = Streamer(d.ui_sock, "c%04d" % cycle, interval=rng.uniform(0.0005, 0.004))
            streamer.run_until(kill_at)
            stats["streamed"] += 1
        else:
            stats["before_ready"] += 1
        d.kill()
        if streamer:
            streamer.finish()
            sent.update(streamer.sent)
            acked.update(t for t, _ in streamer.acked)
            refused += streamer.refused
            assert not streamer.refused, "cycle %d: submissions refused: %r" % (cycle, streamer.refused[:3])
        # (a) the database is sound after every kill ...
        ic, rows = snapshot(db_path, watermark) if os.path.exists(db_path) else (["ok"], [])
        assert ic == ["ok"], "cycle %d (seed %d): integrity_check %r" % (cycle, SEED, ic[:5])
        # ... holds every acknowledged transaction, and only whole ones
        if rows:
            for seq, tid, type_, payload, state in rows:
                assert tid in sent, "cycle %d: %s in the database was never sent" % (cycle, tid)
                check_whole(tid, type_, json.loads(payload), "cycle %d database" % cycle)
                in_db.add(tid)
                watermark = seq
        lost = {t for t, _ in (streamer.acked if streamer else [])} - in_db
        assert not lost, "cycle %d (seed %d): acknowledged but not in the database: %s" % (
            cycle, SEED, sorted(lost)[:10])
    soak_s = time.monotonic() - t_start

    # a last clean run drains everything
    ep.clear_faults()
    spawn(d)
    d.wait_notify("READY=1", 10)
    a = d.admin()

    def drained():
        q = a.ok("queue.list", args={"limit": 1})["counts"]
        return q["queued"] == 0 and q["sending"] == 0 and q

    q = wait_until(drained, 60, "the queue to drain", interval=0.05)
    assert q["failed"] == 0, "failed transactions: %r" % a.ok("queue.list", args={"state": "failed"})
    assert q["delivered"] == len(in_db), q
    d.stop()
    ic, rows = snapshot(db_path)
    assert ic == ["ok"], ic[:5]
    assert all(r[4] == "delivered" for r in rows)
    for seq, tid, type_, payload, state in rows:
        assert tid in sent
        check_whole(tid, type_, json.loads(payload), "final database")
    db_ids = {r[1] for r in rows}

    # (b) every acknowledged transaction applied exactly once ...
    applied = ep.applied()
    ids = [e["id"] for e in applied]
    assert len(ids) == len(set(ids)), "applied twice: %r" % [i for i in ids if ids.count(i) > 1][:10]
    missing = acked - set(ids)
    assert not missing, "acknowledged, never applied: %s" % sorted(missing)[:10]
    # (c) ... and whatever was applied or stored without an acknowledgement
    # is whole; nothing is at the endpoint that the store did not hold
    for e in applied:
        assert e["id"] in sent, "applied but never sent: %s" % e["id"]
        check_whole(e["id"], e["type"], e["payload"], "endpoint")
    assert set(ids) == db_ids, (sorted(set(ids) - db_ids)[:5], sorted(db_ids - set(ids))[:5])
    assert ep.violations() == []
    st = ep.stats()
    requeued = d.log_lines(r"left sending by the last run queued again")
    resent = sum(1 for e in applied if e["received"] > 1)
    report = ("%d cycles in %.1f s (%.0f ms/cycle; %d killed before READY), seed %d: %d sent, "
              "%d acknowledged, %d unacknowledged but stored, %d applied (%d received more than "
              "once), %d starts requeued rows left sending; endpoint: %d batches, faults %s"
              % (CYCLES, soak_s, soak_s * 1000 / CYCLES, stats["before_ready"], SEED, len(sent),
                 len(acked), len(db_ids - acked), len(ids), resent, len(requeued), st.get("batches", 0),
                 {k: v for k, v in st.items() if k.startswith("fault_")}))
    print("\n" + report)  # shown with pytest -s
    # the soak did what it is for: kills during start-up, mid-stream and
    # with batches on the wire
    assert len(acked) > CYCLES, report
    if CYCLES >= 100:
        assert stats["before_ready"] > 0 and requeued and resent > 0, report


# ---------------------------------------------------------------- rows left sending

@pytest.mark.parametrize("fault", ["hang", "applied_after_death", "lost_ack"])
def test_sending_requeued_after_kill(kd, ep, fault):
    """A kill while a batch is on the wire leaves its rows `sending`; the
    next start queues them again and they are delivered, and an endpoint
    that applied them meanwhile counts them once.
    hang: the endpoint never answers (nor applies).
    applied_after_death: it applies the batch after the daemon died.
    lost_ack: it applies every attempt and drops every answer, so the rows
    go between sending and queued until the kill."""
    d = kd(config(ep))
    c = d.client()
    if fault == "hang":
        ep.fault("hang", path="/transactions")
    elif fault == "applied_after_death":
        ep.fault("delay", path="/transactions", ms=int(500 * kiosk.SLOW), count=1)
    else:
        ep.fault("commit_drop", path="/transactions")
    # one write: one group commit, one batch of 5
    ids = ["k-%s-%d" % (fault, i) for i in range(5)]
    c.send_raw("".join(json.dumps({"id": 100 + i, "cmd": "txn.submit",
                                   "args": {"type": expected(t)[0], "payload": expected(t)[1],
                                            "txn_id": t}}) + "\n" for i, t in enumerate(ids)))
    assert [c.reply(100 + i)["result"]["txn_id"] for i in range(5)] == ids
    if fault == "lost_ack":
        wait_until(lambda: ep.stats().get("fault_commit_drop", 0) >= 3, 10, "3 answers lost")
        assert ep.stats()["applied"] == 5
    else:
        # the whole batch is on the wire
        key = "inflight" if fault == "applied_after_death" else "fault_hang"
        wait_until(lambda: ep.stats().get(key, 0) >= 1, 10, "the batch at the endpoint")
        assert [t["state"] for t in c.ok("txn.list")["transactions"]] == ["sending"] * 5
    d.kill()
    rows = read_rows(os.path.join(d.state_dir, "kioskd.db"))
    assert [r[1] for r in rows] == ids
    if fault == "lost_ack":
        assert {r[4] for r in rows} <= {"sending", "queued"}, rows
        sending = sum(r[4] == "sending" for r in rows)
    else:
        assert [r[4] for r in rows] == ["sending"] * 5
        sending = 5
    if fault == "applied_after_death":
        # the endpoint finishes the request of the dead daemon
        wait_until(lambda: ep.stats()["applied"] == 5, 10, "the batch applied after the kill")
    ep.clear_faults()
    before = {e["id"]: e["received"] for e in ep.applied()}
    restart(d, kill=True)
    if sending:
        assert d.log_lines(r"notice: store: %d transactions? left sending by the last run queued again"
                           % sending), d.log()[-2000:]
    c = d.client()
    got = wait_txn_state(c, ids, "delivered")
    applied = {e["id"]: e for e in ep.applied()}
    assert sorted(applied) == sorted(ids)  # each once: the ledger has one row per id
    for t in ids:
        check_whole(t, applied[t]["type"], applied[t]["payload"], "endpoint")
        if fault == "hang":
            # never applied before the restart: this is its first effect
            assert t not in before and applied[t]["received"] == 1, applied[t]
        else:
            # applied before the restart: sent once more after it, and
            # recognised (a key replay or a per-id duplicate)
            assert t in before and applied[t]["received"] == before[t] + 1, (before[t], applied[t])
        assert got[t]["attempts"] >= 2, got[t]
    assert ep.violations() == []
