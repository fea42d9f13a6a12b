"""The escpos plugin over USB, against a scripted printer in a umockdev
testbed (tests/tools/escpos_usbprinter.py): the daemon's real libusb opens
04b8:0202 through the core's USB services, bulk OUT is captured and
decoded, DLE EOT is answered on bulk IN, and unplug/replug are umockdev
uevents seen by libusb's hotplug monitor."""

import json
import os
import subprocess

import pytest

from kiosk import REPO, wait_until

HELPER = os.path.join(REPO, "tests", "tools", "escpos_usbprinter.py")



class UsbPrinter:
    def __init__(self):
        self.proc = subprocess.Popen(["umockdev-wrapper", "/usr/bin/python3", HELPER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("ROOT "), line
        self.root = line.split(None, 1)[1].strip()

    def cmd(self, c):
        self.proc.stdin.write(c + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().rstrip("\n")

    def items(self):
        return json.loads(self.cmd("items")[len("ITEMS "):])

    def errors(self):
        return json.loads(self.cmd("errors")[len("ERRORS "):])

    def queries(self):
        return int(self.cmd("queries").split()[1])

    def status(self, paper="ok", cover=0, cutter=0):
        assert self.cmd("status %s %d %d" % (paper, cover, cutter)) == "OK"

    def env(self):
        asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
        return {"UMOCKDEV_DIR": self.root, "LD_PRELOAD": "libumockdev-preload.so.0",
                "ASAN_OPTIONS": asan + ":verify_asan_link_order=0"}

    def stop(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# usb before kd in a test's arguments: the printer outlives the daemon (a
# daemon whose ioctl handler went away is aborted by umockdev's preload)
@pytest.fixture
def usb():
    p = UsbPrinter()
    yield p
    p.stop()


CONF = """[daemon]
reopen_min_ms = 100
reopen_max_ms = 300

[device printer0]
class = printer
plugin = escpos
transport = usb
usb_id = 04b8:0202
poll_ms = 100
timeout_ms = 1000
"""


def test_usb_print_status_unplug_replug(usb, kd):
    d = kd(CONF, env=usb.env())
    d.wait_state("printer0", "ready")
    ui = d.client()
    ui.ok("events.subscribe", args={"topics": ["printer.*", "device.state"]})
    wait_until(lambda: usb.queries() >= 4, 5, "status queries over bulk OUT/IN")
    a = d.admin()
    assert a.ok("printer.status")["paper"] == "ok"

    a.ok("printer.print", args={"blocks": [{"text": "USB 打印 ok"}, {"qr": "usb-qr"},
                                           {"cut": True}]})
    items = usb.items()
    assert [i["text"] for i in items if i["kind"] == "text"] == ["USB 打印 ok"]
    assert [bytes.fromhex(i["data"]) for i in items if i["kind"] == "qr"] == [b"usb-qr"]
    assert items[-1] == {"kind": "cut", "mode": "full"}
    assert usb.errors() == []

    usb.status(paper="out")
    ui.event("printer.paper_out", "printer0")
    n = len(usb.items())
    assert a.err("printer.print", args={"blocks": [{"text": "no"}]}) == {
        "code": "device_offline", "message": "paper out"}
    assert len(usb.items()) == n
    usb.status(paper="ok", cover=1)
    ui.event("printer.paper_ok", "printer0")
    ui.event("printer.cover_open", "printer0")
    usb.status()
    ui.event("printer.cover_closed", "printer0")

    assert usb.cmd("unplug") == "OK"
    ev = ui.event("device.state", "printer0", lambda e: e["data"]["state"] == "offline")
    assert ev["data"]["reason"] == "unplugged" or "USB" in ev["data"]["reason"], ev
    assert a.err("printer.print", args={"blocks": [{"text": "gone"}]})["code"] == \
        "device_offline"
    assert usb.cmd("plug") == "OK"
    d.wait_state("printer0", "ready")
    wait_until(lambda: a.ok("printer.status")["paper"] == "ok", 5, "status after replug")
    a.ok("printer.print", args={"blocks": [{"text": "back again"}]})
    assert any(i.get("text") == "back again" for i in usb.items())


def test_usb_printer_absent_at_start_opens_when_plugged(usb, kd):
    assert usb.cmd("unplug") == "OK"
    d = kd(CONF, env=usb.env())
    dev = d.wait_state("printer0", "offline")
    assert "04b8:0202" in dev["reason"], dev
    assert usb.cmd("plug") == "OK"
    d.wait_state("printer0", "ready")
    d.admin().ok("printer.print", args={"blocks": [{"text": "late"}]})
    assert any(i.get("text") == "late" for i in usb.items())
