"""A realistic flow for every simulated device class, through the daemon."""

import hashlib
import os
import struct
import time

import pytest

from kiosk import daemon_section, hexid, sim_device, wait_until

PNG = b"\x89PNG\r\n\x1a\n"

CONF = (daemon_section(log_level="info")
        + sim_device("card0", "cardreader", latency_ms=0)
        + sim_device("printer0", "printer", latency_ms=0, width=16, paper_lines=100)
        + sim_device("scanner0", "scanner", latency_ms=0, adf_pages=5)
        + sim_device("id0", "idreader", latency_ms=0)
        + sim_device("camera0", "camera", latency_ms=0)
        + sim_device("audio0", "audio", latency_ms=0, volume=70)
        + sim_device("qr0", "barcode", latency_ms=0)
        + sim_device("locker0", "locker", latency_ms=0, doors=24)
        + sim_device("locker1", "locker", latency_ms=0, doors=4, auto_close_ms=100)
        + sim_device("cabinet0", "sensor", latency_ms=0, interval_ms=50, alarm_high=45,
                     alarm_low=-30)
        + sim_device("climate0", "actuator", latency_ms=0, outputs="heater,fan1,fan2,light"))


@pytest.fixture
def d(kd):
    return kd(CONF)


@pytest.fixture
def ui(d):
    return d.client()


@pytest.fixture
def admin(d):
    return d.admin()


def inject(admin, dev, what, **args):
    args["what"] = what
    return admin.ok("sim.inject", dev, args)


def blob(d, id, magic=PNG):
    """The blob's bytes: named by its sha256, stored under state/blobs."""
    assert hexid(id), id
    path = os.path.join(d.state_dir, "blobs", id)
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(magic), data[:16]
    assert hashlib.sha256(data).hexdigest() == id
    return data


def png_size(data):
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_all_devices_ready(d, ui):
    devs = ui.ok("devices.list")["devices"]
    bad = [(x["name"], x["state"], x.get("reason")) for x in devs if x["state"] != "ready"]
    assert not bad, bad
    assert len(devs) == 11


def test_cardreader_flow(d, ui, admin):
    ui.ok("events.subscribe", args={"topics": ["cardreader.*"]})
    e = ui.err("cardreader.read", args={"length": 4})
    assert e["code"] == "device_error" and "no card" in e["message"]
    wid = ui.request("cardreader.wait", timeout_ms=5000)
    ui.drain(0.05)
    assert ui.inbox == []
    inject(admin, "card0", "insert", card={"type": "sle4442", "uid": "0a0b0c0d"})
    ev = ui.event("cardreader.inserted", "card0")
    assert ev["data"]["type"] == "sle4442" and ev["data"]["atr"] == "a2131091"
    w = ui.reply(wid)
    assert w["ok"] is True, w
    assert w["result"] == {"type": "sle4442", "uid": "0a0b0c0d", "atr": "a2131091"}
    r = ui.ok("cardreader.read", args={"offset": 32, "length": 16})
    assert r["data"] == "ff" * 16 and r["offset"] == 32
    assert ui.ok("cardreader.write", args={"offset": 32, "data": "0123456789abcdef"}) == \
        {"written": 8}
    r = ui.ok("cardreader.read", args={"offset": 30, "length": 12})
    assert r["data"] == "1e1f" + "0123456789abcdef" + "ffff"
    # whole card: 256 bytes
    assert len(ui.ok("cardreader.read")["data"]) == 512
    e = ui.err("cardreader.read", args={"offset": 250, "length": 10})
    assert e["code"] == "bad_request"
    r = ui.ok("cardreader.apdu", args={"apdu": "ffca000000"})
    assert r["response"] == "0a0b0c0d9000"
    assert ui.ok("cardreader.apdu", args={"apdu": "00b0000010"})["response"] == "6d00"
    st = ui.ok("cardreader.status")
    assert st["card"] == "present" and st["memory_bytes"] == 256
    assert ui.ok("cardreader.eject") == {"ejected": True}
    ui.event("cardreader.removed", "card0")
    assert ui.ok("cardreader.status")["card"] == "absent"
    # the same card back in: the data written is still there
    inject(admin, "card0", "insert", same=True)
    assert ui.ok("cardreader.read", args={"offset": 32, "length": 8})["data"] == \
        "0123456789abcdef"
    inject(admin, "card0", "remove")
    ui.event("cardreader.removed", "card0")
    assert admin.err("sim.inject", "card0", {"what": "remove"})["code"] == "bad_request"


def test_cardreader_mifare_and_torn_write(d, ui, admin):
    inject(admin, "card0", "insert", card={"type": "mifare", "uid": "04112233"})
    r = ui.ok("cardreader.read", args={"offset": 0, "length": 5})
    assert r["data"] == "04112233" + "%02x" % (0x04 ^ 0x11 ^ 0x22 ^ 0x33)
    assert r["type"] == "mifare"
    # a slow write pulled halfway: device_error, and how much was written
    inject(admin, "card0", "latency", ms=400)
    wid = ui.request("cardreader.write", args={"offset": 16, "data": "aa" * 100})
    time.sleep(0.2)
    inject(admin, "card0", "remove")
    e = ui.reply(wid)
    assert e["ok"] is False and e["error"]["code"] == "device_error"
    assert "of 100 bytes written" in e["error"]["message"]


def test_printer_flow(d, ui, admin):
    ui.ok("events.subscribe", args={"topics": ["printer.*"]})
    r = ui.ok("printer.print", args={"blocks": [
        {"text": "HELLO", "align": "center"},
        {"text": "0123456789abcdefXYZ"},
        {"text": "右", "align": "right"},
        {"qr": "https://x"},
        {"feed": 1},
        {"cut": True}]})
    assert r["text"] == ("     HELLO\n0123456789abcdef\nXYZ\n              右\n"
                         "[QR: https://x]\n\n-------- cut --------\n"), r["text"]
    assert r["lines"] == 7
    assert ui.event("printer.printed")["data"] == {"lines": 7}
    st = ui.ok("printer.status")
    assert st["paper"] == "ok" and st["paper_lines_left"] == 93 and st["printed_jobs"] == 1

    inject(admin, "printer0", "paper_out")
    assert ui.event("printer.paper_out")["data"]["paper_lines_left"] == 0
    e = ui.err("printer.print", args={"blocks": [{"text": "x"}]})
    assert e["code"] == "device_offline" and "paper" in e["message"]
    inject(admin, "printer0", "paper_ok")
    ui.event("printer.paper_ok")
    assert ui.ok("printer.print", args={"blocks": [{"text": "x"}]})["lines"] == 1

    inject(admin, "printer0", "cover_open")
    ui.event("printer.cover_open")
    e = ui.err("printer.print", args={"blocks": [{"text": "x"}]})
    assert e["code"] == "device_offline" and "cover" in e["message"]
    inject(admin, "printer0", "cover_close")
    ui.event("printer.cover_closed")

    inject(admin, "printer0", "jam")
    ui.event("printer.jam")
    e = ui.err("printer.print", args={"blocks": [{"text": "x"}]})
    assert e["code"] == "device_error" and "jam" in e["message"]
    inject(admin, "printer0", "clear")
    ui.event("printer.jam_cleared")
    assert ui.call("printer.print", args={"blocks": [{"text": "x"}]})["ok"] is True

    # a long job runs the roll low, then out mid-job
    inject(admin, "printer0", "paper_low")
    ui.event("printer.paper_low")
    assert ui.ok("printer.status")["paper"] == "low"
    e = ui.err("printer.print", args={"blocks": [{"feed": 50}]})
    assert e["code"] == "device_error" and "ran out" in e["message"]
    ui.event("printer.paper_out")

    # an image block must name a stored blob
    inject(admin, "printer0", "paper_ok")
    e = ui.err("printer.print", args={"blocks": [{"image": "ab" * 32}]})
    assert e["code"] == "bad_request"
    cap = ui.ok("camera.capture", args={"width": 16, "height": 16})
    r = ui.ok("printer.print", args={"blocks": [{"image": cap["blob"]}]})
    assert r["text"] == "[IMAGE %s]\n" % cap["blob"][:8]


def test_scanner_flow(d, ui, admin):
    sid = ui.request("scanner.scan", args={"resolution": 100, "mode": "gray"})
    prog = ui.wait_msg(lambda m: "progress" in m and m["id"] == sid)
    assert prog["progress"] == {"page": 1, "pages": 1}
    r = ui.reply(sid, timeout=10)
    assert r["ok"] is True, r
    pages = r["result"]["pages"]
    assert len(pages) == 1
    p = pages[0]
    assert p["mime"] == "image/png" and p["mode"] == "gray" and p["resolution"] == 100
    assert png_size(blob(d, p["blob"])) == (p["width"], p["height"]) == (103, 146)
    # the feeder: three distinct pages
    r = ui.ok("scanner.scan", args={"source": "adf", "pages": 3, "resolution": 50}, timeout=10)
    ids = [x["blob"] for x in r["pages"]]
    assert len(set(ids)) == 3
    for i in ids:
        blob(d, i)
    assert ui.ok("scanner.status")["adf_pages"] == 2
    # more pages than are in the feeder
    e = ui.err("scanner.scan", args={"source": "adf", "pages": 3, "resolution": 50})
    assert e["code"] == "device_error" and "2 of 3" in e["message"]
    inject(admin, "scanner0", "load", pages=10)
    inject(admin, "scanner0", "jam")
    e = ui.err("scanner.scan", args={"resolution": 50})
    assert e["code"] == "device_error" and "jam" in e["message"]
    inject(admin, "scanner0", "clear")
    inject(admin, "scanner0", "cover_open")
    assert ui.err("scanner.scan", args={"resolution": 50})["code"] == "device_offline"
    inject(admin, "scanner0", "clear")
    inject(admin, "scanner0", "no_paper")
    assert ui.err("scanner.scan", args={"source": "adf"})["code"] == "device_error"
    # the flatbed still works without paper in the feeder
    assert ui.call("scanner.scan", args={"resolution": 50}, timeout=10)["ok"] is True
    assert ui.err("scanner.scan", args={"pages": 2})["code"] == "bad_request"


def test_idreader_flow(d, ui, admin):
    ui.ok("events.subscribe", args={"topics": ["idreader.*"]})
    e = ui.err("idreader.read")
    assert e["code"] == "device_error"
    inject(admin, "id0", "place", identity={"name": "Zhang San", "id_number": "11010119800101999X"})
    ev = ui.event("idreader.placed")
    assert ev["data"] == {}
    r = ui.ok("idreader.read", timeout=10)
    ident = r["identity"]
    assert ident["name"] == "Zhang San" and ident["id_number"] == "11010119800101999X"
    for f in ("sex", "nation", "birth", "address", "issuer", "valid_from", "valid_to"):
        assert ident[f], f
    assert "id_number" in r["pii"] and "name" in r["pii"]
    photo = blob(d, r["photo"])
    assert png_size(photo) == (102, 126)
    assert admin.err("sim.inject", "id0", {"what": "place"})["code"] == "bad_request"
    inject(admin, "id0", "remove")
    ui.event("idreader.removed")
    assert ui.err("idreader.read")["code"] == "device_error"
    assert admin.err("sim.inject", "id0",
                     {"what": "place", "identity": {"shoe_size": "42"}})["code"] == "bad_request"


def test_camera_flow(d, ui, admin):
    a = ui.ok("camera.capture", args={"width": 64, "height": 48}, timeout=10)
    assert a["mime"] == "image/png" and (a["width"], a["height"]) == (64, 48)
    assert png_size(blob(d, a["blob"])) == (64, 48)
    b = ui.ok("camera.capture", args={"width": 64, "height": 48}, timeout=10)
    assert b["blob"] != a["blob"]
    c = ui.ok("camera.capture", timeout=10)
    assert (c["width"], c["height"]) == (320, 240)
    inject(admin, "camera0", "cover")
    dark = ui.ok("camera.capture", args={"width": 32, "height": 32}, timeout=10)
    blob(d, dark["blob"])
    assert ui.ok("camera.status")["lens"] == "covered"
    inject(admin, "camera0", "uncover")
    assert ui.err("camera.capture", args={"width": 5000})["code"] == "bad_request"


def test_audio_flow(d, ui, admin):
    ui.ok("events.subscribe", args={"topics": ["audio.*"]})
    t0 = time.monotonic()
    r = ui.ok("audio.play", args={"tts": "请插卡"})
    assert r["played_ms"] == 150
    assert time.monotonic() - t0 >= 0.14
    assert ui.event("audio.played")["data"] == {"source": "tts", "played_ms": 150}
    e = ui.err("audio.play", args={"file": "/nonexistent/prompt.wav"})
    assert e["code"] == "device_error"
    rec = ui.ok("audio.record", args={"duration_ms": 200}, timeout=5)
    assert rec["mime"] == "audio/wav" and rec["duration_ms"] == 200
    assert rec["noise_suppression"] is True
    wav = blob(d, rec["blob"], magic=b"RIFF")
    assert wav[8:16] == b"WAVEfmt " and len(wav) == 44 + 200 * 16 * 2
    raw = ui.ok("audio.record", args={"duration_ms": 200, "noise_suppression": False})
    assert raw["blob"] != rec["blob"]
    ui.event("audio.recorded")
    assert ui.ok("audio.play", args={"blob": rec["blob"]})["played_ms"] == 0
    assert ui.err("audio.play", args={"blob": "0" * 64})["code"] == "bad_request"
    assert ui.ok("audio.volume", args={"level": 30}) == {"level": 30}
    assert ui.ok("audio.status")["volume"] == 30


def test_barcode_flow(d, ui, admin):
    ui.ok("events.subscribe", args={"topics": ["barcode.*"]})
    # a scan with nobody waiting: only the event
    inject(admin, "qr0", "scan", code="FIRST")
    assert ui.event("barcode.scanned")["data"] == {"code": "FIRST", "symbology": "qr"}
    wid = ui.request("barcode.wait", timeout_ms=5000)
    ui.drain(0.05)
    assert ui.inbox == []
    inject(admin, "qr0", "scan", code="PAY:123", symbology="ean13")
    r = ui.reply(wid)
    assert r["ok"] is True and r["result"] == {"code": "PAY:123", "symbology": "ean13"}
    assert ui.event("barcode.scanned")["data"]["code"] == "PAY:123"
    assert ui.ok("barcode.status")["scans"] == 2
    e = ui.call("barcode.wait", timeout_ms=100, timeout=3)
    assert e["error"]["code"] == "timeout"
    assert admin.err("sim.inject", "qr0", {"what": "scan"})["code"] == "bad_request"


def test_locker_flow(d, ui, admin):
    ui.ok("events.subscribe", args={"topics": ["locker.*"]})
    assert ui.ok("locker.open", device="locker0", args={"door": 3}) == \
        {"door": 3, "state": "open"}
    assert ui.event("locker.opened", "locker0")["data"] == {"door": 3}
    doors = ui.ok("locker.status", device="locker0")["doors"]
    assert len(doors) == 24
    assert doors[2] == {"door": 3, "state": "open", "stuck": False}
    inject(admin, "locker0", "close", door=3)
    assert ui.event("locker.closed", "locker0")["data"] == {"door": 3}
    # a door the cabinet does not have
    e = ui.err("locker.open", device="locker0", args={"door": 30})
    assert e["code"] == "bad_request" and "30" in e["message"]
    assert admin.err("sim.inject", "locker0", {"what": "close", "door": 30})["code"] == \
        "bad_request"
    inject(admin, "locker0", "stuck", door=2)
    e = ui.err("locker.open", device="locker0", args={"door": 2})
    assert e["code"] == "device_error"
    inject(admin, "locker0", "unstuck", door=2)
    ui.ok("locker.open", device="locker0", args={"door": 2})
    inject(admin, "locker0", "force", door=5)
    ev = ui.event("locker.opened", "locker0", lambda m: m["data"]["door"] == 5)
    assert ev["data"]["forced"] is True
    # auto close
    ui.ok("locker.open", device="locker1", args={"door": 4})
    ui.event("locker.opened", "locker1")
    ev = ui.event("locker.closed", "locker1", timeout=2)
    assert ev["data"] == {"door": 4}


def test_sensor_flow(d, ui, admin):
    ui.ok("events.subscribe", args={"topics": ["sensor.*"]})
    r = ui.ok("sensor.read")
    assert r["temperature"] == 20 and r["humidity"] == 45 and r["alarm"] is None
    assert r["door"] == "closed" and r["tamper"] is False
    inject(admin, "cabinet0", "curve", points=[[300, 50]])
    al = ui.event("sensor.alarm", "cabinet0", timeout=3)
    assert al["data"]["kind"] == "high" and al["data"]["threshold"] == 45
    assert al["data"]["temperature"] > 45
    readings = [e for e in ui.events if e["event"] == "sensor.reading"]
    assert len(readings) >= 2
    temps = [e["data"]["temperature"] for e in readings]
    assert temps == sorted(temps) and temps[0] > 20
    inject(admin, "cabinet0", "curve", points=[[100, 20]])
    cl = ui.event("sensor.alarm_cleared", timeout=3)
    assert cl["data"]["kind"] == "high"
    wait_until(lambda: ui.ok("sensor.read")["temperature"] == 20, 3, "back to 20")
    inject(admin, "cabinet0", "set", temperature=-40)
    assert ui.event("sensor.alarm", pred=lambda m: m["data"]["kind"] == "low", timeout=3)
    assert ui.ok("sensor.read")["alarm"] == "low"
    inject(admin, "cabinet0", "door_open")
    assert ui.event("sensor.door")["data"] == {"state": "open"}
    inject(admin, "cabinet0", "tamper")
    ui.event("sensor.tamper")
    r = ui.ok("sensor.read")
    assert r["door"] == "open" and r["tamper"] is True
    assert admin.err("sim.inject", "cabinet0",
                     {"what": "curve", "points": [[100, 500]]})["code"] == "bad_request"


def test_actuator_flow(d, ui, admin):
    ui.ok("events.subscribe", args={"topics": ["actuator.*"]})
    st = ui.ok("actuator.status")
    assert [o["output"] for o in st["outputs"]] == ["heater", "fan1", "fan2", "light"]
    r = ui.ok("actuator.set", args={"output": "heater", "on": True})
    assert r == {"output": "heater", "on": True, "level": 100}
    assert ui.event("actuator.changed")["data"] == r
    r = ui.ok("actuator.set", args={"output": "fan1", "level": 40})
    assert r == {"output": "fan1", "on": True, "level": 40}
    r = ui.ok("actuator.set", args={"output": "heater", "on": False})
    assert r["on"] is False
    e = ui.err("actuator.set", args={"output": "pump", "on": True})
    assert e["code"] == "bad_request" and "pump" in e["message"]
    inject(admin, "climate0", "fail_output", output="light")
    e = ui.err("actuator.set", args={"output": "light", "on": True})
    assert e["code"] == "device_error"
    assert ui.ok("actuator.set", args={"output": "light", "on": True})["on"] is True
