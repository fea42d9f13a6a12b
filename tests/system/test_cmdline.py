"""The fixed command-line points (PROTOCOL.md) and the daemon's lifecycle
under systemd: sd_notify READY/STOPPING/WATCHDOG, journald priority
prefixes, directories from the environment, a second daemon, signals."""

import os
import re
import signal
import time

import pytest

import kiosk
from kiosk import SLOW, Client, Daemon, daemon_section, run_kioskd, sim_device, wait_until


def makefile_version():
    with open(os.path.join(kiosk.REPO, "Makefile")) as f:
        m = re.search(r"^VERSION\s*:?=\s*(\S+)", f.read(), re.M)
    return m.group(1)


@pytest.mark.parametrize("opt", ["--version", "-V"])
def test_version(opt):
    rc, out, err = run_kioskd([opt])
    assert rc == 0
    v = makefile_version()
    assert re.fullmatch(r"kioskd %s \(plugin ABI \d+\.\d+\)\n" % re.escape(v), out), out
    assert err == ""


def test_version_matches_hello(kd):
    d = kd("")
    assert d.client().ok("hello")["version"] == makefile_version()


@pytest.mark.parametrize("opt", ["--help", "-h"])
def test_help(opt):
    rc, out, err = run_kioskd([opt])
    assert rc == 0
    assert out.startswith("usage: kioskd")
    for o in ("--config", "--runtime-dir", "--state-dir", "--check-config", "--version"):
        assert o in out
    assert err == ""


@pytest.mark.parametrize("args", [["--bogus"], ["-x"], ["--config"], ["extra-arg"],
                                  ["--version=3"], ["--runtime-dir"]])
def test_usage_errors_exit_2(args):
    rc, out, err = run_kioskd(args)
    assert rc == 2, (rc, out, err)
    assert "usage: kioskd" in err
    assert out == ""


def test_dirs_from_systemd_environment(kd):
    base = kd(start=False)
    rt = os.path.join(base.tmp, "rtdir")
    st = os.path.join(base.tmp, "stdir")
    d = kd(daemon_section() + sim_device("scanner0", "scanner", latency_ms=0),
           runtime_dir=False, state_dir=False,
           env={"RUNTIME_DIRECTORY": rt + ":" + rt + "-second",
                "STATE_DIRECTORY": st + ":" + st + "-second"})
    assert os.path.exists(os.path.join(rt, "ui.sock"))
    assert os.path.exists(os.path.join(rt, "admin.sock"))
    assert not os.path.exists(rt + "-second")
    with Client(os.path.join(rt, "admin.sock")) as c:
        assert c.ok("hello")["role"] == "admin"
        res = c.ok("scanner.scan", args={"resolution": 50}, timeout=20)
    assert os.path.isdir(os.path.join(st, "blobs"))
    assert len(os.listdir(os.path.join(st, "blobs"))) >= 1
    assert not os.path.exists(rt + "-second") and not os.path.exists(st + "-second")
    d.stop()
    # sockets are removed on a clean stop
    assert not os.path.exists(os.path.join(rt, "ui.sock"))


def test_command_line_beats_config_beats_environment(kd):
    base = kd(start=False)
    env_rt = os.path.join(base.tmp, "env-rt")
    conf_rt = os.path.join(base.tmp, "conf-rt")
    # config over environment
    d = kd(daemon_section(runtime_dir=conf_rt), runtime_dir=False,
           env={"RUNTIME_DIRECTORY": env_rt})
    assert os.path.exists(os.path.join(conf_rt, "ui.sock"))
    assert not os.path.exists(env_rt)
    d.stop()
    # command line over both
    d = kd(daemon_section(runtime_dir=conf_rt), env={"RUNTIME_DIRECTORY": env_rt})
    assert os.path.exists(d.ui_sock)
    assert not os.path.exists(os.path.join(conf_rt, "ui.sock"))
    assert not os.path.exists(env_rt)


def test_second_daemon_on_same_runtime_dir_refuses(kd):
    d1 = kd(daemon_section() + sim_device("locker0", "locker", latency_ms=0))
    c = d1.client()
    c.ok("hello")
    d2 = Daemon(daemon_section(), tmp=None)
    d2.run_dir = d1.run_dir
    try:
        d2.start(wait_ready=False)
        rc = d2.wait_exit()
        assert rc != 0
        assert "already listening" in d2.log(), d2.log()
        assert "READY=1" not in d2.notify_lines()
        d2.check_log()
    finally:
        d2.cleanup(keep=False)
    # the first keeps serving, on the same sockets
    assert os.path.exists(d1.ui_sock) and os.path.exists(d1.admin_sock)
    c.ok("locker.open", args={"door": 1})
    with Client(d1.ui_sock) as c2:
        c2.ok("hello")
    with Client(d1.admin_sock) as c3:
        assert c3.ok("hello")["role"] == "admin"


def test_stale_sockets_are_replaced(kd):
    d1 = kd("")
    d1.proc.kill()
    d1.proc.wait()
    assert os.path.exists(d1.ui_sock)  # left behind by kill -9
    d2 = Daemon("", tmp=None)
    d2.run_dir = d1.run_dir
    try:
        d2.start()
        with Client(d1.ui_sock) as c:
            c.ok("hello")
        d2.stop()
    finally:
        d2.cleanup()


def test_ready_then_stopping(kd):
    d = kd("")
    lines = d.notify_lines()
    assert lines[0] == "READY=1", lines
    assert any(l.startswith("STATUS=") for l in lines)
    d.stop()
    lines = d.notify_lines()
    assert "STOPPING=1" in lines
    assert lines.index("STOPPING=1") > lines.index("READY=1")
    assert "stopped" in d.log()


def test_sigint_stops_cleanly(kd):
    d = kd("")
    d.signal(signal.SIGINT)
    assert d.wait_exit() == 0
    assert "STOPPING=1" in d.notify_lines()


def test_watchdog_pings(kd):
    d = kd("", env={"WATCHDOG_USEC": "200000"})
    t0 = time.monotonic()
    wait_until(lambda: d.notify_lines().count("WATCHDOG=1") >= 4, 3, "4 watchdog pings")
    took = time.monotonic() - t0
    # every 100 ms: four pings take about 0.3-0.4 s, not seconds
    assert took < 1.0 * SLOW, took
    assert d.log_lines("watchdog: pinging every 100 ms")


def test_watchdog_for_another_pid_is_ignored(kd):
    d = kd("", env={"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
    time.sleep(0.3)
    assert "WATCHDOG=1" not in d.notify_lines()


def test_watchdog_pid_matching(kd):
    """WATCHDOG_PID equal to the daemon's pid: exec it through a shell that
    sets WATCHDOG_PID=$$ before exec, so the pid is the daemon's."""
    d = kd("", start=False, env={"WATCHDOG_USEC": "200000"})
    argv = d.argv()
    d.argv = lambda: ["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh"] + argv
    d.start()
    wait_until(lambda: d.notify_lines().count("WATCHDOG=1") >= 3, 3, "watchdog pings")


def test_journal_stream_priority_prefixes(kd):
    conf = (daemon_section(log_level="info")
            + "[device broken0]\nclass = printer\nplugin = nosuchplugin\n\n"
            + sim_device("printer0", "printer"))
    d = kd(conf, env={"JOURNAL_STREAM": "auto"})
    d.client().ok("hello")
    d.stop()
    lines = [l for l in d.log().splitlines() if l]
    assert lines
    bad = [l for l in lines if not re.match(r"<[0-7]>", l)]
    assert not bad, bad
    assert any(l.startswith("<6>") for l in lines)
    assert any(l.startswith("<4>") and "broken0" in l for l in lines)
    assert any(l.startswith("<3>") and "nosuchplugin" in l for l in lines)
    # no timestamps: journald adds its own
    assert not any(re.match(r"<\d>\d{4}-\d\d-\d\dT", l) for l in lines)


def test_no_prefixes_when_stderr_is_not_the_journal(kd):
    d = kd("", env={"JOURNAL_STREAM": "1:2"})
    d.stop()
    lines = [l for l in d.log().splitlines() if l]
    assert lines and not any(l.startswith("<") for l in lines)
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z kioskd \w+: ", l)
               for l in lines), lines


def test_sigterm_with_command_in_flight_gets_final_reply(kd):
    d = kd(daemon_section() + sim_device("card0", "cardreader", latency_ms=0)
           + sim_device("audio0", "audio", latency_ms=0))
    c = d.client()
    wid = c.request("cardreader.wait", timeout_ms=60000)
    rid = c.request("audio.record", args={"duration_ms": 10000})
    c.drain(0.1)
    assert d.device("card0")["state"] == "busy"
    d.signal(signal.SIGTERM)
    msgs = c.expect_eof(timeout=5)
    finals = {m["id"]: m for m in msgs if "ok" in m}
    assert set(finals) == {wid, rid}, msgs
    for m in finals.values():
        assert m["ok"] is False
        assert m["error"]["code"] in ("cancelled", "device_offline"), m
    assert d.wait_exit() == 0
    d.check_log()


def test_runtime_dir_path_too_long(kd):
    d = kd("", start=False)
    d.run_dir = os.path.join(d.tmp, "r" * 120)
    d.start(wait_ready=False)
    assert d.wait_exit() == 1
    assert "too long" in d.log(), d.log()
    assert "READY=1" not in d.notify_lines()
    # nothing was bound at a truncated path beside the runtime directory
    stray = [f for f in os.listdir(d.tmp) if f.startswith("rrr") and f != "r" * 120]
    assert stray == [], stray


def test_state_dir_cannot_be_created(kd):
    d = kd("", start=False)
    with open(os.path.join(d.tmp, "afile"), "w") as f:
        f.write("x")
    d.state_dir = os.path.join(d.tmp, "afile", "state")
    d.start(wait_ready=False)
    assert d.wait_exit() == 1
    assert "cannot create state directory" in d.log()
    assert not os.path.exists(d.ui_sock)
