"""A scripted USB device for umockdev testbeds: usbfs ioctls (URBs)
answered from Python, the way the kernel would for a real device.

ScriptedDevice answers control GET_DESCRIPTOR(STRING) from `strings`,
hands bulk OUT data to on_out() (whose answer the device sends on bulk
IN), keeps bulk IN pending until the device has data (a NAK), honours
DISCARDURB (libusb's cancel and timeouts), can stall bulk OUT, and after
unplug() fails everything with ENODEV as a vanished device does.

Testbed.plug()/unplug() get the order right: the ioctl handler is attached
before the device appears (a node opened before its handler is a dead
file), and stays attached after it is gone (umockdev aborts a client whose
handler vanished); the next plug() replaces it.  Needs umockdev-wrapper
around the process, or uevents cannot be sent."""

import re
import struct
import threading

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

SUBMITURB, REAPURB, REAPURBNDELAY, DISCARDURB = 0x8038550a, 0x4008550c, 0x4008550d, 0x0000550b
GET_CAPABILITIES = 0x8004551a
URB_SIZE, OFF_STATUS, OFF_BUFFER, OFF_BUFLEN, OFF_ACTLEN = 56, 4, 16, 24, 28
TYPE_CONTROL, TYPE_BULK = 2, 3
EAGAIN, EINVAL, ENOENT, EPIPE, ENODEV = 11, 22, 2, 32, 19


class ScriptedDevice(UMockdev.IoctlBase):
    def __init__(self, strings=None):
        super().__init__()
        self.lock = threading.Lock()
        self.strings = strings or {}
        self.done = []
        self.pending_in = []
        self.pending_out = []  # while stalled: OUT URBs the device does not take
        self.in_data = []
        self.stalled = False
        self.gone = False

    def on_out(self, data):
        """Bulk OUT data arrived: return a list of packets to send on bulk
        IN (each answers one IN transfer).  Runs on umockdev's thread."""
        return []

    # --- the device's side ---
    def push(self, *packets):
        with self.lock:
            self.in_data.extend(packets)
        self._flush_in()

    def stall(self, on):
        with self.lock:
            self.stalled = on

    def unplug(self):
        """What the kernel does to a vanished device's URBs: each
        completes with -ENODEV, and every new request fails."""
        with self.lock:
            self.gone = True
            hung = self.pending_in + self.pending_out
            self.pending_in, self.pending_out = [], []
        for urb, _buf, _len in hung:
            self._finish(urb, -ENODEV, 0)

    # --- usbfs ---
    def _finish(self, urb, status, actual):
        urb.update(OFF_STATUS, struct.pack("<i", status))
        urb.update(OFF_ACTLEN, struct.pack("<i", actual))
        with self.lock:
            self.done.append(urb)

    def _flush_in(self):
        while True:
            with self.lock:
                if not (self.pending_in and self.in_data):
                    return
                urb, buf, buflen = self.pending_in.pop(0)
                data = self.in_data.pop(0)[:buflen]
            buf.update(0, data)
            self._finish(urb, 0, len(data))

    def _control(self, setup):
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

    def _submit(self, client):
        urb = client.get_arg().resolve(0, URB_SIZE)
        raw = urb.retrieve()
        typ, ep = raw[0], raw[1]
        buflen = struct.unpack_from("<i", raw, OFF_BUFLEN)[0]
        buf = urb.resolve(OFF_BUFFER, buflen)
        if typ == TYPE_CONTROL:
            status, reply = self._control(bytes(buf.retrieve()[:8]))
            buf.update(8, reply)
            self._finish(urb, status, len(reply))
        elif typ == TYPE_BULK and not ep & 0x80:
            with self.lock:
                stalled = self.stalled
                if stalled:
                    self.pending_out.append((urb, buf, buflen))
            if not stalled:
                data = bytes(buf.retrieve())
                answer = self.on_out(data)
                self._finish(urb, 0, len(data))
                if answer:
                    self.push(*answer)
        else:
            with self.lock:
                self.pending_in.append((urb, buf, buflen))
            self._flush_in()

    def _discard(self, client):
        addr = struct.unpack("<Q", bytes(client.get_arg().retrieve()[:8]))[0]
        with self.lock:
            hit = [p for p in self.pending_in + self.pending_out if p[0].client_addr == addr]
            for p in hit:
                (self.pending_in if p in self.pending_in else self.pending_out).remove(p)
        if not hit:
            return False
        self._finish(hit[0][0], -ENOENT, 0)
        return True

    def do_handle_ioctl(self, client):
        req = client.get_request()
        if self.gone and req not in (REAPURB, REAPURBNDELAY):
            client.complete(-1, ENODEV)
        elif req == GET_CAPABILITIES:
            # BULK_CONTINUATION | NO_PACKET_SIZE_LIM
            client.get_arg().resolve(0, 4).update(0, struct.pack("<I", 0x06))
            client.complete(0, 0)
        elif req == SUBMITURB:
            self._submit(client)
            client.complete(0, 0)
        elif req in (REAPURB, REAPURBNDELAY):
            with self.lock:
                urb = self.done.pop(0) if self.done else None
                gone = self.gone
            if urb is None:
                client.complete(-1, ENODEV if gone else EAGAIN)
            else:
                client.get_arg().resolve(0, 8).set_ptr(0, urb)
                client.complete(0, 0)
        elif req == DISCARDURB:
            if self._discard(client):
                client.complete(0, 0)
            else:
                client.complete(-1, EINVAL)
        else:
            return False  # CLAIMINTERFACE, ...: umockdev's stateless defaults
        return True


def description_strings(text):
    """The string descriptors of a .umockdev description (its A:
    manufacturer / product / serial lines)."""
    strings = {}
    for idx, key in ((1, "manufacturer"), (2, "product"), (3, "serial")):
        m = re.search(r"^A: %s=(.*?)(\\n)?$" % key, text, re.M)
        if m:
            strings[idx] = m.group(1)
    return strings


class Testbed:
    """One device of a .umockdev description (text) in a new testbed."""

    def __init__(self, description, devfile_name="device.umockdev"):
        self.tb = UMockdev.Testbed.new()
        self.root = self.tb.get_root_dir()
        self.syspath = "/sys" + re.search(r"^P: (.*)$", description, re.M).group(1)
        self.devnode = re.search(r"^E: DEVNAME=(.*)$", description, re.M).group(1)
        self.strings = description_strings(description)
        self.devfile = "%s/%s" % (self.root, devfile_name)
        with open(self.devfile, "w") as f:
            f.write(description)
        self.attached = None
        self.dev = None

    def plug(self, dev):
        if self.attached:
            self.tb.detach_ioctl(self.devnode)
        self.tb.attach_ioctl(self.devnode, dev)
        self.attached = self.dev = dev
        self.tb.add_from_file(self.devfile)  # sends the "add" uevent itself

    def unplug(self):
        self.dev.unplug()
        self.tb.uevent(self.syspath, "remove")
        self.tb.remove_device(self.syspath)
        self.dev = None
