"""Configuration: --check-config diagnostics as file:line: message, exit 78
on a broken config, drop-ins in lexical order, reload (SIGHUP and
config.reload) refusing bad configs and reopening only changed devices."""

import os
import re
import signal

import pytest

import kiosk
from kiosk import Daemon, daemon_section, run_kioskd, sim_device


class Text:
    """Config text built line by line, remembering where markers are."""

    def __init__(self):
        self.lines = []
        self.marks = {}

    def add(self, line, mark=None):
        self.lines.append(line)
        if mark:
            self.marks[mark] = len(self.lines)
        return self

    def block(self, text):
        for l in text.rstrip("\n").split("\n"):
            self.add(l)
        return self

    def line(self, mark):
        return self.marks[mark]

    def __str__(self):
        return "\n".join(self.lines) + "\n"


def check(d):
    """Run --check-config on d's config: (rc, [diagnostic lines], stdout)."""
    rc, out, err = run_kioskd(["--check-config", "--config", d.conf_path])
    diags = [l for l in err.splitlines() if re.match(r"^/\S+:\d+: ", l)]
    return rc, diags, out, err


def assert_diag(diags, path, line, *words):
    want = "%s:%d: " % (path, line)
    hits = [l for l in diags if l.startswith(want) and all(w in l for w in words)]
    assert hits, "no diagnostic %s %r in:\n%s" % (want, words, "\n".join(diags))


@pytest.fixture
def tmpd(kd):
    """A Daemon object used only for its directory and config paths."""
    return kd(start=False)


def test_default_config_is_valid():
    rc, out, err = run_kioskd(["--check-config", "--config",
                               os.path.join(kiosk.REPO, "conf", "kioskd.conf")])
    assert rc == 0, err
    assert "configuration OK" in out
    assert not re.search(r"^\S+:\d+: ", err, re.M), err


def test_valid_config_with_test_dirs(tmpd):
    tmpd.write_conf(daemon_section(log_level="debug", max_clients=8)
                    + sim_device("printer0", "printer", width=40))
    rc, diags, out, err = check(tmpd)
    assert rc == 0 and diags == [], err
    assert out.strip() == "%s: configuration OK" % tmpd.conf_path


@pytest.mark.parametrize("case", [
    "unknown_daemon_key", "bad_value", "bad_value_range", "bad_level", "unknown_section",
    "device_without_class", "device_without_plugin", "unknown_class", "unknown_option",
    "bad_option_value", "option_out_of_range", "missing_plugin", "syntax_error",
    "key_outside_section", "bad_device_name", "bad_timeout", "bad_enabled",
    "reopen_min_above_max", "garbage_plugin",
])
def test_check_config_reports_file_and_line(tmpd, case):
    t = Text()
    t.add("# test config").add("[daemon]").add("log_level = info")
    words = ()
    if case == "unknown_daemon_key":
        t.add("bogus_key = 1", "x")
        words = ("unknown key 'bogus_key'",)
    elif case == "bad_value":
        t.add("max_clients = lots", "x")
        words = ("max_clients", "'lots'")
    elif case == "bad_value_range":
        t.add("max_clients = 5000", "x")
        words = ("max_clients", "'5000'")
    elif case == "bad_level":
        t.add("log_level = chatty", "x")
        words = ("log_level", "'chatty'")
    elif case == "key_outside_section":
        t.lines.insert(0, "stray = 1")
        t.marks["x"] = 1
        words = ("stray",)
    elif case == "reopen_min_above_max":
        t.add("reopen_min_ms = 5000").add("reopen_max_ms = 100")
    t.add("")
    t.block(sim_device("printer0", "printer"))
    if case == "unknown_section":
        t.add("[printers]", "x").add("width = 3")
        words = ("unknown section [printers]",)
    elif case == "device_without_class":
        t.add("[device nocls]", "x").add("plugin = sim")
        words = ("nocls", "class")
    elif case == "device_without_plugin":
        t.add("[device noplug]", "x").add("class = printer")
        words = ("noplug", "plugin")
    elif case == "unknown_class":
        t.add("[device toast]").add("class = toaster", "x").add("plugin = sim")
        words = ("toast", "unknown class 'toaster'")
    elif case == "unknown_option":
        t.add("[device p1]").add("class = printer").add("plugin = sim").add("colour = red", "x")
        words = ("p1", "unknown option 'colour'", "sim")
    elif case == "bad_option_value":
        t.add("[device p1]").add("class = printer").add("plugin = sim").add("width = wide", "x")
        words = ("p1", "width", "'wide'")
    elif case == "option_out_of_range":
        t.add("[device p1]").add("class = printer").add("plugin = sim").add("width = 1000", "x")
        words = ("p1", "width", "1000", "range")
    elif case == "missing_plugin":
        t.add("[device p1]").add("class = printer").add("plugin = nosuchplugin", "x")
        words = ("p1", "nosuchplugin", "not found")
    elif case == "garbage_plugin":
        junk = os.path.join(tmpd.tmp, "junk.so")
        with open(junk, "wb") as f:
            f.write(b"this is not an ELF file\n" * 10)
        t.add("[device p1]").add("class = printer").add("plugin = " + junk, "x")
        words = ("p1", "cannot load")
    elif case == "syntax_error":
        t.add("this line is not ini", "x")
        words = ("syntax error",)
    elif case == "bad_device_name":
        t.add("[device Bad.Name]", "x").add("class = printer")
        words = ("Bad.Name",)
    elif case == "bad_timeout":
        t.add("[device p1]").add("class = printer").add("plugin = sim").add("timeout_ms = 5", "x")
        words = ("p1", "timeout_ms")
    elif case == "bad_enabled":
        t.add("[device p1]").add("class = printer").add("plugin = sim").add("enabled = maybe", "x")
        words = ("p1", "enabled", "'maybe'")
    tmpd.write_conf(str(t))
    rc, diags, out, err = check(tmpd)
    assert rc == 1, (out, err)
    assert "configuration OK" not in out
    if case == "reopen_min_above_max":
        assert "reopen_min_ms" in err
        return
    assert_diag(diags, tmpd.conf_path, t.line("x"), *words)
    # the daemon itself refuses to start on it: exit 78, no sockets
    if case in ("missing_plugin", "garbage_plugin", "unknown_option", "bad_option_value",
                "option_out_of_range"):
        return  # plugin problems: the daemon starts with the device failed (test_plugins)
    d = Daemon(tmp=tmpd.tmp, conf=str(t))
    d.start(wait_ready=False)
    try:
        assert d.wait_exit() == 78, d.log()
        assert not os.path.exists(d.ui_sock) and not os.path.exists(d.admin_sock)
        assert "READY=1" not in d.notify_lines()
        assert "invalid configuration" in d.log()
        d.check_log()
    finally:
        d.cleanup(keep=True)


def test_check_config_reports_every_problem_at_once(tmpd):
    """Parse errors and plugin errors in one file: all of them are listed."""
    t = Text()
    t.add("[daemon]").add("bogus = 1", "a").add("max_clients = lots", "b").add("")
    t.add("[device p1]").add("class = printer").add("plugin = sim").add("colour = red", "c")
    t.add("width = wide", "d").add("")
    t.add("[device p2]").add("class = printer").add("plugin = nosuchplugin", "e").add("")
    t.add("[device p3]").add("class = toaster", "f").add("plugin = sim").add("")
    t.add("[wrong]", "g").add("k = v")
    tmpd.write_conf(str(t))
    rc, diags, out, err = check(tmpd)
    assert rc == 1
    p = tmpd.conf_path
    assert_diag(diags, p, t.line("a"), "bogus")
    assert_diag(diags, p, t.line("b"), "max_clients")
    assert_diag(diags, p, t.line("f"), "toaster")
    assert_diag(diags, p, t.line("g"), "wrong")
    # the plugin-level problems of the valid device sections too
    assert_diag(diags, p, t.line("c"), "colour")
    assert_diag(diags, p, t.line("d"), "width")
    assert_diag(diags, p, t.line("e"), "nosuchplugin")


def test_check_config_lists_every_plugin_problem(tmpd):
    t = Text()
    t.add("[device p1]").add("class = printer").add("plugin = sim").add("colour = red", "c")
    t.add("width = wide", "d").add("")
    t.add("[device p2]").add("class = printer").add("plugin = nosuchplugin", "e").add("")
    t.add("[device p3]").add("class = locker").add("plugin = sim").add("doors = 0", "f")
    tmpd.write_conf(str(t))
    rc, diags, out, err = check(tmpd)
    assert rc == 1
    p = tmpd.conf_path
    assert_diag(diags, p, t.line("c"), "colour")
    assert_diag(diags, p, t.line("d"), "width")
    assert_diag(diags, p, t.line("e"), "nosuchplugin")
    assert_diag(diags, p, t.line("f"), "doors")
    assert len(diags) == 4, diags


def test_dropin_error_names_the_dropin(tmpd):
    tmpd.write_conf(sim_device("printer0", "printer"), dropins={
        "conf.d/10-ok.conf": "[device printer0]\nwidth = 40\n",
        "conf.d/20-bad.conf": "# comment\n\n[device printer0]\nwidth = 40\nbogus_opt = 1\n",
        "kioskd.conf.d/30-bad.conf": "[daemon]\nmax_clients = 0\n",
    })
    rc, diags, out, err = check(tmpd)
    assert rc == 1
    # the parse error in kioskd.conf.d/ ...
    assert_diag(diags, os.path.join(tmpd.tmp, "kioskd.conf.d", "30-bad.conf"), 2, "max_clients")
    # ... and, once that is fixed, the plugin option in conf.d/
    with open(os.path.join(tmpd.tmp, "kioskd.conf.d", "30-bad.conf"), "w") as f:
        f.write("[daemon]\nmax_clients = 10\n")
    rc, diags, out, err = check(tmpd)
    assert rc == 1
    assert_diag(diags, os.path.join(tmpd.tmp, "conf.d", "20-bad.conf"), 5, "bogus_opt")
    assert len(diags) == 1, diags


def test_missing_config_file(tmpd):
    rc, out, err = run_kioskd(["--check-config", "--config", tmpd.conf_path + ".nope"])
    assert rc == 1
    assert "cannot open" in err and tmpd.conf_path + ".nope" in err
    d = Daemon(tmp=tmpd.tmp)
    d.conf_path += ".nope"
    d.start(wait_ready=False)
    try:
        assert d.wait_exit() == 78
        assert not os.path.exists(d.ui_sock)
    finally:
        d.cleanup(keep=True)


def test_dropins_read_in_lexical_order(kd):
    main = daemon_section() + sim_device("printer0", "printer", latency_ms=1) \
        + sim_device("gone0", "printer")
    d = kd(main, dropins={
        # merged over both directories, by file name
        "kioskd.conf.d/05-first.conf": "[device printer0]\nlatency_ms = 5\n",
        "conf.d/10-a.conf": "[device printer0]\nlatency_ms = 10\n"
                            "[device extra0]\nclass = locker\nplugin = sim\nenabled = yes\n"
                            "[device extra1]\nclass = locker\nplugin = sim\nenabled = no\n",
        "kioskd.conf.d/20-b.conf": "[device printer0]\nlatency_ms = 20\n"
                                   "[device extra0]\nenabled = no\n"
                                   "[device extra1]\nenabled = yes\n",
        "conf.d/30-c.conf": "[device printer0]\nlatency_ms = 30\n"
                            "[device gone0]\nenabled = false\n",
        # not read: wrong suffix, hidden
        "conf.d/99-z.conf.bak": "[device printer0]\nlatency_ms = 99\n",
        "conf.d/.40-hidden.conf": "[device printer0]\nlatency_ms = 40\n",
        "conf.d/50-notes.txt": "garbage that would not parse\n",
    })
    devs = {x["name"]: x for x in d.admin().ok("devices.list")["devices"]}
    assert set(devs) == {"printer0", "extra1"}, devs.keys()
    assert devs["printer0"]["status"]["latency_ms"] == 30


def test_start_with_broken_config_exits_78(kd):
    d = kd("[daemon]\nmax_clients = lots\n", start=False)
    d.start(wait_ready=False)
    assert d.wait_exit() == 78
    assert not os.path.exists(d.run_dir) or os.listdir(d.run_dir) == []
    assert "%s:2: " % d.conf_path in d.log()
    assert "READY=1" not in d.notify_lines()


BASE = (daemon_section(log_level="info", reopen_min_ms=50)
        + sim_device("printer0", "printer", width=32)
        + sim_device("card0", "cardreader", latency_ms=0)
        + sim_device("locker0", "locker", doors=8))


def test_sighup_with_broken_config_is_refused(kd):
    d = kd(BASE)
    ui = d.client()
    ev = d.client()
    ev.ok("events.subscribe", args={"topics": ["device.*"]})
    d.notifications.clear()
    d.write_conf(BASE + "[daemon]\nmax_clients = lots\n")
    d.signal(signal.SIGHUP)
    d.wait_log("reload refused")
    lines = d.log_lines(r"max_clients")
    assert any(("%s:" % d.conf_path) in l for l in lines), d.log()
    d.wait_notify("READY=1")
    assert "RELOADING=1" in d.notify_lines()
    # old devices still serve, nothing was reopened
    assert ui.call("printer.print", args={"blocks": [{"text": "x"}]})["ok"] is True
    assert ui.ok("status")["daemon"]["config"] == d.conf_path
    ev.drain(0.1)
    assert [e for e in ev.events if e["data"]["state"] not in ("busy", "ready")] == []
    # config.reload gives the reason
    e = d.admin().err("config.reload")
    assert e["code"] == "bad_request"
    assert "max_clients" in e["message"] and "lots" in e["message"]
    assert "%s:%d" % (d.conf_path, BASE.count("\n") + 2) in e["message"], e


def test_reload_refuses_plugin_problems(kd):
    d = kd(BASE)
    d.write_conf(BASE.replace("width = 32", "width = 32\ncolour = red"))
    e = d.admin().err("config.reload")
    assert e["code"] == "bad_request"
    assert "colour" in e["message"]
    assert d.device("printer0")["state"] == "ready"


@pytest.mark.parametrize("how", ["config.reload", "SIGHUP"])
def test_reload_reopens_only_changed_devices(kd, how):
    d = kd(BASE)
    a = d.admin()
    ev = d.client()
    ev.ok("events.subscribe", args={"topics": ["device.*"]})
    # some state in the card reader that a reopen would lose
    a.ok("sim.inject", "card0", {"what": "insert", "card": {"type": "sle4442"}})
    new = BASE.replace("width = 32", "width = 40") + sim_device("qr0", "barcode")
    new = new.replace(sim_device("locker0", "locker", doors=8), "")
    d.write_conf(new)
    if how == "config.reload":
        r = a.ok("config.reload")
        assert r["reloaded"] is True
        assert sorted(r["changed"]) == ["locker0", "printer0", "qr0"]
    else:
        d.signal(signal.SIGHUP)
        d.wait_log("configuration reloaded")
    d.wait_state("printer0", "ready")
    d.wait_state("qr0", "ready")
    devs = {x["name"]: x for x in a.ok("devices.list")["devices"]}
    assert set(devs) == {"printer0", "card0", "qr0"}
    assert devs["printer0"]["status"]["width"] == 40
    # the card reader kept its state: the card is still in
    st = d.client().ok("cardreader.status")
    assert st["card"] == "present", st
    ev.drain(0.1)
    # (busy <-> ready flips come with every command: not a reopen)
    moved = {e["device"] for e in ev.events
             if e["event"] == "device.state"
             and {e["data"]["state"], e["data"]["previous"]} & {"opening", "offline"}}
    assert "card0" not in moved, ev.events
    assert {"printer0", "qr0"} <= moved


def test_reload_answers_commands_of_reopened_and_removed_devices(kd):
    d = kd(BASE)
    ui = d.client()
    wid = ui.request("cardreader.wait", timeout_ms=30000)
    qid = ui.request("cardreader.eject")
    lid = ui.request("locker.status")
    ui.reply(lid)
    a = d.admin()
    a.ok("sim.inject", "locker0", {"what": "hang_next"})
    hid = ui.request("locker.open", args={"door": 1}, timeout_ms=30000)
    hq = ui.request("locker.open", args={"door": 2})
    ui.drain(0.05)
    d.write_conf(BASE.replace(sim_device("card0", "cardreader", latency_ms=0),
                              sim_device("card0", "cardreader", latency_ms=1))
                 .replace(sim_device("locker0", "locker", doors=8), ""))
    r = a.ok("config.reload")
    assert sorted(r["changed"]) == ["card0", "locker0"]
    for i, why in ((wid, "reconfigured"), (qid, "reconfigured"),
                   (hid, "removed from configuration"), (hq, "removed from configuration")):
        m = ui.reply(i, timeout=3)
        assert m["ok"] is False and m["error"]["code"] == "device_offline", m
        assert why in m["error"]["message"], m
    d.wait_state("card0", "ready")
    assert ui.call("cardreader.status")["ok"] is True
    assert ui.err("locker.status")["code"] == "unknown_device"
    assert ui.call("printer.status")["ok"] is True


def test_reload_applies_daemon_limits(kd):
    d = kd(daemon_section(max_line_bytes=65536))
    c = d.client()
    c.send_raw('{"id":1,"cmd":"hello","pad":"%s"}\n' % ("x" * 2000))
    assert c.next_reply()["ok"] is True
    d.write_conf(daemon_section(max_line_bytes=1024))
    d.admin().ok("config.reload")
    c.send_raw('{"id":2,"cmd":"hello","pad":"%s"}\n' % ("x" * 2000))
    msgs = c.expect_eof()
    assert [m["error"]["code"] for m in msgs] == ["too_large"]


def test_config_that_is_a_directory_is_refused(tmpd):
    """fopen() of a directory succeeds on Linux and the first read fails
    with EISDIR: that must not pass as an empty, valid configuration."""
    path = os.path.join(tmpd.tmp, "confdir")
    os.mkdir(path)
    rc, out, err = run_kioskd(["--check-config", "--config", path])
    assert rc == 1, (out, err)
    assert path in err
    # the same for a drop-in
    tmpd.write_conf(daemon_section())
    os.makedirs(os.path.join(tmpd.tmp, "conf.d", "10-dir.conf"))
    rc, out, err = run_kioskd(["--check-config", "--config", tmpd.conf_path])
    assert rc == 1, (out, err)
    assert "10-dir.conf" in err


def test_reload_announces_removed_devices(kd):
    d = kd(BASE)
    ev = d.client()
    ev.ok("events.subscribe", args={"topics": ["device.removed"]})
    d.write_conf(BASE.replace(sim_device("locker0", "locker", doors=8), ""))
    assert d.admin().ok("config.reload")["changed"] == ["locker0"]
    e = ev.event("device.removed", "locker0")
    assert e["data"]["reason"] == "removed from configuration", e
