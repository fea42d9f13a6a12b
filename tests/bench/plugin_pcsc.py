"""Benchmark of the pcsc plugin: one APDU round trip through kioskd
(a client on ui.sock sending cardreader.apdu, the plugin's job on the
worker pool, pcscd, vpcd, the virtual card) next to a direct libpcsclite
client sending the same APDU to the same pcscd and card, measured in the
same run in alternating blocks (tests/bench/bench_apdu.c).  Target: the
median through kioskd at most 1.3x the direct one.  Two floor rows: a
bare relay process on a Unix socket calling SCardTransmit inline, and the
same relay handing it to a thread and back as decision 1 of
ARCHITECTURE.md requires (what any daemon design starts from here).  Reports, never
asserts.  Needs root (pcscd runs in private namespaces: see
tests/tools/pcsc_env.py)."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "tools"))
sys.path.insert(0, os.path.join(REPO, "tests", "system"))

TARGET = 1.3
COUNT = 1000


def _row(metric, value, baseline, ratio, target, ok):
    return {"metric": metric, "value": value, "baseline": baseline, "ratio": ratio,
            "target": target, "ok": ok}


def measure(build, tmp, log):
    from pcsc_env import READER, PcscEnv  # noqa: E402
    os.environ["KIOSKD_BUILD"] = build
    import kiosk  # noqa: E402

    env = PcscEnv(os.path.join(tmp, "pcsc"), build)
    os.makedirs(env.tmp, exist_ok=True)
    conf = (kiosk.daemon_section(log_level="warning") +
            "[device card0]\nclass = cardreader\nplugin = pcsc\nreader = 00 00\n")
    d = None
    try:
        log("pcsc: starting pcscd + vcard")
        env.start()
        env.insert("mifare")
        os.makedirs(os.path.join(tmp, "kioskd"), exist_ok=True)
        d = kiosk.Daemon(conf, env=env.env, tmp=os.path.join(tmp, "kioskd"))
        d.start()
        c = d.client()
        kiosk.wait_until(lambda: c.ok("cardreader.status").get("card") == "present", 15,
                         "the card")
        log("pcsc: %d APDU round trips each way" % COUNT)
        cpus = sorted(os.sched_getaffinity(0))
        pinned = []
        if len(cpus) > 1:
            # the UI on one CPU, the daemon (and the relay) on another: a
            # fixed placement for every path, not the scheduler's choice
            for tid in os.listdir("/proc/%d/task" % d.pid):
                os.sched_setaffinity(int(tid), {cpus[-1]})
            pinned = ["--client-cpu", str(cpus[0]), "--relay-cpu", str(cpus[-1])]
        out = subprocess.run(
            [os.path.join(build, "tests", "bench", "bench_apdu"), "--socket", d.ui_sock,
             "--reader", READER, "--count", str(COUNT)] + pinned,
            env=dict(os.environ, **env.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            timeout=300, check=True)
        r = json.loads(out.stdout)
        k, b, rl, rt = r["kioskd"], r["direct"], r["relay"], r["relay_thread"]
        d.stop()
        d.cleanup()
        d = None
        log("pcsc: the same APDU on a simulated reader (the core's own cost)")
        sim = _sim_apdu(kiosk, build, tmp)
        ratio = k["p50_us"] / b["p50_us"] if b["p50_us"] else None
        p99 = k["p99_us"] / b["p99_us"] if b["p99_us"] else None
        return [
            _row("pcsc: APDU round trip p50 (cardreader.apdu via kioskd vs direct libpcsclite)",
                 "%.0f us" % k["p50_us"], "%.0f us" % b["p50_us"], ratio,
                 "<= %.1fx" % TARGET, ratio is not None and ratio <= TARGET),
            _row("pcsc: APDU round trip p99", "%.0f us" % k["p99_us"], "%.0f us" % b["p99_us"],
                 p99, "report", None),
            _row("pcsc: floor: a bare relay process on a Unix socket, SCardTransmit inline, p50",
                 "%.0f us" % rl["p50_us"], "%.0f us" % b["p50_us"], rl["p50_us"] / b["p50_us"],
                 "report", None),
            _row("pcsc: floor: the same relay handing SCardTransmit to a thread (decision 1), p50",
                 "%.0f us" % rt["p50_us"], "%.0f us" % b["p50_us"], rt["p50_us"] / b["p50_us"],
                 "report", None),
            _row("pcsc: cardreader.apdu p50 on the sim plugin (core per-command cost, "
                 "audit journal included) vs direct libpcsclite",
                 "%.0f us" % sim["p50_us"], "%.0f us" % b["p50_us"],
                 sim["p50_us"] / b["p50_us"] if b["p50_us"] else None, "report", None),
        ]
    finally:
        if d is not None:
            try:
                d.stop()
            except AssertionError as e:
                log("pcsc: kioskd stop: %s" % e)
            d.cleanup()
        env.stop()


def _sim_apdu(kiosk, build, tmp):
    conf = (kiosk.daemon_section(log_level="warning") +
            kiosk.sim_device("card0", "cardreader", latency_ms=0, card="mifare"))
    os.makedirs(os.path.join(tmp, "kioskd-sim"), exist_ok=True)
    d = kiosk.Daemon(conf, tmp=os.path.join(tmp, "kioskd-sim"))
    try:
        d.start()
        out = subprocess.run(
            [os.path.join(build, "tests", "bench", "bench_apdu"), "--socket", d.ui_sock,
             "--reader", "-", "--count", str(COUNT)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, check=True)
        return json.loads(out.stdout)["kioskd"]
    finally:
        try:
            d.stop()
        finally:
            d.cleanup()


if __name__ == "__main__":
    import tempfile
    b = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "build")
    with tempfile.TemporaryDirectory() as t:
        for row in measure(os.path.abspath(b), t, print):
            print(row)
