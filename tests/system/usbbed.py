"""Drive tests/system/usb/usbbed.py (a umockdev testbed with one scripted
USB device, run under umockdev-wrapper) from a test: plug, unplug, feed
bulk IN bytes, collect bulk OUT bytes; env() is what the daemon under test
needs to see the testbed instead of the real /sys and /dev."""

import os
import queue
import subprocess
import threading

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "usb")
SCRIPT = os.path.join(HERE, "usbbed.py")


class Bed:
    def __init__(self, description):
        self.proc = subprocess.Popen(
            ["umockdev-wrapper", "/usr/bin/python3", SCRIPT, os.path.join(HERE, description)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        first = self.proc.stdout.readline()
        if not first.startswith("DIR "):
            self.proc.kill()
            raise AssertionError("usbbed did not start: %r" % first)
        self.dir = first.split(" ", 1)[1].strip()
        self.answers = queue.Queue()
        self.out = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("OUT "):
                self.out.put(bytes.fromhex(line[4:]))
            else:
                self.answers.put(line)

    def cmd(self, line, timeout=10):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        a = self.answers.get(timeout=timeout)
        assert a == "ok", "usbbed %s: %s" % (line, a)

    def plug(self):
        self.cmd("add")

    def unplug(self):
        self.cmd("remove")

    def stall(self, on=True):
        self.cmd("stall " + ("on" if on else "off"))

    def bulk_out(self, timeout=5):
        return self.out.get(timeout=timeout)

    def env(self):
        asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
        return {"UMOCKDEV_DIR": self.dir, "LD_PRELOAD": "libumockdev-preload.so.0",
                # ASan wants to be first in the link order; the preload is not
                "ASAN_OPTIONS": asan + ":verify_asan_link_order=0"}

    def close(self):
        if self.proc.poll() is None:
            try:
                self.cmd("quit", timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
