#!/usr/bin/python3
"""make demo: a scripted kiosk session on simulators that a person can watch.

Starts build/kioskd on conf/kioskd.conf (every device simulated) in a
temporary directory, then walks through a resident's visit using kioskctl
over the real sockets: a gas card is inserted and read, a receipt is
printed, a locker door opens and closes, the cabinet overheats and the
temperature alarm fires.  Events the daemon publishes are shown as they
arrive.  DEMO_PACE (seconds between steps, default 0.8) sets the speed.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PACE = float(os.environ.get("DEMO_PACE", "0.8"))
TTY = sys.stdout.isatty()


def style(code, text):
    return f"\033[{code}m{text}\033[0m" if TTY else text


class Demo:
    def __init__(self, build, conf):
        self.build = build
        self.conf = conf
        self.tmp = tempfile.mkdtemp(prefix="kioskd-demo-")
        self.sock = os.path.join(self.tmp, "run", "admin.sock")
        self.events = []
        self.lock = threading.Lock()
        self.daemon = None
        self.watcher = None

    def start(self):
        notify_path = os.path.join(self.tmp, "notify")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(notify_path)
        ns.settimeout(10)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        self.log = open(os.path.join(self.tmp, "kioskd.log"), "w")
        self.daemon = subprocess.Popen(
            [os.path.join(self.build, "kioskd"), "--config", self.conf,
             "--runtime-dir", os.path.join(self.tmp, "run"),
             "--state-dir", os.path.join(self.tmp, "state")],
            env=env, stderr=self.log)
        t0 = time.monotonic()
        while True:
            msg = ns.recv(4096).decode()
            if "READY=1" in msg:
                break
        ns.close()
        print(style("2", f"kioskd started (pid {self.daemon.pid}), READY=1 after "
                         f"{(time.monotonic() - t0) * 1000:.0f} ms; log: {self.log.name}"))

    def stop(self):
        if self.watcher:
            self.watcher.terminate()
            self.watcher.wait()
        if self.daemon:
            self.daemon.send_signal(signal.SIGTERM)
            rc = self.daemon.wait(timeout=10)
            print(style("2", f"kioskd stopped (exit status {rc})"))
            return rc
        return 0

    def watch(self, patterns):
        self.watcher = subprocess.Popen(
            [os.path.join(self.build, "kioskctl"), "--socket", self.sock, "events",
             "--follow", *patterns], stdout=subprocess.PIPE, text=True, bufsize=1)

        def pump():
            for line in self.watcher.stdout:
                with self.lock:
                    self.events.append(line)
                print(style("35", "    event  ") + line.rstrip(), flush=True)

        threading.Thread(target=pump, daemon=True).start()
        time.sleep(0.2)

    def ctl(self, *args, show=True, parse=False, quiet=False):
        cmd = [os.path.join(self.build, "kioskctl"), "--socket", self.sock, *args]
        if show:
            shown = " ".join(
                a if a.isidentifier() or a.replace(".", "").isalnum()
                else f"'{a if len(a) < 110 else a[:100] + ' …'}'" for a in args)
            print(style("36", f"  $ kioskctl {shown}"), flush=True)
        if parse:
            cmd.insert(1, "--json")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise SystemExit(f"demo: kioskctl {' '.join(args)} failed "
                             f"({out.returncode}): {out.stderr.strip()}")
        if parse:
            return json.loads(out.stdout)
        if out.stdout.strip() and not quiet:
            for line in out.stdout.rstrip().splitlines():
                print("    " + line)
        return None

    def sim(self, *args):
        self.ctl("sim", *args, quiet=True)

    def wait_event(self, topic, timeout=8.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if any(topic in e for e in self.events):
                    return True
            time.sleep(0.05)
        raise SystemExit(f"demo: no {topic} event within {timeout} s")

    def step(self, title):
        time.sleep(PACE)
        print()
        print(style("1", f"== {title}"))


def receipt_blocks():
    return {"blocks": [
        {"text": "社区服务厅 · 燃气充值", "align": "center", "bold": True, "double": True},
        {"text": "Community service hall - gas top-up", "align": "center"},
        {"feed": 1},
        {"text": "卡号 Card:      ****1234"},
        {"text": "充值 Amount:    50.00 元"},
        {"text": "气量 Gas:       18.5 m³"},
        {"text": "时间 Time:      2026-12-04 15:20"},
        {"feed": 1},
        {"qr": "https://example.invalid/r/20261204-0001", "align": "center"},
        {"text": "谢谢惠顾 Thank you", "align": "center"},
        {"cut": True},
    ]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--config", default="conf/kioskd.conf")
    a = ap.parse_args()
    d = Demo(os.path.abspath(a.build), os.path.abspath(a.config))
    print(style("1", "kioskd demo: a resident tops up a gas card at the community kiosk"))
    d.start()
    try:
        d.step("The kiosk at rest: every device runs on a simulator")
        d.ctl("status")
        d.watch(["cardreader.*", "printer.*", "locker.*", "sensor.alarm*", "sensor.door"])

        d.step("A resident inserts a gas IC card (simulated hardware event)")
        d.sim("card0", "insert", json.dumps({"card": {"type": "sle4442"}}))
        d.wait_event("cardreader.inserted")

        d.step("The UI reads the card's memory")
        card = d.ctl("call", "cardreader.read", json.dumps({"offset": 0, "length": 32}),
                     show=True, parse=True)
        print(f"    card type {card['type']}, {len(card['data']) // 2} bytes read "
              "(card data is not logged by kioskd)")

        d.step("Payment done: the purchase is written to the card and read back")
        d.ctl("call", "cardreader.write", json.dumps({"offset": 32, "data": "0032000501"}))
        back = d.ctl("call", "cardreader.read", json.dumps({"offset": 32, "length": 5}),
                     show=False, parse=True)
        print(f"    read back: {back['data']}")

        d.step("The receipt is printed (Chinese text; the simulator renders it as text)")
        res = d.ctl("call", "printer.print", json.dumps(receipt_blocks(), ensure_ascii=False), parse=True)
        print(style("33", "    +" + "-" * 34 + "+"))
        for line in res["text"].rstrip("\n").split("\n"):
            print(style("33", "    | ") + line)
        print(style("33", "    +" + "-" * 34 + "+"))

        d.step("The resident takes the card")
        d.sim("card0", "remove")
        d.wait_event("cardreader.removed")

        d.step("A parcel is collected: locker door 7 opens...")
        d.ctl("call", "locker.open", json.dumps({"door": 7}))
        d.wait_event("locker.opened")
        d.step("...and the resident closes it again")
        d.sim("locker0", "close", json.dumps({"door": 7}))
        d.wait_event("locker.closed")

        d.step("The printer runs out of paper: a print is refused, not lost silently")
        d.sim("printer0", "paper_out")
        rc = subprocess.run([os.path.join(d.build, "kioskctl"), "--socket", d.sock, "call",
                             "printer.print", '{"blocks":[{"text":"x"}]}'],
                            capture_output=True, text=True)
        print(style("36", "  $ kioskctl call printer.print '{\"blocks\":[{\"text\":\"x\"}]}'"))
        print(f"    {rc.stderr.strip()}  (exit status {rc.returncode})")
        d.sim("printer0", "paper_ok")

        d.step("Afternoon sun: the cabinet heats past its 45 °C alarm")
        d.sim("cabinet0", "curve", json.dumps({"points": [[0, 30.0], [1500, 52.0]]}))
        d.wait_event("sensor.alarm")
        d.ctl("call", "sensor.read")

        d.step("The fans start")
        d.ctl("call", "actuator.set", json.dumps({"output": "fan1", "on": True, "level": 100}))
        time.sleep(PACE)
    finally:
        rc = d.stop()
    print()
    print(style("1", "demo finished") + f" (kioskd log: {d.log.name})")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
