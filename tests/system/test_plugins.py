"""Broken plugins on disk: the daemon starts, refuses each with a reason
that names the problem (one log line per plugin), marks their devices
failed, and keeps serving the good ones."""

import os
import re


import kiosk
from kiosk import daemon_section, run_kioskd, sim_device

BROKEN = {
    # plugin: (words the reason must contain)
    "bad_magic": ("bad magic",),
    "bad_major": ("ABI 99", "1.x"),
    "no_symbol": ("does not export kiosk_hal_plugin",),
    "null_entry": ("entry point", "command()", "missing"),
    "unknown_class": ("unknown device classes",),
    "small_struct": ("descriptor is 8 bytes",),
}


def plugin_so(name):
    p = os.path.join(kiosk.TEST_PLUGINS, name + ".so")
    assert os.path.exists(p), "%s missing: run make tests" % p
    return p


def conf_for(tmp, extra=""):
    junk = os.path.join(tmp, "junk.so")
    with open(junk, "wb") as f:
        f.write(b"\x7fELF but not really, just garbage\n" * 20)
    text = daemon_section(plugin_path=kiosk.TEST_PLUGINS, log_level="info")
    for name in BROKEN:
        plugin_so(name)
        text += "[device %s0]\nclass = cardreader\nplugin = %s\n\n" % (name.replace("_", ""), name)
    # a second device on a broken plugin: still one refusal in the log
    text += "[device badmagic1]\nclass = printer\nplugin = bad_magic\n\n"
    text += "[device junk0]\nclass = cardreader\nplugin = %s\n\n" % junk
    text += "[device echo0]\nclass = cardreader\nplugin = good_echo\n\n"
    text += "[device echo1]\nclass = printer\nplugin = good_echo\n\n"
    text += sim_device("card9", "cardreader", latency_ms=0)
    text += sim_device("printer9", "printer", latency_ms=0)
    return text + extra, junk


def test_broken_plugins_refused_good_ones_serve(kd):
    base = kd(start=False)
    text, junk = conf_for(base.tmp)
    d = kd(text)  # reaching READY=1 is part of the test
    ui = d.client()
    devs = {x["name"]: x for x in ui.ok("devices.list")["devices"]}
    for name, words in BROKEN.items():
        dev = devs[name.replace("_", "") + "0"]
        assert dev["state"] == "failed", dev
        assert dev["plugin"] == name
        assert "plugin %s refused" % name in dev["reason"], dev
        for w in words:
            assert w in dev["reason"], (w, dev["reason"])
        assert "status" not in dev
    assert devs["badmagic1"]["state"] == "failed"
    assert devs["junk0"]["state"] == "failed"
    assert "cannot load" in devs["junk0"]["reason"]
    for ok in ("echo0", "echo1", "card9", "printer9"):
        assert devs[ok]["state"] == "ready", devs[ok]
    assert devs["echo0"]["status"] == {"echo": True}

    # failed devices refuse commands with device_offline and the reason
    e = ui.err("cardreader.status", device="badmagic0")
    assert e["code"] == "device_offline" and "bad magic" in e["message"]
    e = ui.err("printer.print", device="badmagic1", args={"blocks": [{"text": "x"}]})
    assert e["code"] == "device_offline"

    # good_echo answers inside command(): pipelined, each exactly once
    ids = [ui.request("cardreader.read", device="echo0", args={"offset": i, "length": 1})
           for i in range(50)]
    for i, id in enumerate(ids):
        r = ui.reply(id)
        assert r["ok"] is True and r["result"] == {"verb": "read",
                                                   "args": {"offset": i, "length": 1}}, r
    assert ui.ok("printer.print", device="echo1",
                 args={"blocks": [{"text": "hi"}]})["verb"] == "print"
    assert ui.ok("cardreader.status", device="card9")["card"] == "absent"
    assert ui.ok("printer.status", device="printer9")["paper"] == "ok"

    # exactly one log line per refused plugin
    for name in BROKEN:
        lines = d.log_lines(r" err: plugin \S*/%s\.so refused: " % name)
        assert len(lines) == 1, (name, lines)
        for w in BROKEN[name]:
            assert w in lines[0]
    lines = d.log_lines(r" err: plugin %s refused: cannot load" % re.escape(junk))
    assert len(lines) == 1, d.log()
    assert len(d.log_lines(r" err: plugin ")) == len(BROKEN) + 1
    # status counts them
    counts = ui.ok("status")["device_states"]
    assert counts["failed"] == len(BROKEN) + 2 and counts["ready"] == 4


def test_failed_devices_stay_failed_and_reload_keeps_them(kd):
    base = kd(start=False)
    text, junk = conf_for(base.tmp)
    d = kd(text)
    a = d.admin()
    # not retried: no reopen loop for a device that cannot ever work
    ev = d.client()
    ev.ok("events.subscribe", args={"topics": ["device.*"]})
    ev.drain(0.3)
    assert [e for e in ev.events if e["device"] != "echo0"] == []
    # a reload with the same configuration is refused (plugin problems) ...
    e = a.err("config.reload")
    assert e["code"] == "bad_request" and "bad magic" in e["message"]
    # ... and fixing the config (broken devices removed) is accepted
    good = daemon_section(plugin_path=kiosk.TEST_PLUGINS) \
        + "[device echo0]\nclass = cardreader\nplugin = good_echo\n\n" \
        + sim_device("card9", "cardreader", latency_ms=0)
    d.write_conf(good)
    r = a.ok("config.reload")
    assert set(r["changed"]) == {n.replace("_", "") + "0" for n in BROKEN} | {
        "badmagic1", "junk0", "echo1", "printer9"}
    names = {x["name"] for x in a.ok("devices.list")["devices"]}
    assert names == {"echo0", "card9"}


def test_check_config_names_every_broken_plugin(kd):
    base = kd(start=False)
    text, junk = conf_for(base.tmp)
    base.write_conf(text)
    rc, out, err = run_kioskd(["--check-config", "--config", base.conf_path])
    assert rc == 1
    diags = [l for l in err.splitlines() if l.startswith(base.conf_path + ":")]
    lines = text.split("\n")
    for name, words in BROKEN.items():
        dev = name.replace("_", "") + "0"
        plugin_line = lines.index("[device %s]" % dev) + 3  # 1-based line of "plugin ="
        hits = [l for l in diags if l.startswith("%s:%d: device %s: " % (
            base.conf_path, plugin_line, dev))]
        assert hits, (dev, diags)
        assert all(w in hits[0] for w in words), hits
    assert any("junk0" in l and "cannot load" in l for l in diags)
    assert not any("echo0" in l or "card9" in l for l in diags)


def test_plugin_by_path_and_search_path(kd):
    """plugin = an absolute path works; a name is searched in plugin_path,
    then beside the binary (the sim)."""
    d = kd(daemon_section(plugin_path="/nonexistent:" + kiosk.TEST_PLUGINS)
           + "[device e0]\nclass = printer\nplugin = %s\n\n" % plugin_so("good_echo")
           + "[device e1]\nclass = cardreader\nplugin = good_echo\n\n"
           + sim_device("s0", "locker"))
    devs = {x["name"]: x["state"] for x in d.client().ok("devices.list")["devices"]}
    assert devs == {"e0": "ready", "e1": "ready", "s0": "ready"}


def test_plugin_serving_wrong_class(kd):
    d = kd(daemon_section(plugin_path=kiosk.TEST_PLUGINS)
           + "[device e0]\nclass = locker\nplugin = good_echo\n\n")
    dev = d.device("e0")
    assert dev["state"] == "failed"
    assert "does not serve class locker" in dev["reason"]
