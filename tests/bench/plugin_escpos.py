"""The escpos plugin's benchmark for tests/bench/run.py: time to render a
40-line Chinese receipt with a QR code to ESC/POS (tests/bench/bench_escpos.c,
which links the plugin's renderer).  Target: p99 <= 2 ms, absolute.

Baseline, measured in the same run by the same program: one memcpy of the
rendered receipt's bytes -- the floor for producing that output at all.
The ratio is how many times that floor the rendering costs (GB18030
conversion, wrapping, commands); it is reported, not asserted.
"""
import os
import re
import subprocess

TARGET_US = 2000.0


def _fields(line):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def measure(build, tmp, log):
    exe = os.path.join(build, "tests", "bench", "bench_escpos")
    log("escpos: rendering a 40-line Chinese receipt with a QR code, 2000 times")
    out = subprocess.run([exe, "2000"], cwd=tmp, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    lines = {l.split()[0]: _fields(l) for l in out.splitlines() if l.strip()}
    r, b = lines["render"], lines["baseline"]
    return [{
        "metric": "escpos render, 40-line Chinese receipt + QR (%d bytes), p99" % r["bytes"],
        "value": "%.1f us (p50 %.1f us)" % (r["p99_us"], r["p50_us"]),
        "baseline": "%.2f us (memcpy of the same bytes)" % b["p99_us"],
        "ratio": round(r["p99_us"] / b["p99_us"], 1) if b["p99_us"] > 0 else None,
        "target": "<= 2 ms",
        "ok": r["p99_us"] <= TARGET_US,
    }]
