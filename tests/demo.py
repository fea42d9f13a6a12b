#!/usr/bin/python3
"""make demo: a scripted kiosk session on simulators that a person can watch.

Starts the reference HTTPS endpoint (tests/endpoint, certificates made on
the spot) and build/kioskd on conf/kioskd.conf (every device simulated)
plus a drop-in that routes gas.* to that endpoint, in a temporary
directory.  Then it walks through a resident's visit using kioskctl over the
real sockets: a gas card is read, paid for by QR code (remote.call), the
top-up is stored durably (txn.submit), written to the card, the receipt is
printed, and both transactions reach the endpoint -- then again with the
endpoint down, showing the queue hold and drain when it returns.  A locker
door opens and closes, the cabinet overheats and the temperature alarm
fires.  Events are shown as they arrive.  DEMO_PACE (seconds between steps,
default 0.8) sets the speed.
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "endpoint"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "system"))
from endpoint import Endpoint  # noqa: E402  the reference endpoint
from escpos_decode import TcpPrinter, render_text  # noqa: E402  a raw-TCP ESC/POS printer

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

    def start_endpoint(self):
        self.ep = Endpoint(os.path.join(self.tmp, "endpoint"), paid_after=1).start()
        confdir = os.path.join(self.tmp, "etc")
        os.makedirs(os.path.join(confdir, "conf.d"))
        with open(self.conf) as f:
            main = f.read()
        self.conf = os.path.join(confdir, "kioskd.conf")
        with open(self.conf, "w") as f:
            f.write(main)
        key = os.path.join(confdir, "store.key")
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(os.urandom(32))
        with open(os.path.join(confdir, "conf.d", "50-demo-endpoint.conf"), "w") as f:
            f.write("# written by make demo: the local reference endpoint\n"
                    "[daemon]\nkiosk_id = DEMO-0001\n\n[store]\nkey_file = %s\n\n" % key
                    + self.ep.conf("gas", startup_delay_ms=0, backoff_min_ms=300,
                                   backoff_max_ms=1500)
                    + "\n[route]\ngas.* = gas\n")
        print(style("2", f"reference endpoint on {self.ep.url} (mTLS, certificates in "
                         f"{self.ep.certs_dir})"))
        # a real ESC/POS byte stream: the escpos plugin prints to a raw-TCP
        # listener that decodes what it receives and answers status queries
        self.escpos = TcpPrinter().start()
        with open(os.path.join(confdir, "conf.d", "60-demo-escpos.conf"), "w") as f:
            f.write("# written by make demo: an ESC/POS receipt printer on raw TCP\n"
                    "[device receipt1]\nclass = printer\nplugin = escpos\n"
                    "transport = tcp\nhost = 127.0.0.1\nport = %d\nwidth = 32\n"
                    % self.escpos.port)
        print(style("2", f"ESC/POS printer (escpos plugin) on raw TCP 127.0.0.1:{self.escpos.port}"))

    def start(self):
        self.start_endpoint()
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
        if getattr(self, "ep", None):
            self.ep.stop()
        if self.watcher:
            self.watcher.terminate()
            self.watcher.wait()
        if getattr(self, "escpos", None):
            self.escpos.stop()
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


def side_by_side(left, right, ltitle, rtitle, width=34):
    """Two receipts next to each other, as a person compares them."""
    def cols(t):  # CJK takes two columns on a terminal, as on the print head
        return sum(2 if ord(ch) >= 0x1100 else 1 for ch in t)

    def pad(t):
        return t + " " * max(0, width - cols(t))

    a, b = left.rstrip("\n").split("\n"), right.rstrip("\n").split("\n")
    print(style("33", "    " + pad(ltitle) + "   " + rtitle))
    print(style("33", "    +" + "-" * width + "+ +" + "-" * width + "+"))
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else ""
        y = b[i] if i < len(b) else ""
        print(style("33", "    |") + pad(x) + style("33", "| |") + pad(y) + style("33", "|"))
    print(style("33", "    +" + "-" * width + "+ +" + "-" * width + "+"))


def receipt_blocks():
    return {"blocks": [
        {"text": "社区服务厅 · 燃气充值", "align": "center", "bold": True, "double": True},
        {"text": "Community service hall - gas top-up", "align": "center"},
        {"feed": 1},
        {"text": "卡号 Card:      ****1234"},
        {"text": "充值 Amount:    50.00 元"},
        {"text": "气量 Gas:       18.5 立方米"},  # no ³: not in GBK
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
        d.watch(["cardreader.*", "printer.*", "locker.*", "sensor.alarm*", "sensor.door",
                 "sync.*", "flow.*"])

        d.step("A resident inserts a gas IC card (simulated hardware event)")
        d.sim("card0", "insert", json.dumps({"card": {"type": "sle4442"}}))
        d.wait_event("cardreader.inserted")

        d.step("The UI reads the card's memory")
        card = d.ctl("call", "cardreader.read", json.dumps({"offset": 0, "length": 32}),
                     show=True, parse=True)
        print(f"    card type {card['type']}, {len(card['data']) // 2} bytes read "
              "(card data is not logged by kioskd)")

        flow = "f-demo-0001"
        d.step("Payment: the gas company's QR code, through the daemon's credentials")
        qr = d.ctl("call", "remote.call", json.dumps(
            {"endpoint": "gas", "path": "/payment/qr",
             "body": {"amount_fen": 5000}}), parse=True, show=True)
        order = qr["body"]["order"]
        print(f"    show QR to the resident: {qr['body']['qr']}")
        for i in range(10):
            st = d.ctl("call", "remote.call", json.dumps(
                {"endpoint": "gas", "path": "/payment/status", "body": {"order": order}}),
                parse=True, show=(i == 0))
            print(f"    payment {order}: {st['body']['status']}")
            if st["body"]["status"] == "paid":
                break
            time.sleep(0.3)

        d.step("Paid: the top-up is stored durably before anything else happens")
        t1 = d.ctl("call", "txn.submit", json.dumps(
            {"type": "gas.topup", "flow": flow, "pii": ["card"],
             "payload": {"card": card["uid"], "order": order, "amount_fen": 5000}}),
            parse=True, show=True)
        print(f"    acknowledged only after fsync: {t1['txn_id']} ({t1['state']})")

        d.step("The purchase is written to the card and read back")
        d.ctl("call", "cardreader.write", json.dumps({"offset": 32, "data": "0032000501"}))
        back = d.ctl("call", "cardreader.read", json.dumps({"offset": 32, "length": 5}),
                     show=False, parse=True)
        print(f"    read back: {back['data']}")
        d.ctl("call", "txn.submit", json.dumps(
            {"type": "gas.card_written", "flow": flow, "final": True,
             "payload": {"order": order, "written": back["data"]}}), parse=True)
        d.wait_event("sync.delivered")

        d.step("The receipt is printed: on the simulator, and as ESC/POS bytes on a real "
               "byte stream (escpos plugin over raw TCP), decoded back to text")
        doc = json.dumps(receipt_blocks(), ensure_ascii=False)
        res = d.ctl("call", "printer.print", doc, "--device", "printer0", parse=True)
        d.escpos.clear()
        esc = d.ctl("call", "printer.print", doc, "--device", "receipt1", parse=True)
        items = d.escpos.wait_items(lambda its: any(i["kind"] == "cut" for i in its))
        side_by_side(res["text"], render_text(items, 32),
                     "simulator (printer0)", "ESC/POS decoded (receipt1, %d bytes)" % esc["bytes"])
        if d.escpos.errors:
            raise SystemExit(f"demo: the ESC/POS stream did not decode: {d.escpos.errors}")

        d.step("The resident takes the card")
        d.sim("card0", "remove")
        d.wait_event("cardreader.removed")

        d.step("A parcel is collected: locker door 7 opens...")
        d.ctl("call", "locker.open", json.dumps({"door": 7}))
        d.wait_event("locker.opened")
        d.step("...and the resident closes it again")
        d.sim("locker0", "close", json.dumps({"door": 7}))
        d.wait_event("locker.closed")

        d.step("The gas company's endpoint is delivered to: both transactions, once each")
        applied = d.ep.applied_ids()
        print(f"    endpoint applied {len(applied)} transactions, each exactly "
              f"{set(applied.values())} time(s)")

        d.step("The network goes down: the next top-up is kept, not lost")
        d.ep.down()
        t3 = d.ctl("call", "txn.submit", json.dumps(
            {"type": "gas.topup", "flow": "f-demo-0002", "payload": {"order": "P-offline",
                                                                     "amount_fen": 2000}}),
            parse=True, show=True)
        d.ctl("call", "txn.submit", json.dumps(
            {"type": "gas.card_written", "flow": "f-demo-0002", "final": True,
             "payload": {"order": "P-offline"}}), parse=True)
        time.sleep(max(PACE, 0.5))
        q = d.ctl("call", "queue.list", json.dumps({"state": "queued"}), parse=True)
        print(f"    queued: {q['counts']['queued']}, delivered: {q['counts']['delivered']}")
        sy = d.ctl("call", "sync.status", parse=True, show=False)
        e = sy["endpoints"][0]
        print(f"    endpoint {e['name']}: {e['state']}"
              + (f" ({e['last_error']})" if e.get("last_error") else ""))

        d.step("The network is back: the queue drains by itself")
        d.ep.up()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            q = d.ctl("call", "queue.list", parse=True, show=False)["counts"]
            if q["queued"] == 0 and q["sending"] == 0:
                break
            time.sleep(0.2)
        print(f"    queued: {q['queued']}, delivered: {q['delivered']}")
        if q["queued"] or q["sending"] or t3["txn_id"] not in d.ep.applied_ids():
            raise SystemExit("demo: the queue did not drain")

        d.step("The printer runs out of paper: a print is refused, not lost silently")
        d.sim("printer0", "paper_out")
        rc = subprocess.run([os.path.join(d.build, "kioskctl"), "--socket", d.sock, "call",
                             "printer.print", '{"blocks":[{"text":"x"}]}', "--device",
                             "printer0"],
                            capture_output=True, text=True)
        print(style("36", "  $ kioskctl call printer.print '{\"blocks\":[{\"text\":\"x\"}]}' "
                          "--device printer0"))
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
