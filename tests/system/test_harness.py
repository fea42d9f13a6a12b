"""The harness itself: sanitizer reports are caught, sanitizer options
reach the daemon, and a daemon that dies is noticed."""

import os
import signal

import pytest

from kiosk import Daemon, assert_no_sanitizer


@pytest.mark.parametrize("text", [
    "==123==ERROR: AddressSanitizer: heap-use-after-free on address 0x1",
    "src/ipc.c:10:5: runtime error: signed integer overflow",
    "==9==ERROR: LeakSanitizer: detected memory leaks",
])
def test_sanitizer_reports_are_caught(text):
    with pytest.raises(AssertionError):
        assert_no_sanitizer("2026-01-01 kioskd info: ready\n" + text + "\n")
    assert_no_sanitizer("2026-01-01 kioskd info: ready\n")


def test_sanitizer_options_pass_through(kd):
    d = kd("")
    with open("/proc/%d/environ" % d.pid, "rb") as f:
        env = dict(x.split(b"=", 1) for x in f.read().split(b"\0") if b"=" in x)
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        want = os.environ.get(k)
        if want is not None:
            assert env[k.encode()] == want.encode()
        else:
            assert k.encode() in env
    assert env[b"NOTIFY_SOCKET"] == d.notify_path.encode()
    for k in (b"WATCHDOG_USEC", b"LISTEN_FDS", b"JOURNAL_STREAM"):
        assert k not in env


def test_a_crash_is_noticed(kd):
    d = Daemon("")
    try:
        d.start()
        d.proc.send_signal(signal.SIGKILL)
        with pytest.raises(AssertionError):
            d.stop()
    finally:
        d.cleanup()
