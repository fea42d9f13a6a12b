"""The simulator takes the cardreader verbs the pcsc plugin added (verify,
auth, block addressing) with the same rules, so a UI written against the
simulator works on a real reader."""
from kiosk import daemon_section, sim_device

CONF = daemon_section() + sim_device("card0", "cardreader", latency_ms=0)


def inject(a, what, **args):
    a.ok("sim.inject", "card0", dict({"what": what}, **args))


def test_sim_sle4442_verify_guard(kd):
    d = kd(CONF)
    a, ui = d.admin(), d.client()
    inject(a, "insert", card={"type": "sle4442"})
    assert ui.ok("cardreader.verify", args={"psc": "000000"}) == {
        "verified": False, "psc_attempts_left": 2}
    ui.ok("cardreader.verify", args={"psc": "000000"})
    e = ui.err("cardreader.verify", args={"psc": "ffffff"})
    assert e["code"] == "device_error" and "only 1 PSC attempt left" in e["message"], e
    assert ui.ok("cardreader.status")["psc_attempts_left"] == 1
    assert ui.ok("cardreader.verify", args={"psc": "ffffff", "force": True}) == {
        "verified": True, "psc_attempts_left": 3}
    assert ui.err("cardreader.auth", args={"block": 4, "key": "transport"})["code"] == \
        "bad_request"
    assert ui.err("cardreader.read", args={"block": 1})["code"] == "bad_request"
    d.stop()


def test_sim_mifare_auth_and_blocks(kd):
    d = kd(CONF)
    a, ui = d.admin(), d.client()
    inject(a, "insert", card={"type": "mifare"})
    e = ui.err("cardreader.read", args={"block": 4})
    assert e["code"] == "device_error" and "authenticate sector 1" in e["message"], e
    e = ui.err("cardreader.auth", args={"block": 4, "key": "water_a"})
    assert e["code"] == "bad_request" and "no key named 'water_a'" in e["message"], e
    assert ui.ok("cardreader.auth", args={"block": 4, "key": "transport"}) == {
        "block": 4, "sector": 1, "key_type": "A"}
    assert ui.ok("cardreader.write", args={"block": 5, "data": "ab" * 16}) == {"written": 16}
    assert ui.ok("cardreader.read", args={"block": 5})["data"] == "ab" * 16
    assert ui.err("cardreader.write", args={"block": 7, "data": "00" * 16})["code"] == \
        "bad_request"
    assert ui.err("cardreader.read", args={"block": 4, "blocks": 5})["code"] == "device_error"
    assert ui.err("cardreader.verify", args={"psc": "ffffff"})["code"] == "bad_request"
    d.stop()
