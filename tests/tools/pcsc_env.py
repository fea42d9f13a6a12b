"""A private PC/SC stack for the pcsc plugin's tests and benchmark: a real
pcscd with the vsmartcard vpcd reader driver, and tests/tools/vcard (our
virtual SLE4442 / MIFARE Classic card) as the card.

pcscd 1.9.9 always serves /run/pcscd/pcscd.comm and vpcd listens on all
addresses, so pcscd runs in its own mount and network namespaces
(`unshare -mn`): a directory of ours is bind-mounted on /run/pcscd there,
so its socket shows up in our directory, where clients (kioskd, the bench
client) reach it through PCSCLITE_CSOCK_NAME, which libpcsclite honours;
and vpcd's port exists only on the namespace's own loopback, where each
card process joins it (`nsenter -n`).  Nothing is shared with a system
pcscd or another test run.  Needs root (namespaces).
"""

import os
import signal
import subprocess
import time

READER = "Kiosk Test Reader 00 00"
PORT = 40000  # inside the private network namespace only


class PcscEnv:
    def __init__(self, tmp, build):
        self.tmp = tmp
        self.vcard = os.path.join(build, "tests", "tools", "vcard")
        self.run = os.path.join(tmp, "pcscd-run")
        self.readers = os.path.join(tmp, "readers.d")
        self.log_path = os.path.join(tmp, "pcscd.log")
        self.pcscd = None
        self.card = None
        self.card_log = None

    @property
    def socket(self):
        return os.path.join(self.run, "pcscd.comm")

    @property
    def env(self):
        """Environment for a PC/SC client of this pcscd."""
        return {"PCSCLITE_CSOCK_NAME": self.socket}

    def start(self, timeout=10.0):
        os.makedirs(self.run, exist_ok=True)
        os.makedirs(self.readers, exist_ok=True)
        os.makedirs("/run/pcscd", exist_ok=True)  # the mount point (stays empty here)
        with open(os.path.join(self.readers, "vpcd"), "w") as f:
            f.write('FRIENDLYNAME "Kiosk Test Reader"\n'
                    "DEVICENAME   /dev/null:0x%X\n"
                    "LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so\n"
                    "CHANNELID    0x%X\n" % (PORT, PORT))
        script = ("ip link set lo up && mount --bind %s /run/pcscd && exec pcscd -f -c %s"
                  % (self.run, self.readers))
        self.log = open(self.log_path, "ab")
        self.pcscd = subprocess.Popen(
            ["unshare", "-mn", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        end = time.monotonic() + timeout
        while not os.path.exists(self.socket):
            if self.pcscd.poll() is not None or time.monotonic() > end:
                raise AssertionError("pcscd did not start: %s" % self.pcscd_log())
            time.sleep(0.02)
        return self

    def pcscd_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def insert(self, type="sle4442", state=None, **opts):
        """Start the card: --opt value for every keyword (die_after=2 ->
        --die-after 2).  Returns the card's Popen."""
        assert self.card is None or self.card.poll() is not None, "a card is in already"
        argv = ["nsenter", "-t", str(self.pcscd.pid), "-n", self.vcard, "--port", str(PORT),
                "--type", type]
        if state:
            argv += ["--state", state]
        for k, v in opts.items():
            argv += ["--" + k.replace("_", "-"), str(v)]
        self.card_log = open(os.path.join(self.tmp, "vcard.log"), "ab")
        self.card = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.card_log,
                                     stderr=self.card_log)
        return self.card

    def remove(self, timeout=5.0):
        """Pull the card (kill its process)."""
        if self.card and self.card.poll() is None:
            self.card.send_signal(signal.SIGTERM)
            self.card.wait(timeout)
        self.card = None

    def stop(self):
        self.remove()
        if self.pcscd and self.pcscd.poll() is None:
            self.pcscd.send_signal(signal.SIGTERM)
            try:
                self.pcscd.wait(10)
            except subprocess.TimeoutExpired:
                self.pcscd.kill()
                self.pcscd.wait()
        self.pcscd = None
        if self.card_log:
            self.card_log.close()
        if getattr(self, "log", None):
            self.log.close()
