#!/usr/bin/python3
"""A umockdev testbed with one scripted USB device, driven over stdin.

    umockdev-wrapper /usr/bin/python3 usbbed.py DEVICE.umockdev

Prints "DIR <testbed root>" once it is up: run the program under test with
UMOCKDEV_DIR=<root> and LD_PRELOAD=libumockdev-preload.so.0.  Then reads
commands, one per line, and answers each with "ok" (or "error <why>"):

    add              plug the device in
    remove           unplug it
    in HEX           bytes the device sends on its next bulk IN
    stall on|off     bulk OUT transfers hang (until cancelled) / complete
    quit

Every bulk OUT transfer the host makes is printed as "OUT <hex>".  String
descriptors answer from the A: manufacturer / product / serial lines of
the description (usbdev.py does the usbfs side).
"""

import os
import sys
import threading

from usbdev import ScriptedDevice, Testbed

out_lock = threading.Lock()


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Recorder(ScriptedDevice):
    def on_out(self, data):
        say("OUT " + data.hex())
        return []


def run(bed, cmd, arg):
    if cmd == "add":
        bed.plug(Recorder(bed.strings))
    elif cmd == "remove":
        bed.unplug()
    elif cmd in ("in", "stall") and bed.dev is None:
        raise RuntimeError("no device plugged in")
    elif cmd == "in":
        bed.dev.push(bytes.fromhex(arg))
    elif cmd == "stall":
        bed.dev.stall(arg == "on")
    else:
        raise RuntimeError("unknown command %r" % cmd)


def main():
    if "libumockdev-preload" not in os.environ.get("LD_PRELOAD", ""):
        print("usbbed.py: run me under umockdev-wrapper", file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        bed = Testbed(f.read())
    say("DIR " + bed.root)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "quit":
            say("ok")
            return 0
        try:
            run(bed, cmd, arg)
            say("ok")
        except Exception as e:  # report and go on: the test decides
            say("error %s" % e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
