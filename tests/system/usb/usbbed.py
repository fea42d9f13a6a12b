#!/usr/bin/python3
"""A umockdev testbed with one scripted USB device, driven over stdin.

    umockdev-wrapper /usr/bin/python3 usbbed.py DEVICE.umockdev

Prints "DIR <testbed root>" once it is up: run the program under test with
UMOCKDEV_DIR=<root> and LD_PRELOAD=libumockdev-preload.so.0.  Then reads
commands, one per line, and answers each with "ok" (or "error <why>"):

    add              plug the device in (ioctl handler, sysfs, /dev node, "add")
    remove           unplug it (uevent "remove", node gone)
    in HEX           bytes the device sends on its next bulk IN
    stall on|off     bulk OUT transfers hang (until cancelled) / complete
    quit

Every bulk OUT transfer the host makes is printed as "OUT <hex>".  String
descriptors (control GET_DESCRIPTOR) answer from the A: manufacturer /
product / serial lines of the description.  Must run under
umockdev-wrapper, or uevents cannot be sent.
"""

import os
import re
import struct
import sys
import threading

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

SUBMITURB, REAPURB, REAPURBNDELAY, DISCARDURB = 0x8038550a, 0x4008550c, 0x4008550d, 0x0000550b
GET_CAPABILITIES = 0x8004551a
URB_SIZE, OFF_STATUS, OFF_BUFFER, OFF_BUFLEN, OFF_ACTLEN = 56, 4, 16, 24, 28
TYPE_CONTROL, TYPE_BULK = 2, 3
EAGAIN, EINVAL, ENOENT, EPIPE, ENODEV = 11, 22, 2, 32, 19

out_lock = threading.Lock()


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Device(UMockdev.IoctlBase):
    def __init__(self, strings):
        super().__init__()
        self.lock = threading.Lock()
        self.strings = strings
        self.done = []
        self.pending_in = []
        self.pending_out = []  # while stalled: OUT URBs the device does not take
        self.in_data = []
        self.stalled = False
        self.gone = False  # unplugged: every ioctl fails with ENODEV

    def finish(self, urb, status, actual):
        urb.update(OFF_STATUS, struct.pack("<i", status))
        urb.update(OFF_ACTLEN, struct.pack("<i", actual))
        with self.lock:
            self.done.append(urb)

    def flush_in(self):
        while True:
            with self.lock:
                if not (self.pending_in and self.in_data):
                    return
                urb, buf, buflen = self.pending_in.pop(0)
                data = self.in_data.pop(0)[:buflen]
            buf.update(0, data)
            self.finish(urb, 0, len(data))

    def push(self, data):
        with self.lock:
            self.in_data.append(data)
        self.flush_in()

    def control(self, setup):
        rtype, req, value, _index, length = struct.unpack("<BBHHH", setup)
        if rtype == 0x80 and req == 6 and value >> 8 == 3:
            idx = value & 0xff
            if idx == 0:
                d = b"\x04\x03\x09\x04"
            else:
                s = self.strings.get(idx, "").encode("utf-16-le")
                d = bytes([2 + len(s), 3]) + s
            return 0, d[:length]
        return -EPIPE, b""

    def unplug(self):
        """What the kernel does to a vanished device's URBs: each
        completes with -ENODEV, and every new request fails."""
        with self.lock:
            self.gone = True
            hung = self.pending_in + self.pending_out
            self.pending_in, self.pending_out = [], []
        for urb, _buf, _len in hung:
            self.finish(urb, -ENODEV, 0)

    def stall(self, on):
        with self.lock:
            self.stalled = on

    def do_handle_ioctl(self, client):
        req = client.get_request()
        if self.gone and req not in (REAPURB, REAPURBNDELAY):
            client.complete(-1, ENODEV)
            return True
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
            if typ == TYPE_CONTROL:
                status, reply = self.control(bytes(buf.retrieve()[:8]))
                buf.update(8, reply)
                self.finish(urb, status, len(reply))
            elif typ == TYPE_BULK and not ep & 0x80:
                with self.lock:
                    stalled = self.stalled
                    if stalled:
                        self.pending_out.append((urb, buf, buflen))
                if not stalled:
                    data = bytes(buf.retrieve())
                    say("OUT " + data.hex())
                    self.finish(urb, 0, len(data))
            else:
                with self.lock:
                    self.pending_in.append((urb, buf, buflen))
                self.flush_in()
            client.complete(0, 0)
            return True
        if req in (REAPURB, REAPURBNDELAY):
            with self.lock:
                urb = self.done.pop(0) if self.done else None
                gone = self.gone
            if urb is None:
                client.complete(-1, ENODEV if gone else EAGAIN)
                return True
            client.get_arg().resolve(0, 8).set_ptr(0, urb)
            client.complete(0, 0)
            return True
        if req == DISCARDURB:
            addr = struct.unpack("<Q", bytes(client.get_arg().retrieve()[:8]))[0]
            with self.lock:
                hit = [p for p in self.pending_in + self.pending_out
                       if p[0].client_addr == addr]
                for p in hit:
                    (self.pending_in if p in self.pending_in else self.pending_out).remove(p)
            if not hit:
                client.complete(-1, EINVAL)
                return True
            self.finish(hit[0][0], -ENOENT, 0)
            client.complete(0, 0)
            return True
        return False


def description(path):
    with open(path) as f:
        text = f.read()
    syspath = re.search(r"^P: (.*)$", text, re.M).group(1)
    devnode = "/dev/" + re.search(r"^E: DEVNAME=/dev/(.*)$", text, re.M).group(1)
    strings = {}
    for idx, key in ((1, "manufacturer"), (2, "product"), (3, "serial")):
        m = re.search(r"^A: %s=(.*?)(\\n)?$" % key, text, re.M)
        if m:
            strings[idx] = m.group(1)
    return "/sys" + syspath, devnode, strings


def main():
    pl = os.environ.get("LD_PRELOAD", "")
    if "libumockdev-preload" not in pl:
        print("usbbed.py: run me under umockdev-wrapper", file=sys.stderr)
        return 2
    path = os.path.abspath(sys.argv[1])
    syspath, devnode, strings = description(path)
    tb = UMockdev.Testbed.new()
    dev = attached = None
    say("DIR " + tb.get_root_dir())
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        try:
            if cmd == "add":
                # the ioctl handler first: the daemon opens the node as
                # soon as it learns of the device, and a node opened
                # before its handler is there stays a dead file
                if attached:
                    tb.detach_ioctl(devnode)
                dev = Device(strings)
                tb.attach_ioctl(devnode, dev)
                attached = dev
                tb.add_from_file(path)  # sends the "add" uevent itself
            elif cmd == "remove":
                # the handler stays attached, answering ENODEV like a
                # vanished device (umockdev aborts a client whose handler
                # is gone): detached at the next add
                dev.unplug()
                tb.uevent(syspath, "remove")
                tb.remove_device(syspath)
                dev = None
            elif cmd == "stall":
                if dev is None:
                    raise RuntimeError("no device plugged in")
                dev.stall(arg == "on")
            elif cmd == "in":
                if dev is None:
                    raise RuntimeError("no device plugged in")
                dev.push(bytes.fromhex(arg))
            elif cmd == "quit":
                say("ok")
                return 0
            else:
                raise RuntimeError("unknown command %r" % cmd)
            say("ok")
        except Exception as e:  # report and go on: the test decides
            say("error %s" % e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
