"""Plugin faults driven through sim.inject: fail_next, hang_next (timeout,
then the cancel grace period, offline and reopen), unplug / replug."""

import signal
import time

import pytest

from kiosk import SLOW, daemon_section, sim_device

GRACE_MS = 200
CONF = (daemon_section(cancel_grace_ms=GRACE_MS, reopen_min_ms=50, reopen_max_ms=400,
                       log_level="info")
        + sim_device("card0", "cardreader", latency_ms=0)
        + sim_device("printer0", "printer", latency_ms=5)
        + sim_device("locker0", "locker", latency_ms=0, doors=8))

RECEIPT = {"blocks": [{"text": "hello"}, {"cut": True}]}


@pytest.mark.parametrize("code", ["device_error", "device_busy", "storage_full", "timeout",
                                  "remote_unavailable"])
def test_fail_next(kd, code):
    d = kd(CONF)
    a = d.admin()
    ui = d.client()
    r = a.ok("sim.inject", "printer0", {"what": "fail_next", "code": code, "message": "boom 42"})
    assert r["next_fault"] == code
    # status does not consume the fault
    assert ui.ok("printer.status")["next_fault"] == code
    e = ui.err("printer.print", args=RECEIPT)
    assert e["code"] == code
    assert "boom 42" in e["message"]
    # only the next command: the one after works
    assert ui.call("printer.print", args=RECEIPT)["ok"] is True
    assert d.device("printer0")["state"] == "ready"


def test_fail_next_default_and_bad_code(kd):
    d = kd(CONF)
    a = d.admin()
    a.ok("sim.inject", "locker0", {"what": "fail_next"})
    assert d.client().err("locker.open", args={"door": 1})["code"] == "device_error"
    # codes only the core may give are refused
    for bad in ("unknown_command", "not_permitted", "too_large", "nonsense"):
        assert a.err("sim.inject", "locker0", {"what": "fail_next", "code": bad})["code"] == \
            "bad_request"


def test_hang_next_timeout_then_offline_then_ready(kd):
    d = kd(CONF)
    a = d.admin()
    ev = d.client()
    ev.ok("events.subscribe", args={"topics": ["device.*"]})
    ui = d.client()
    a.ok("sim.inject", "printer0", {"what": "hang_next"})
    t0 = time.monotonic()
    hid = ui.request("printer.print", args=RECEIPT, timeout_ms=300)
    r = ui.reply(hid, timeout=3)
    took = time.monotonic() - t0
    assert r["ok"] is False and r["error"]["code"] == "timeout", r
    assert 0.28 <= took < 1.5 * SLOW, took
    # a command queued behind the hung one
    qid = ui.request("printer.print", args=RECEIPT, timeout_ms=10000)
    # within the grace period the device is still busy with the hung command
    assert d.device("printer0")["state"] == "busy"
    off = ev.event("device.state", "printer0", lambda m: m["data"]["state"] == "offline",
                   timeout=3)
    t_off = time.monotonic() - t0
    assert off["data"]["reason"] == "command did not finish after cancel"
    assert off["data"]["previous"] == "busy"
    assert t_off >= 0.3 + GRACE_MS / 1000 - 0.03, t_off
    # the queued command is not lost: it gets a final answer
    r = ui.reply(qid, timeout=3)
    assert r["ok"] is False and r["error"]["code"] == "device_offline", r
    ev.event("device.state", "printer0", lambda m: m["data"]["state"] == "opening", timeout=3)
    ev.event("device.state", "printer0", lambda m: m["data"]["state"] == "ready", timeout=3)
    assert d.device("printer0")["state"] == "ready"
    assert ui.call("printer.print", args=RECEIPT)["ok"] is True
    assert d.log_lines(r"printer0: plugin did not finish a cancelled printer.print")
    # other devices were not disturbed
    assert not [m for m in ev.events if m["device"] != "printer0"]


def test_hang_next_then_cancel(kd):
    d = kd(CONF)
    a = d.admin()
    ui = d.client()
    a.ok("sim.inject", "card0", {"what": "hang_next"})
    hid = ui.request("cardreader.read", args={"length": 4}, timeout_ms=60000)
    ui.drain(0.05)
    r = ui.ok("cancel", args={"target": hid})
    assert r["cancelled"] is True
    r = ui.reply(hid)
    assert r["error"]["code"] == "cancelled"
    d.wait_state("card0", "ready", timeout=3)
    st = d.device("card0")
    assert "reason" not in st or st["reason"] == ""


def test_unplug_fails_running_and_queued_then_replug(kd):
    d = kd(CONF)
    a = d.admin()
    ev = d.client()
    ev.ok("events.subscribe", args={"topics": ["device.state"]})
    ui = d.client()
    wid = ui.request("cardreader.wait", timeout_ms=30000)
    qid = ui.request("cardreader.eject")
    q2 = ui.request("cardreader.read", args={"length": 1})
    ui.drain(0.05)
    assert ui.inbox == []
    a.ok("sim.inject", "card0", {"what": "unplug"})
    for i in (wid, qid, q2):
        r = ui.reply(i, timeout=2)
        assert r["ok"] is False and r["error"]["code"] == "device_offline", r
    off = ev.event("device.state", "card0", lambda m: m["data"]["state"] == "offline")
    assert "unplugged" in off["data"]["reason"]
    st = d.device("card0")
    assert st["state"] in ("offline", "opening") and st.get("reason"), st
    # new commands are refused at once while it is away
    e = ui.err("cardreader.status", timeout=1)
    assert e["code"] == "device_offline"
    # reopen attempts keep failing while unplugged
    ev.event("device.state", "card0",
             lambda m: m["data"]["state"] == "offline" and "not connected" in m["data"]["reason"],
             timeout=3)
    assert d.device("card0")["state"] == "offline"
    a.ok("sim.inject", "card0", {"what": "replug"})
    d.wait_state("card0", "ready", timeout=2)
    assert ui.ok("cardreader.status") is not None
    # the other devices never moved
    assert not [m for m in ev.events if m["device"] != "card0"]
    assert d.log_lines(r"device card0: offline: unplugged")


def test_inject_on_non_simulator(kd):
    import kiosk
    d = kd(daemon_section(plugin_path=kiosk.TEST_PLUGINS)
           + "[device echo0]\nclass = printer\nplugin = good_echo\n\n")
    e = d.admin().err("sim.inject", "echo0", {"what": "fail_next"})
    assert e["code"] == "bad_request"
    assert "not a simulator" in e["message"]


def _scan_then(d, action):
    """Start a feeder scan of big pages (each encoded on a worker thread),
    wait for the first page, then `action()` while the next is encoding."""
    ui = d.client()
    sid = ui.request("scanner.scan", args={"source": "adf", "pages": 5, "resolution": 1200,
                                           "mode": "color"}, timeout_ms=60000)
    ui.wait_msg(lambda m: "progress" in m and m["id"] == sid, timeout=20)
    action()
    return ui, sid


SCAN_CONF = daemon_section(reopen_min_ms=50) + sim_device("scanner0", "scanner", latency_ms=0,
                                                          adf_pages=20)


def test_reload_while_a_worker_job_runs(kd):
    """The device is reconfigured while its plugin has a job on the worker
    pool: the client gets device_offline at once; the job's late completion
    must not touch the freed request (ASan), and the new instance serves."""
    d = kd(SCAN_CONF)
    a = d.admin()

    def reload():
        d.write_conf(SCAN_CONF.replace("adf_pages = 20", "adf_pages = 30"))
        assert a.ok("config.reload")["changed"] == ["scanner0"]

    ui, sid = _scan_then(d, reload)
    r = ui.reply(sid, timeout=10)
    assert r["ok"] is False and r["error"]["code"] == "device_offline", r
    time.sleep(1.0 * SLOW)  # let the orphaned job finish
    assert d.proc.poll() is None, d.log()
    d.wait_state("scanner0", "ready")
    assert ui.ok("scanner.status")["adf_pages"] == 30
    d.stop()


def test_timeout_while_a_worker_job_runs(kd):
    """A timeout with a worker job in flight: the plugin is asked to cancel,
    the late job completion is ignored and the device serves again."""
    d = kd(daemon_section(cancel_grace_ms=10, reopen_min_ms=50)
           + sim_device("scanner0", "scanner", latency_ms=0, adf_pages=20))
    ui = d.client()
    r = ui.call("scanner.scan", args={"source": "adf", "pages": 5, "resolution": 1200,
                                      "mode": "color"}, timeout_ms=50, timeout=20)
    assert r["error"]["code"] == "timeout", r
    time.sleep(1.0 * SLOW)
    assert d.proc.poll() is None, d.log()
    d.wait_state("scanner0", "ready")
    assert ui.call("scanner.status")["ok"] is True
    d.stop()


def test_sigterm_while_a_worker_job_runs(kd):
    d = kd(SCAN_CONF)
    ui, sid = _scan_then(d, lambda: d.signal(signal.SIGTERM))
    assert d.wait_exit() == 0, d.log()
    d.check_log()


def test_reopen_backs_off(kd):
    """An unplugged device is retried with exponential backoff (20 ms doubling
    to 160 ms, full jitter), not in a tight loop and not never; a replug
    brings it back at once."""
    d = kd(daemon_section(reopen_min_ms=20, reopen_max_ms=160)
           + sim_device("card0", "cardreader", latency_ms=0))
    ev = d.client()
    ev.ok("events.subscribe", args={"topics": ["device.state"]})
    a = d.admin()
    a.ok("sim.inject", "card0", {"what": "unplug"})
    time.sleep(0.6)
    ev.drain(0.01)
    opens = [e for e in ev.events if e["data"]["state"] == "opening"]
    assert 4 <= len(opens) <= 14, len(opens)
    assert d.device("card0")["state"] == "offline"
    ev.events.clear()
    a.ok("sim.inject", "card0", {"what": "replug"})
    d.wait_state("card0", "ready", timeout=0.5)
    # replugged: the backoff starts again from the minimum
    a.ok("sim.inject", "card0", {"what": "unplug"})
    ev.events.clear()
    ev.event("device.state", "card0", lambda m: m["data"]["state"] == "opening", timeout=0.3)
