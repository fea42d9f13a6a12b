#!/usr/bin/python3
"""A scripted USB ESC/POS receipt printer (Epson TM, 04b8:0202) in a
umockdev testbed, for the escpos plugin's USB tests.

Run under umockdev-wrapper (uevents need it):
    umockdev-wrapper /usr/bin/python3 tests/tools/escpos_usbprinter.py
It prints "ROOT <dir>" once the printer is plugged in; a daemon started
with UMOCKDEV_DIR=<dir> and LD_PRELOAD=libumockdev-preload.so.0 sees it.
Then it reads commands on stdin, one per line, and answers one line each:
    status PAPER COVER CUTTER   paper ok|low|out, cover/cutter 0|1 -> OK
    items                       the decoded document items as JSON -> ITEMS [...]
    errors                      decoder errors as JSON -> ERRORS [...]
    queries                     DLE EOT queries seen so far -> QUERIES n
    unplug / plug               hotplug with uevents -> OK
    quit
Bulk OUT data goes through the test-side ESC/POS decoder
(tests/system/escpos_decode.py), which answers DLE EOT n on bulk IN.
"""
import json
import os
import struct
import sys
import threading
import time

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
from escpos_decode import Decoder, Status  # noqa: E402

SYSPATH = "/sys/devices/pci0000:00/0000:00:14.0/usb3/3-7"
DEVNODE = "/dev/bus/usb/003/007"
# device 04b8:0202, one configuration, printer interface 7/1/2, bulk OUT 0x01, bulk IN 0x82
DESC = ("1201000200000040" "b804" "0202" "0001010203" "01"
        "0902200001010" "0C032" "0904000002070102" "00" "0705010200" "0200" "0705820200" "0200")
DEVICE = """P: {p}
N: bus/usb/003/007={d}
E: BUSNUM=003
E: DEVNAME={dev}
E: DEVNUM=007
E: DEVTYPE=usb_device
E: DRIVER=usb
E: ID_BUS=usb
E: ID_MODEL_ID=0202
E: ID_VENDOR_ID=04b8
E: ID_USB_INTERFACES=:070102:
E: MAJOR=189
E: MINOR=262
E: PRODUCT=4b8/202/100
E: SUBSYSTEM=usb
E: TYPE=0/0/0
A: authorized=1\\n
A: bConfigurationValue=1\\n
A: bDeviceClass=00\\n
A: bDeviceProtocol=00\\n
A: bDeviceSubClass=00\\n
A: bMaxPacketSize0=64\\n
A: bNumConfigurations=1\\n
A: bNumInterfaces= 1
A: bcdDevice=0100\\n
A: bmAttributes=c0\\n
A: busnum=3\\n
H: descriptors={d}
A: dev=189:262\\n
A: devnum=7\\n
A: devpath=7\\n
A: idProduct=0202\\n
A: idVendor=04b8\\n
A: manufacturer=EPSON\\n
A: product=TM-T20 (kioskd test)\\n
A: serial=KIOSK0001\\n
A: speed=480\\n
A: version= 2.00\\n
""".format(p=SYSPATH[len("/sys"):], d=DESC.upper(), dev=DEVNODE)

SUBMITURB, REAPURB, REAPURBNDELAY, DISCARDURB = 0x8038550a, 0x4008550c, 0x4008550d, 0x0000550b
GET_CAPABILITIES = 0x8004551a
URB_SIZE, OFF_STATUS, OFF_BUFFER, OFF_BUFLEN, OFF_ACTLEN = 56, 4, 16, 24, 28
TYPE_CONTROL, TYPE_BULK = 2, 3


class Printer(UMockdev.IoctlBase):
    def __init__(self, status, decoder, lock):
        super().__init__()
        self.lock = lock
        self.status = status
        self.decoder = decoder
        self.done = []
        self.in_queue = []
        self.pending_in = []

    def finish(self, urb, status, actual):
        urb.update(OFF_STATUS, struct.pack("<i", status))
        urb.update(OFF_ACTLEN, struct.pack("<i", actual))
        with self.lock:
            self.done.append(urb)

    def flush_in(self):
        while True:
            with self.lock:
                if not (self.pending_in and self.in_queue):
                    return
                urb, buf, buflen = self.pending_in.pop(0)
                reply = self.in_queue.pop(0)[:buflen]
            buf.update(0, reply)
            self.finish(urb, 0, len(reply))

    def do_handle_ioctl(self, client):
        req = client.get_request()
        if req == GET_CAPABILITIES:
            client.get_arg().resolve(0, 4).update(0, struct.pack("<I", 0x06))
            client.complete(0, 0)
            return True
        if req == SUBMITURB:
            urb = client.get_arg().resolve(0, URB_SIZE)
            raw = urb.retrieve()
            typ, ep = raw[0], raw[1]
            buflen = struct.unpack_from("<i", raw, OFF_BUFLEN)[0]
            buf = urb.resolve(OFF_BUFFER, buflen)
            if typ == TYPE_BULK and not (ep & 0x80):
                data = bytes(buf.retrieve())
                with self.lock:
                    ans = self.decoder.feed(data)
                    self.in_queue.extend(bytes([a]) for a in ans)
                self.finish(urb, 0, len(data))
                self.flush_in()
            elif typ == TYPE_BULK:
                with self.lock:
                    self.pending_in.append((urb, buf, buflen))
                self.flush_in()
            else:
                self.finish(urb, -32, 0)  # no control transfers: STALL
            client.complete(0, 0)
            return True
        if req in (REAPURB, REAPURBNDELAY):
            with self.lock:
                urb = self.done.pop(0) if self.done else None
            if urb is None:
                client.complete(-1, 11)  # EAGAIN
                return True
            client.get_arg().resolve(0, 8).set_ptr(0, urb)
            client.complete(0, 0)
            return True
        if req == DISCARDURB:
            addr = struct.unpack("<Q", bytes(client.get_arg().retrieve()[:8]))[0]
            with self.lock:
                hit = [p for p in self.pending_in if p[0].client_addr == addr]
                for p in hit:
                    self.pending_in.remove(p)
            if not hit:
                client.complete(-1, 22)
                return True
            self.finish(hit[0][0], -2, 0)
            client.complete(0, 0)
            return True
        return False


def main():
    lock = threading.Lock()
    status = Status()
    decoder = Decoder(status.answer)
    tb = UMockdev.Testbed.new()
    devfile = os.path.join(tb.get_root_dir(), "escpos-printer.umockdev")
    with open(devfile, "w") as f:
        f.write(DEVICE)
    state = {"dev": None}

    def plug():
        tb.add_from_file(devfile)
        state["dev"] = Printer(status, decoder, lock)
        tb.attach_ioctl(DEVNODE, state["dev"])
        time.sleep(0.3)  # the handler's listener starts asynchronously
        tb.uevent(SYSPATH, "add")

    def unplug():
        tb.uevent(SYSPATH, "remove")
        tb.detach_ioctl(DEVNODE)
        tb.remove_device(SYSPATH)
        state["dev"] = None

    plug()
    print("ROOT %s" % tb.get_root_dir(), flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "status":
            status.paper, status.cover_open, status.cutter_error = w[1], w[2] == "1", w[3] == "1"
            print("OK", flush=True)
        elif w[0] == "items":
            with lock:
                its = [{k: (v.hex() if isinstance(v, bytes) else v) for k, v in i.items()}
                       for i in decoder.items]
            print("ITEMS " + json.dumps(its), flush=True)
        elif w[0] == "errors":
            with lock:
                print("ERRORS " + json.dumps(decoder.errors), flush=True)
        elif w[0] == "queries":
            with lock:
                print("QUERIES %d" % len(decoder.queries), flush=True)
        elif w[0] == "unplug":
            unplug()
            print("OK", flush=True)
        elif w[0] == "plug":
            plug()
            print("OK", flush=True)
        elif w[0] == "quit":
            break
        else:
            print("ERR unknown command", flush=True)


if __name__ == "__main__":
    main()
