"""--list-hardware and --udev-rules: both come from the plugins' match
tables, and systemd/70-kioskd.rules is exactly what the build generates
(never edited by hand)."""

import os
import shutil
import subprocess

import kiosk
from kiosk import REPO, run_kioskd

RULES = os.path.join(REPO, "systemd", "70-kioskd.rules")


class Run:
    def __init__(self, args):
        self.returncode, self.stdout, self.stderr = run_kioskd(args)


def plugins_dir(tmp_path, *names):
    d = tmp_path / "hal"
    d.mkdir()
    for n in names:
        shutil.copy(os.path.join(kiosk.TEST_PLUGINS, n + ".so"), d / (n + ".so"))
    return str(d)


def test_committed_rules_are_the_generated_ones():
    p = Run(["--udev-rules", "--plugin-path", os.path.join(kiosk.BUILD, "hal")])
    assert p.returncode == 0, p.stderr
    with open(RULES) as f:
        committed = f.read()
    assert committed == p.stdout, \
        "systemd/70-kioskd.rules is stale: run 'make udev-rules' and commit it"


def test_udev_rule_per_usb_match(tmp_path):
    p = Run(["--udev-rules", "--plugin-path", plugins_dir(tmp_path, "good_echo")])
    assert p.returncode == 0, p.stderr
    lines = [l for l in p.stdout.splitlines() if l and not l.startswith("#")]
    # a vid:pid entry, a vendor-wide entry; good_echo serves printers, so
    # the lp character devices of both too; the "sim" entry makes no rule
    assert ('SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_device", ATTR{idVendor}=="1234", '
            'ATTR{idProduct}=="5678", GROUP="kioskd", MODE="0660"') in lines
    assert ('SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_device", ATTR{idVendor}=="1d6b", '
            'GROUP="kioskd", MODE="0660"') in lines
    assert ('SUBSYSTEM=="usbmisc", KERNEL=="lp[0-9]*", ATTRS{idVendor}=="1234", '
            'ATTRS{idProduct}=="5678", GROUP="kioskd", MODE="0660"') in lines
    assert len(lines) == 4, lines
    assert "# good_echo: echo test printer" in p.stdout


def test_list_hardware_text(tmp_path):
    p = Run(["--list-hardware", "--plugin-path", plugins_dir(tmp_path, "good_echo")])
    assert p.returncode == 0, p.stderr
    assert "usb 1234:5678  echo test printer" in p.stdout
    assert "usb 1d6b:0000  (any product of the vendor)" in p.stdout
    assert "sim" in p.stdout and "echo test device" in p.stdout
    assert "loaded" not in p.stderr  # no log chatter on a listing


def test_broken_plugin_is_named_and_the_rest_listed(tmp_path):
    d = plugins_dir(tmp_path, "good_echo", "bad_magic")
    p = Run(["--list-hardware", "--plugin-path", d])
    assert p.returncode == 1
    assert "bad_magic.so" in p.stderr and "bad magic" in p.stderr
    assert "echo test printer" in p.stdout


def test_first_plugin_of_a_name_wins(tmp_path):
    a = plugins_dir(tmp_path, "good_echo")
    b = tmp_path / "other"
    b.mkdir()
    shutil.copy(os.path.join(a, "good_echo.so"), b / "good_echo.so")
    p = Run(["--list-hardware", "--plugin-path", "%s:%s" % (a, b)])
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("echo test printer") == 1


def test_make_udev_rules_target_regenerates(tmp_path):
    # the Makefile target writes what the test above compares against
    out = tmp_path / "rules"
    r = subprocess.run(["make", "-s", "-C", REPO, "BUILD=%s" % os.path.relpath(kiosk.BUILD, REPO),
                        "SAN=%d" % kiosk.SAN, "udev-rules", "UDEV_RULES=%s" % out],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(RULES) as f:
        assert out.read_text() == f.read()
