"""Benchmark of the sane plugin: one 300 dpi colour page from the SANE
`test` backend to a PNG blob through kioskd, next to `scanimage
--format=png` making the same page into a PNG file, measured in the same
run, alternating, several rounds (medians).

Both sides use zlib level 6 with libpng's default filters: scanimage never
sets a level, so it gets libpng's default (Z_DEFAULT_COMPRESSION = 6); the
plugin's `png_level` defaults to 6.  The PNG sizes are reported too, as a
check that the two did the same work.

The scanimage time includes its process start, sane_init() and
sane_open(); their cost is logged (scanimage --dont-scan, a few ms with a
dll.conf of `test` alone).  The kioskd time is a scanner.scan round trip
on an open device, blob store included.

measure(build, tmp, log) -> rows for tests/bench/run.py.  Standard library
only; it starts kioskd itself on a private directory and stops it by PID.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import time

ROUNDS = 7
TARGET = 1.2
SCAN = {"resolution": 300, "mode": "color"}
PICTURE = "Color pattern"


class BenchError(Exception):
    pass


def _sane_dir(tmp):
    etc = os.path.join(tmp, "sane.d")
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "dll.conf"), "w") as f:
        f.write("test\n")
    shutil.copy("/etc/sane.d/test.conf", etc)
    return etc


def _start_kioskd(build, tmp, env):
    conf = os.path.join(tmp, "kioskd.conf")
    with open(conf, "w") as f:
        f.write("[daemon]\nlog_level = notice\n\n[device scanner0]\nclass = scanner\n"
                "plugin = sane\ndevice = test:0\nsane_options = test-picture=%s\n" % PICTURE)
    notify = os.path.join(tmp, "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify)
    ns.settimeout(10)
    log = open(os.path.join(tmp, "kioskd.log"), "wb")
    proc = subprocess.Popen(
        [os.path.join(build, "kioskd"), "--config", conf, "--runtime-dir",
         os.path.join(tmp, "run"), "--state-dir", os.path.join(tmp, "state")],
        env=dict(env, NOTIFY_SOCKET=notify), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        while b"READY=1" not in ns.recv(4096):
            pass
    except socket.timeout:
        proc.kill()
        proc.wait()
        raise BenchError("kioskd sent no READY=1; see %s/kioskd.log" % tmp)
    finally:
        ns.close()
        log.close()
    return proc


class _Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.id = 0

    def call(self, cmd, args=None, timeout=60):
        self.id += 1
        msg = {"id": self.id, "cmd": cmd, "timeout_ms": timeout * 1000}
        if args is not None:
            msg["args"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        self.sock.settimeout(timeout)
        while True:
            while b"\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise BenchError("kioskd closed the connection")
                self.buf += data
            line, self.buf = self.buf.split(b"\n", 1)
            r = json.loads(line)
            if r.get("id") == self.id and "ok" in r:
                if not r["ok"]:
                    raise BenchError("%s: %r" % (cmd, r["error"]))
                return r["result"]

    def close(self):
        self.sock.close()


def _scan_kioskd(c, state_dir):
    t0 = time.monotonic()
    page = c.call("scanner.scan", SCAN)["pages"][0]
    dt = time.monotonic() - t0
    if (page["width"], page["height"]) != (944, 1181):
        raise BenchError("unexpected page %r" % page)
    return dt, os.path.getsize(os.path.join(state_dir, "blobs", page["blob"]))


def _scan_scanimage(env, out):
    t0 = time.monotonic()
    subprocess.run(["scanimage", "-d", "test:0", "--format=png", "-o", out, "--mode", "Color",
                    "--resolution", "300", "--test-picture", PICTURE],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    return time.monotonic() - t0, os.path.getsize(out)


def measure(build, tmp, log):
    env = dict(os.environ, SANE_CONFIG_DIR=_sane_dir(tmp))
    for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC"):
        env.pop(k, None)
    proc = _start_kioskd(build, tmp, env)
    try:
        c = _Client(os.path.join(tmp, "run", "admin.sock"))
        deadline = time.monotonic() + 10
        while c.call("scanner.status").get("state") != "idle":
            if time.monotonic() > deadline:
                raise BenchError("scanner0 did not open; see %s/kioskd.log" % tmp)
            time.sleep(0.02)
        _scan_kioskd(c, os.path.join(tmp, "state"))  # warm-up: caches, first blob
        _scan_scanimage(env, os.path.join(tmp, "page.png"))
        t0 = time.monotonic()
        subprocess.run(["scanimage", "-d", "test:0", "--dont-scan"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        log("sane: scanimage start-up without a scan: %.1f ms" % ((time.monotonic() - t0) * 1e3))
        ours, theirs = [], []
        for i in range(ROUNDS):
            ours.append(_scan_kioskd(c, os.path.join(tmp, "state")))
            theirs.append(_scan_scanimage(env, os.path.join(tmp, "page.png")))
            log("sane: round %d: kioskd %.1f ms, scanimage %.1f ms"
                % (i + 1, ours[-1][0] * 1e3, theirs[-1][0] * 1e3))
        c.close()
    finally:
        proc.terminate()
        rc = proc.wait(30)
    if rc != 0:
        raise BenchError("kioskd exited %d on SIGTERM; see %s/kioskd.log" % (rc, tmp))
    k_ms = statistics.median(t for t, _ in ours) * 1e3
    s_ms = statistics.median(t for t, _ in theirs) * 1e3
    k_kib, s_kib = ours[-1][1] / 1024, theirs[-1][1] / 1024
    ratio = k_ms / s_ms
    return [
        {"metric": "sane 300dpi colour page to PNG (ms)", "value": "%.1f" % k_ms,
         "baseline": "%.1f (scanimage)" % s_ms, "ratio": round(ratio, 2),
         "target": "<= %.1fx" % TARGET, "ok": ratio <= TARGET},
        {"metric": "sane PNG size, zlib 6 (KiB)", "value": "%.1f" % k_kib,
         "baseline": "%.1f (scanimage)" % s_kib, "ratio": round(k_kib / s_kib, 3),
         "target": "-", "ok": None},
    ]


if __name__ == "__main__":
    import argparse
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sane-") as t:
        for row in measure(os.path.abspath(a.build), t, print):
            print(row)
