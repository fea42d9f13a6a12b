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
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
sys.path.insert(0, os.path.join(HERE, "..", "system", "usb"))
from escpos_decode import Decoder, Status  # noqa: E402
from usbdev import ScriptedDevice, Testbed  # noqa: E402

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

class Printer(ScriptedDevice):
    """The printer's firmware: bulk OUT goes through the decoder, whose
    answers to DLE EOT n go back one byte per bulk IN."""

    def __init__(self, decoder, lock, strings):
        super().__init__(strings)
        self.decoder = decoder
        self.dlock = lock

    def on_out(self, data):
        with self.dlock:
            return [bytes([a]) for a in self.decoder.feed(data)]


def main():
    lock = threading.Lock()
    status = Status()
    decoder = Decoder(status.answer)
    bed = Testbed(DEVICE, "escpos-printer.umockdev")

    def plug():
        bed.plug(Printer(decoder, lock, bed.strings))

    def unplug():
        bed.unplug()

    plug()
    print("ROOT %s" % bed.root, flush=True)
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
