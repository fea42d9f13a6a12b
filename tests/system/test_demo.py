"""make demo runs its whole scripted session (fast, without pauses)."""
import os
import subprocess
import sys

import kiosk


def test_demo_runs_end_to_end():
    env = dict(os.environ, DEMO_PACE="0")
    r = subprocess.run([sys.executable, os.path.join(kiosk.REPO, "tests", "demo.py"),
                        "--build", kiosk.BUILD,
                        "--config", os.path.join(kiosk.REPO, "conf", "kioskd.conf")],
                       cwd=kiosk.REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # every step happened, through the real socket, with its event
    for topic in ("cardreader.inserted", "printer.printed", "cardreader.removed",
                  "locker.opened", "locker.closed", "printer.paper_out", "sensor.alarm",
                  "sync.delivered", "sync.endpoint"):
        assert topic in out, (topic, out)
    assert "read back: 0032000501" in out
    assert "payment P-000001: paid" in out
    assert "endpoint applied 2 transactions, each exactly {1} time(s)" in out
    # the endpoint went down: kept, then drained by itself
    assert "queued: 2, delivered: 2" in out
    assert "queued: 0, delivered: 4" in out
    assert "燃气充值" in out  # the receipt, rendered as text
    assert "device_offline: paper out" in out
    assert "kioskd stopped (exit status 0)" in out
    for bad in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert bad not in r.stderr
