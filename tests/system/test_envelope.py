"""The fixed envelope (PROTOCOL.md): bad input of every kind gets the right
error code, the connection stays usable, roles are enforced, and an
over-long line closes only the offending connection."""

import json

import pytest

from kiosk import Client, daemon_section, sim_device

MAX_LINE = 4096

CONF = (daemon_section(max_line_bytes=MAX_LINE, log_level="debug")
        + sim_device("printer0", "printer", latency_ms=0)
        + sim_device("card0", "cardreader", latency_ms=0)
        + sim_device("locker0", "locker", doors=24, latency_ms=0)
        + sim_device("audio0", "audio", latency_ms=0)
        + sim_device("climate0", "actuator", outputs="heater,fan", latency_ms=0)
        + sim_device("cam0", "camera", latency_ms=0)
        + sim_device("cam1", "camera", latency_ms=0))


@pytest.fixture(scope="module")
def daemon(kd_module):
    return kd_module(CONF)


@pytest.fixture
def ui(daemon):
    c = Client(daemon.ui_sock)
    yield c
    c.close()


@pytest.fixture
def admin(daemon):
    c = Client(daemon.admin_sock)
    yield c
    c.close()


def error_reply(c, raw, timeout=5.0):
    """Send a raw line; return the single reply, which must be an error."""
    c.send_raw(raw if raw.endswith("\n") else raw + "\n")
    r = c.next_reply(timeout)
    assert r["ok"] is False, r
    assert set(r) == {"id", "ok", "error"}, r
    assert isinstance(r["error"].get("message"), str) and r["error"]["message"], r
    return r


def still_usable(c):
    res = c.ok("hello")
    assert res["daemon"] == "kioskd"


def test_malformed_json_exact_reply_and_connection_stays(ui):
    ui.send_raw('{"id": 1, "cmd": "hello"\n')
    raw = ui.sock.recv(65536)
    msg = json.loads(raw.decode())
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert msg["id"] is None and msg["ok"] is False
    assert msg["error"]["code"] == "bad_request"
    assert list(msg) == ["id", "ok", "error"]
    still_usable(ui)


@pytest.mark.parametrize("raw", [
    "{", "}", "nonsense", "{'id': 1, 'cmd': 'hello'}", '{"id":1,"cmd":"hello"}}',
    '{"id":1,"cmd":"hello",}', "\x00", '{"id":1,"id":2,"cmd":"hello"}',
])
def test_malformed_json(ui, raw):
    r = error_reply(ui, raw)
    assert r["id"] is None
    assert r["error"]["code"] == "bad_request"
    still_usable(ui)


def test_invalid_utf8(ui):
    ui.send_raw(b'{"id":1,"cmd":"\xff\xfe"}\n')
    r = ui.next_reply()
    assert r["id"] is None and r["error"]["code"] == "bad_request"
    still_usable(ui)


@pytest.mark.parametrize("raw", ["[1,2]", '"hello"', "42", "null", "true", "[]"])
def test_non_object_json(ui, raw):
    r = error_reply(ui, raw)
    assert r["id"] is None and r["error"]["code"] == "bad_request"
    still_usable(ui)


@pytest.mark.parametrize("obj", [
    {"cmd": "hello"},                 # missing id
    {"id": None, "cmd": "hello"},
    {"id": 1.5, "cmd": "hello"},
    {"id": True, "cmd": "hello"},
    {"id": [1], "cmd": "hello"},
    {"id": {"a": 1}, "cmd": "hello"},
])
def test_id_of_wrong_type_gets_null_id(ui, obj):
    r = error_reply(ui, json.dumps(obj))
    assert r["id"] is None and r["error"]["code"] == "bad_request"
    still_usable(ui)


@pytest.mark.parametrize("id", [0, -7, 2**53, "abc", "", "x" * 100])
def test_id_echoed(ui, id):
    ui.send({"id": id, "cmd": "hello"})
    r = ui.next_reply()
    assert r["id"] == id and r["ok"] is True


@pytest.mark.parametrize("obj,field", [
    ({"id": 11}, "cmd"),
    ({"id": 11, "cmd": 5}, "cmd"),
    ({"id": 11, "cmd": None}, "cmd"),
    ({"id": 11, "cmd": ""}, "cmd"),
    ({"id": 11, "cmd": "x" * 65}, "cmd"),
    ({"id": 11, "cmd": ["hello"]}, "cmd"),
    ({"id": 11, "cmd": "printer.status", "device": 5}, "device"),
    ({"id": 11, "cmd": "printer.status", "device": None}, "device"),
    ({"id": 11, "cmd": "printer.status", "device": ["printer0"]}, "device"),
    ({"id": 11, "cmd": "hello", "args": [1]}, "args"),
    ({"id": 11, "cmd": "hello", "args": "x"}, "args"),
    ({"id": 11, "cmd": "hello", "args": None}, "args"),
    ({"id": 11, "cmd": "printer.status", "timeout_ms": "100"}, "timeout_ms"),
    ({"id": 11, "cmd": "printer.status", "timeout_ms": 0}, "timeout_ms"),
    ({"id": 11, "cmd": "printer.status", "timeout_ms": -5}, "timeout_ms"),
    ({"id": 11, "cmd": "printer.status", "timeout_ms": 1.5}, "timeout_ms"),
    ({"id": 11, "cmd": "printer.status", "timeout_ms": 86400001}, "timeout_ms"),
    ({"id": 11, "cmd": "printer.status", "timeout_ms": None}, "timeout_ms"),
])
def test_envelope_field_of_wrong_type(ui, obj, field):
    r = error_reply(ui, json.dumps(obj))
    assert r["id"] == 11
    assert r["error"]["code"] == "bad_request", r
    assert field in r["error"]["message"], r
    still_usable(ui)


@pytest.mark.parametrize("cmd", ["foo", "foo.bar", "hello2", "HELLO", "printer.fly",
                                 "nosuchclass.status", "printer.", ".status", "printer..print",
                                 "status.printer", "device.list"])
def test_unknown_command(ui, cmd):
    e = ui.err(cmd, args={})
    assert e["code"] == "unknown_command", e


def test_unknown_device(ui):
    assert ui.err("printer.status", device="nope")["code"] == "unknown_device"
    assert ui.err("printer.status", device="")["code"] == "unknown_device"
    # no device of the class at all
    assert ui.err("scanner.status")["code"] == "unknown_device"


def test_device_of_wrong_class(ui):
    e = ui.err("printer.status", device="card0")
    assert e["code"] == "bad_request"
    assert "card0" in e["message"]


def test_device_optional_when_one_of_its_class(ui):
    assert ui.call("printer.status")["ok"] is True
    # two cameras: the device must be named
    e = ui.err("camera.status")
    assert e["code"] == "bad_request"
    assert ui.call("camera.status", device="cam1")["ok"] is True


@pytest.mark.parametrize("cmd,device,args,word", [
    ("locker.open", "locker0", {}, "door"),                         # missing required
    ("locker.open", "locker0", {"door": 0}, "door"),                # out of range
    ("locker.open", "locker0", {"door": 1001}, "door"),
    ("locker.open", "locker0", {"door": "1"}, "door"),              # wrong type
    ("locker.open", "locker0", {"door": 1, "force": True}, "force"),  # unknown arg
    ("printer.status", "printer0", {"x": 1}, "x"),
    ("audio.volume", "audio0", {"level": 101}, "level"),
    ("audio.volume", "audio0", {"level": -1}, "level"),
    ("audio.record", "audio0", {"duration_ms": 50}, "duration_ms"),
    ("audio.play", "audio0", {}, "exactly one"),
    ("audio.play", "audio0", {"tts": "a", "file": "/x"}, "exactly one"),
    ("audio.play", "audio0", {"blob": "abc"}, "blob"),
    ("cardreader.write", "card0", {"offset": 0, "data": "abc"}, "data"),   # odd hex
    ("cardreader.write", "card0", {"offset": 0, "data": "zz"}, "data"),    # not hex
    ("cardreader.write", "card0", {"data": "00"}, "offset"),
    ("cardreader.read", "card0", {"length": 0}, "length"),
    ("cardreader.apdu", "card0", {"apdu": "00a4"}, "apdu"),                # too short
    ("actuator.set", "climate0", {"on": True}, "output"),
    ("actuator.set", "climate0", {"output": "heater", "on": 1}, "on"),
    ("actuator.set", "climate0", {"output": "heater", "level": 101}, "level"),
    ("printer.print", "printer0", {}, "blocks"),
    ("printer.print", "printer0", {"blocks": []}, "blocks"),
    ("printer.print", "printer0", {"blocks": [{}]}, "blocks[0]"),
    ("printer.print", "printer0", {"blocks": [{"text": "a", "qr": "b"}]}, "blocks[0]"),
    ("printer.print", "printer0", {"blocks": [{"text": "a", "size": 3}]}, "size"),
    ("printer.print", "printer0", {"blocks": ["text"]}, "blocks[0]"),
    ("printer.print", "printer0", {"blocks": [{"feed": 0}]}, "feed"),
    ("camera.capture", "cam0", {"width": 8}, "width"),
])
def test_bad_args_against_schema(ui, cmd, device, args, word):
    e = ui.err(cmd, device=device, args=args)
    assert e["code"] == "bad_request", e
    assert word in e["message"], e


@pytest.mark.parametrize("cmd,args", [("config.reload", {}),
                                      ("sim.inject", {"what": "latency", "ms": 0})])
def test_admin_commands_refused_on_ui(ui, cmd, args):
    r = ui.call(cmd, device="printer0" if cmd == "sim.inject" else None, args=args)
    assert r["ok"] is False and r["error"]["code"] == "not_permitted", r


def test_roles_in_hello(ui, admin):
    h = ui.ok("hello")
    assert h["role"] == "ui"
    assert h["daemon"] == "kioskd" and isinstance(h["protocol"], int)
    assert isinstance(h["version"], str) and h["version"]
    a = admin.ok("hello")
    assert a["role"] == "admin"
    assert a["session"] != h["session"]


def test_admin_commands_work_on_admin(admin):
    r = admin.ok("config.reload")
    assert r["reloaded"] is True and r["changed"] == []
    r = admin.ok("sim.inject", device="printer0", args={"what": "latency", "ms": 0})
    assert r["done"] == "latency"
    # and admin may call what ui may
    assert admin.call("printer.status")["ok"] is True


def test_sim_inject_envelope_errors(admin):
    assert admin.err("sim.inject", args={"what": "latency"})["code"] == "bad_request"
    assert admin.err("sim.inject", device="nope", args={"what": "x"})["code"] == "unknown_device"
    assert admin.err("sim.inject", device="printer0", args={})["code"] == "bad_request"
    assert admin.err("sim.inject", device="printer0",
                     args={"what": "no_such_fault"})["code"] == "bad_request"


def test_blank_lines_are_keepalives(ui):
    ui.send_raw("\n\r\n\n")
    id = ui.request("hello")
    r = ui.next_reply()
    assert r["id"] == id and r["ok"] is True
    ui.drain()
    assert ui.inbox == []


def test_line_at_limit_is_accepted(ui):
    base = {"id": 5, "cmd": "hello", "pad": ""}
    n = len(json.dumps(base, separators=(",", ":")))
    base["pad"] = "p" * (MAX_LINE - n)
    line = json.dumps(base, separators=(",", ":"))
    assert len(line) == MAX_LINE
    ui.send_raw(line + "\n")
    r = ui.next_reply()
    assert r["id"] == 5 and r["ok"] is True, r


@pytest.mark.parametrize("newline", [True, False])
def test_too_large_closes_only_that_connection(daemon, newline):
    other = daemon.client()
    other.ok("hello")
    bad = daemon.client()
    payload = '{"id":1,"cmd":"hello","pad":"' + "x" * (MAX_LINE + 100) + '"}'
    if newline:
        payload += "\n"
    try:
        bad.send_raw(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    msgs = bad.expect_eof()
    assert len(msgs) == 1, msgs
    assert msgs[0]["ok"] is False and msgs[0]["id"] is None
    assert msgs[0]["error"]["code"] == "too_large"
    bad.close()
    # the other client is unaffected, and new ones are accepted
    other.ok("hello")
    with Client(daemon.ui_sock) as c:
        c.ok("hello")


def test_too_large_in_pieces(daemon):
    """A line sent in small pieces is refused as soon as it passes the limit,
    not buffered without bound."""
    bad = daemon.client()
    bad.send_raw('{"id":1,"cmd":"hello","pad":"')
    sent = 0
    closed = False
    while sent < 4 * MAX_LINE:
        try:
            bad.send_raw("y" * 512)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        sent += 512
    msgs = bad.expect_eof()
    assert [m["error"]["code"] for m in msgs] == ["too_large"], (msgs, closed)


def test_errors_keep_pipelined_order_usable(ui):
    """A burst of bad lines mixed with good ones: one reply each."""
    lines = ['{"id":1,"cmd":"hello"}', "garbage", '{"id":2,"cmd":"nope"}', "[]",
             '{"id":3,"cmd":"printer.status","device":"nope"}', '{"id":4,"cmd":"status"}']
    ui.send_raw("\n".join(lines) + "\n")
    got = [ui.next_reply() for _ in lines]
    by_id = {}
    for m in got:
        by_id.setdefault(json.dumps(m["id"]), []).append(m)
    assert by_id["1"][0]["ok"] is True
    assert [m["error"]["code"] for m in by_id["null"]] == ["bad_request", "bad_request"]
    assert by_id["2"][0]["error"]["code"] == "unknown_command"
    assert by_id["3"][0]["error"]["code"] == "unknown_device"
    assert by_id["4"][0]["ok"] is True
    ui.drain()
    assert ui.inbox == []


def test_status_and_devices_list_shape(ui):
    st = ui.ok("status")
    assert st["daemon"]["version"]
    assert isinstance(st["daemon"]["pid"], int)
    names = {d["name"]: d for d in st["devices"]}
    assert set(names) == {"printer0", "card0", "locker0", "audio0", "climate0", "cam0", "cam1"}
    assert all(d["state"] in ("ready", "busy") for d in st["devices"]), st["devices"]
    dl = ui.ok("devices.list")["devices"]
    p = [d for d in dl if d["name"] == "printer0"][0]
    assert p["class"] == "printer" and p["plugin"] == "sim"
    assert "print" in p["capabilities"] and "status" in p["capabilities"]


@pytest.mark.parametrize("obj", [
    {"id": 1, "cmd": "printer.status", "device": "a" * 63 + "é"},
    {"id": 1, "cmd": "printer.status", "device": "é" * 40},
    {"id": 1, "cmd": "printer.status", "args": {"a" * 63 + "é": 1}},
    {"id": 1, "cmd": "locker.open", "args": {"door": 1, "测" * 30: 1}},
])
def test_messages_truncated_inside_a_utf8_character_still_reply(ui, obj):
    """Error messages quote client strings cut to a length: cutting inside
    a multi-byte character must not lose the reply."""
    ui.send(obj)
    r = ui.next_reply(timeout=2)
    assert r["id"] == 1 and r["ok"] is False
    assert r["error"]["code"] in ("unknown_device", "bad_request")


def test_inject_message_truncated_inside_utf8(admin):
    r = admin.call("sim.inject", device="printer0", args={"what": "a" * 31 + "é"}, timeout=2)
    assert r["ok"] is False and r["error"]["code"] == "bad_request"
