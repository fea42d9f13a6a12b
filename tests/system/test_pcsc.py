"""The pcsc plugin against real components: pcscd with the vpcd reader
driver and tests/tools/vcard, a virtual SLE4442 / MIFARE Classic 1K card
that speaks the vpcd protocol (see tests/tools/pcsc_env.py for how each
test gets a private pcscd).

Covered: reader and card insert/remove events, cardreader.wait (also while
a reload or shutdown happens), SLE4442 PSC verify with the error counter
and the last-try guard, write with read-back, a card pulled mid-write
(error and audit journal say what was written), MIFARE UID, named keys
from a root-only key file, auth/read/write by block, raw APDUs, bad input,
and that no UID or card byte reaches the log."""

import os
import signal
import sys
import time

import pytest

import kiosk
from kiosk import REPO, SLOW, daemon_section, wait_until

sys.path.insert(0, os.path.join(REPO, "tests", "tools"))
from pcsc_env import READER, PcscEnv  # noqa: E402

MIFARE_ATR = "3b8f8001804f0ca000000306030001000000006a"
SLE_ATR = "3b04a2131091"
UID = "04a1b2c3"
KEY_A = "a0a1a2a3a4a5"
KEY_B = "b0b1b2b3b4b5"


@pytest.fixture
def pcsc(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("the pcsc tests need root (private mount and network namespaces)")
    e = PcscEnv(str(tmp_path), kiosk.BUILD).start()
    yield e
    e.stop()


def keyfile(tmp_path, text=None, mode=0o600):
    p = tmp_path / "mifare.keys"
    p.write_text(text if text is not None else
                 "# test keys\nwater_a = %s\nwater_b = %s\nwrong = 000000000000\n"
                 % (KEY_A, KEY_B))
    os.chmod(p, mode)
    return str(p)


def card_conf(keys=None, **opts):
    lines = ["[device card0]", "class = cardreader", "plugin = pcsc", "reader = 00 00"]
    if keys:
        lines.append("key_file = %s" % keys)
    lines += ["%s = %s" % (k, v) for k, v in opts.items()]
    return daemon_section(reopen_min_ms=100, reopen_max_ms=500) + "\n".join(lines) + "\n"


def start(kd, pcsc, conf):
    d = kd(conf, env=pcsc.env)
    d.wait_state("card0", "ready")
    ui = d.client()
    wait_until(lambda: ui.ok("cardreader.status").get("reader") == READER, 10,
               "the plugin to find the reader")
    ui.ok("events.subscribe", args={"topics": ["cardreader.*"]})
    return d, ui


def read_state(path):
    with open(path, "rb") as f:
        return f.read()


def test_mifare_named_keys_auth_read_write(kd, pcsc, tmp_path):
    d, ui = start(kd, pcsc, card_conf(keyfile(tmp_path)))
    state = str(tmp_path / "mifare.state")
    pcsc.insert("mifare", state=state, uid=UID, key_a=KEY_A, key_b=KEY_B)
    ev = ui.event("cardreader.inserted", "card0", timeout=10)
    assert ev["data"] == {"type": "mifare", "atr": MIFARE_ATR}
    assert ui.ok("cardreader.wait", timeout_ms=5000) == {
        "type": "mifare", "atr": MIFARE_ATR, "uid": UID}
    st = ui.ok("cardreader.status")
    assert (st["card"], st["type"], st["memory_bytes"]) == ("present", "mifare", 1024)

    # reading a sector before authenticating it: the card says no
    e = ui.err("cardreader.read", args={"block": 4})
    assert e["code"] == "device_error" and "authenticate sector 1" in e["message"], e
    # keys are names from the key file, never bytes from the UI
    e = ui.err("cardreader.auth", args={"block": 4, "key": "gas_a"})
    assert e["code"] == "bad_request" and "no key named 'gas_a'" in e["message"], e
    e = ui.err("cardreader.auth", args={"block": 4, "key": "wrong"})
    assert e["code"] == "device_error" and "authentication failed" in e["message"], e
    assert ui.ok("cardreader.auth", args={"block": 4, "key": "water_a"}) == {
        "block": 4, "sector": 1, "key_type": "A"}
    assert ui.ok("cardreader.read", args={"block": 4, "blocks": 2}) == {
        "type": "mifare", "block": 4, "blocks": 2, "data": "00" * 32}
    data = "11" * 16 + "22" * 16
    assert ui.ok("cardreader.write", args={"block": 4, "data": data}) == {"written": 32}
    assert ui.ok("cardreader.read", args={"block": 5})["data"] == "22" * 16
    assert read_state(state)[64:96] == bytes.fromhex(data)
    # key B opens the sector too
    assert ui.ok("cardreader.auth", args={"block": 6, "key": "water_b", "key_type": "B"})[
        "key_type"] == "B"
    # sector trailers and block 0 are not written; sector 2 is not authenticated
    e = ui.err("cardreader.write", args={"block": 7, "data": "00" * 16})
    assert e["code"] == "bad_request" and "trailer of sector 1" in e["message"], e
    e = ui.err("cardreader.write", args={"block": 0, "data": "00" * 16})
    assert e["code"] == "bad_request" and "read-only" in e["message"], e
    e = ui.err("cardreader.write", args={"block": 8, "data": "00" * 16})
    assert e["code"] == "device_error", e
    # MIFARE is addressed by block
    e = ui.err("cardreader.read", args={"offset": 0, "length": 16})
    assert e["code"] == "bad_request" and "by block" in e["message"], e
    e = ui.err("cardreader.read", args={"block": 63, "blocks": 2})
    assert e["code"] == "bad_request" and "past the end" in e["message"], e
    e = ui.err("cardreader.verify", args={"psc": "ffffff"})
    assert e["code"] == "bad_request" and "SLE4442" in e["message"], e
    # raw APDUs: PC/SC part 3 GET UID
    assert ui.ok("cardreader.apdu", args={"apdu": "ffca000000"})["response"] == UID + "9000"

    pcsc.remove()
    ui.event("cardreader.removed", "card0", timeout=10)
    assert ui.ok("cardreader.status")["card"] == "absent"
    e = ui.err("cardreader.read", args={"block": 4})
    assert (e["code"], e["message"]) == ("device_error", "no card in reader")
    d.stop()
    log = d.log()
    assert "card inserted (mifare)" in log
    for secret in (UID, KEY_A, KEY_B, "1111111111", "2222222222"):
        assert secret not in log.lower(), "PII/secret %s in the log" % secret


def test_sle4442_psc_counter_guard_and_write(kd, pcsc, tmp_path):
    d, ui = start(kd, pcsc, card_conf())
    state = str(tmp_path / "sle.state")
    pcsc.insert("sle4442", state=state, psc="123456")
    assert ui.event("cardreader.inserted", "card0", timeout=10)["data"] == {
        "type": "sle4442", "atr": SLE_ATR}
    r = ui.ok("cardreader.wait")
    assert r == {"type": "sle4442", "atr": SLE_ATR, "psc_attempts_left": 3}, r
    assert ui.ok("cardreader.read", args={"offset": 0, "length": 8})["data"] == \
        "a213109104050607"
    assert len(ui.ok("cardreader.read")["data"]) == 512
    e = ui.err("cardreader.write", args={"offset": 32, "data": "0102"})
    assert e["code"] == "device_error" and "PSC not verified" in e["message"], e

    assert ui.ok("cardreader.verify", args={"psc": "000000"}) == {
        "verified": False, "psc_attempts_left": 2}
    assert read_state(state)[260] == 2  # the card's own counter went down
    assert ui.ok("cardreader.verify", args={"psc": "000001"})["psc_attempts_left"] == 1
    # the last try is not spent without force
    e = ui.err("cardreader.verify", args={"psc": "123456"})
    assert e["code"] == "device_error" and "only 1 PSC attempt left" in e["message"], e
    assert read_state(state)[260] == 1
    assert ui.ok("cardreader.status")["psc_attempts_left"] == 1
    assert ui.ok("cardreader.verify", args={"psc": "123456", "force": True}) == {
        "verified": True, "psc_attempts_left": 3}
    assert ui.ok("cardreader.status")["psc_verified"] is True

    assert ui.ok("cardreader.write", args={"offset": 32, "data": "0032000501"}) == {
        "written": 5}
    assert ui.ok("cardreader.read", args={"offset": 30, "length": 9})["data"] == \
        "1e1f0032000501ffff"
    assert read_state(state)[32:37] == bytes.fromhex("0032000501")
    # bytes 0-31 are protected on this card: the read-back catches the
    # write the chip silently dropped
    e = ui.err("cardreader.write", args={"offset": 4, "data": "eeee"})
    assert e["code"] == "device_error" and "0 of 2 bytes written" in e["message"], e
    e = ui.err("cardreader.write", args={"offset": 250, "data": "00" * 10})
    assert e["code"] == "bad_request" and "past end" in e["message"], e
    e = ui.err("cardreader.read", args={"offset": 300})
    assert e["code"] == "bad_request", e
    e = ui.err("cardreader.read", args={"block": 1})
    assert e["code"] == "bad_request" and "offset" in e["message"], e
    e = ui.err("cardreader.auth", args={"block": 1, "key": "x"})
    assert e["code"] == "bad_request" and "MIFARE" in e["message"], e
    d.stop()
    assert "123456" not in d.log() and "0032000501" not in d.log()


def test_locked_card_is_refused_even_with_force(kd, pcsc, tmp_path):
    d, ui = start(kd, pcsc, card_conf())
    pcsc.insert("sle4442", tries=0)
    ui.event("cardreader.inserted", "card0", timeout=10)
    e = ui.err("cardreader.verify", args={"psc": "ffffff", "force": True})
    assert e["code"] == "device_error" and "locked" in e["message"], e
    d.stop()


def test_card_pulled_mid_write_is_journaled(kd, pcsc, tmp_path):
    d, ui = start(kd, pcsc, card_conf(write_chunk=1))
    a = d.admin()
    state = str(tmp_path / "sle.state")
    pcsc.insert("sle4442", state=state, die_after=2)
    ui.event("cardreader.inserted", "card0", timeout=10)
    assert ui.ok("cardreader.verify", args={"psc": "ffffff"})["verified"] is True
    r = ui.call("cardreader.write", args={"offset": 32, "data": "0032000501",
                                          "flow": "f-torn"}, timeout=15)
    assert r["ok"] is False, r
    msg = r["error"]["message"]
    assert r["error"]["code"] == "device_error"
    assert msg.startswith("card removed during write: 2 of 5 bytes written"), msg
    assert "bytes 32-33 written" in msg and "bytes 34-36 not confirmed" in msg, msg
    ui.event("cardreader.removed", "card0", timeout=10)
    # the card holds exactly what the error says
    assert read_state(state)[30:38] == bytes.fromhex("1e1f0032ffffffff")
    a.ok("txn.submit", args={"type": "t.sync", "payload": {}})  # commits the journal
    entries = a.ok("audit.list", args={"flow": "f-torn"})["entries"]
    assert [(x["cmd"], x["outcome"]) for x in entries] == [
        ("cardreader.write", "device_error")], entries
    assert entries[0]["detail"].startswith("card removed during write: 2 of 5 bytes written")
    # the same card back in: the next write finishes the job
    pcsc.insert("sle4442", state=state)
    ui.event("cardreader.inserted", "card0", timeout=10)
    assert ui.ok("cardreader.status")["psc_verified"] is False  # a new insertion
    ui.ok("cardreader.verify", args={"psc": "ffffff"})
    assert ui.ok("cardreader.write", args={"offset": 34, "data": "000501"})["written"] == 3
    assert read_state(state)[32:37] == bytes.fromhex("0032000501")
    d.stop()


def test_mifare_pulled_mid_write(kd, pcsc, tmp_path):
    d, ui = start(kd, pcsc, card_conf(keyfile(tmp_path)))
    pcsc.insert("mifare", state=str(tmp_path / "m.state"), key_a=KEY_A, die_after=1)
    ui.event("cardreader.inserted", "card0", timeout=10)
    ui.ok("cardreader.auth", args={"block": 4, "key": "water_a"})
    e = ui.err("cardreader.write", args={"block": 4, "data": "ab" * 48}, timeout=15)
    assert e["message"].startswith("card removed during write: 1 of 3 blocks written"), e
    assert "block 4 written" in e["message"] and "blocks 5-6 not confirmed" in e["message"]
    d.stop()


def test_wait_then_insert_and_cancel(kd, pcsc):
    d, ui = start(kd, pcsc, card_conf())
    wid = ui.request("cardreader.wait", timeout_ms=20000)
    time.sleep(0.2)
    assert ui.ok("cardreader.status")["waiting"] is True
    pcsc.insert("sle4442")
    r = ui.reply(wid, timeout=10)
    assert r["ok"] is True and r["result"]["type"] == "sle4442", r
    pcsc.remove()
    ui.event("cardreader.removed", "card0", timeout=10)
    wid = ui.request("cardreader.wait", timeout_ms=300)
    assert ui.reply(wid, timeout=5)["error"]["code"] == "timeout"
    assert ui.ok("cardreader.status")["waiting"] is False
    d.stop()


def test_reload_while_waiting(kd, pcsc):
    conf = card_conf()
    d, ui = start(kd, pcsc, conf)
    a = d.admin()
    wid = ui.request("cardreader.wait", timeout_ms=30000)
    time.sleep(0.2)
    d.write_conf(conf + "write_chunk = 8\n")
    t0 = time.monotonic()
    assert a.ok("config.reload")["changed"] == ["card0"]
    r = ui.reply(wid, timeout=5)
    assert r["error"]["code"] == "device_offline", r
    assert time.monotonic() - t0 < 2 * SLOW  # SCardCancel: no waiting out a poll
    d.wait_state("card0", "ready", timeout=10)
    pcsc.insert("mifare")
    assert ui.ok("cardreader.wait", timeout=10)["type"] == "mifare"
    d.stop()


def test_shutdown_while_waiting(kd, pcsc):
    d, ui = start(kd, pcsc, card_conf())
    wid = ui.request("cardreader.wait", timeout_ms=30000)
    time.sleep(0.2)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    r = ui.reply(wid, timeout=5)
    assert r["error"]["code"] == "device_offline", r
    assert d.wait_exit() == 0, d.log()
    assert time.monotonic() - t0 < 3 * SLOW  # SCardCancel ended the monitor at once
    d.stop()  # no sanitizer report


class Frozen:
    """pcscd stopped with SIGSTOP: alive, its socket open, never answering
    (what a wedged service looks like to its clients)."""

    def __init__(self, pcsc):
        self.pid = pcsc.pcscd.pid
        with open("/proc/%d/comm" % self.pid) as f:
            assert f.read().strip() == "pcscd"

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)


def start_with_card(kd, pcsc):
    d, ui = start(kd, pcsc, card_conf())
    pcsc.insert("mifare")
    wait_until(lambda: ui.ok("cardreader.status").get("card") == "present", 10, "the card")
    return d, ui


def test_stop_with_pcscd_frozen_is_bounded(kd, pcsc):
    # closing the reader waits for pcscd twice (the monitor's SCardCancel and
    # join, SCardReleaseContext): bounded, then left behind, never the loop
    d, ui = start_with_card(kd, pcsc)
    ui.ok("cardreader.apdu", args={"apdu": "ffca000000"})  # a context and a connection
    with Frozen(pcsc):
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait_exit(15) == 0, d.log()
        took = time.monotonic() - t0
    assert took < 5 * SLOW, took
    assert d.log_lines("pcscd did not answer within 1000 ms of the close"), d.log()
    d.stop()  # no sanitizer report


def test_reload_with_pcscd_frozen_keeps_the_loop_answering(kd, pcsc):
    d, ui = start_with_card(kd, pcsc)
    with Frozen(pcsc):
        d.write_conf(card_conf(write_chunk=8))  # the device is reconfigured: closed
        d.signal(signal.SIGHUP)
        d.wait_log("pcscd did not answer within 1000 ms", timeout=10 * SLOW)
        t0 = time.monotonic()
        assert ui.ok("hello")
        assert time.monotonic() - t0 < 0.5 * SLOW
    # pcscd back: the reopened device finds the reader again
    wait_until(lambda: ui.ok("cardreader.status").get("card") == "present", 15,
               "the card after pcscd came back")
    ui.ok("cardreader.apdu", args={"apdu": "ffca000000"})
    d.stop()


def test_stop_with_a_command_stuck_in_pcscd_is_bounded(kd, pcsc):
    # a worker inside SCardTransmit/SCardEstablishContext with pcscd frozen
    # cannot be interrupted: the stop leaves it behind after cancel_grace_ms,
    # says so, and exits non-zero
    d, ui = start_with_card(kd, pcsc)
    with Frozen(pcsc):
        e = ui.err("cardreader.apdu", args={"apdu": "ffca000000"}, timeout_ms=500)
        assert e["code"] == "timeout", e
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(15)
        took = time.monotonic() - t0
    assert rc == 1, d.log()
    assert took < 2 + 5 * SLOW, took
    assert d.log_lines(r"1 device call is still running 2000 ms \(cancel_grace_ms\) after the "
                       r"stop"), d.log()
    assert d.log_lines(r"kioskd info: stopped$"), d.log()
    d.stop(expect_rc=1)


def test_bad_input(kd, pcsc, tmp_path):
    d, ui = start(kd, pcsc, card_conf(keyfile(tmp_path)))
    pcsc.insert("sle4442")
    ui.event("cardreader.inserted", "card0", timeout=10)
    cases = [
        ("apdu", {"apdu": "00" * 262}, "apdu: length must be between 8 and 522"),
        ("apdu", {"apdu": "00a4"}, "apdu: length must be between 8 and 522"),
        ("apdu", {"apdu": "zz" * 4}, "apdu: must be an even number of hex digits"),
        ("verify", {"psc": "ffff"}, "psc: must be 3 bytes (6 hex digits)"),
        ("verify", {"psc": "ffffffff"}, "psc: must be 3 bytes (6 hex digits)"),
        ("verify", {}, "missing argument 'psc'"),
        ("verify", {"psc": "ffffff", "force": "yes"}, "force: must be true or false"),
        ("auth", {"block": 4, "key": "water_a", "key_type": "C"}, "key_type: must be one of A|B"),
        ("auth", {"block": 256, "key": "water_a"}, "block: must be between 0 and 255"),
        ("auth", {"block": 4, "key": "water_a", "bytes": "ff"}, "unknown argument 'bytes'"),
        ("write", {"block": 4, "data": "00" * 15}, "whole 16-byte blocks"),
        ("write", {"offset": 1, "block": 4, "data": "00"}, "not both"),
        ("read", {"offset": 1, "blocks": 2}, "not both"),
    ]
    for verb, args, want in cases:
        e = ui.err("cardreader." + verb, args=args)
        assert e["code"] == "bad_request" and want in e["message"], (verb, args, e)
    # an APDU the card does not know is the card's answer, not an error
    assert ui.ok("cardreader.apdu", args={"apdu": "00b0000010"})["response"] == "6e00"
    assert d.proc.poll() is None
    d.stop()


def test_bad_configuration(kd, pcsc, tmp_path):
    rc, _, err = kiosk.run_kioskd(["--check-config", "--config",
                                   str(_write(tmp_path, card_conf(colour="red")))])
    assert rc != 0 and "colour" in err, err
    rc, _, err = kiosk.run_kioskd(["--check-config", "--config",
                                   str(_write(tmp_path, card_conf(write_chunk=0)))])
    assert rc != 0 and "write_chunk" in err, err
    # a key file others can read is refused, and the reason says why
    d = kd(card_conf(keyfile(tmp_path, mode=0o644)), env=pcsc.env)
    st = d.wait_state("card0", "offline")
    assert "must not be accessible by group or others" in st["reason"], st
    d.stop()
    bad = keyfile(tmp_path, "water_a = a0a1a2\n")
    d = kd(card_conf(bad), env=pcsc.env)
    st = d.wait_state("card0", "offline")
    assert "line 1" in st["reason"] and "12 hex digits" in st["reason"], st
    assert "a0a1a2" not in d.log()
    d.stop()


def _write(tmp_path, text):
    p = tmp_path / "check.conf"
    p.write_text(text)
    return p


def test_no_pcscd_and_no_reader(kd, pcsc, tmp_path):
    d = kd(card_conf(), env={"PCSCLITE_CSOCK_NAME": str(tmp_path / "nothing.comm")})
    st = d.wait_state("card0", "offline", timeout=10)
    assert "cannot reach pcscd" in st["reason"], st
    d.stop()
    d = kd(card_conf().replace("reader = 00 00", "reader = Omnikey"), env=pcsc.env)
    st = d.wait_state("card0", "offline", timeout=10)
    assert "no PC/SC reader matching 'Omnikey'" in st["reason"], st
    d.stop()


def test_pcscd_dies(kd, pcsc):
    d, ui = start(kd, pcsc, card_conf())
    pcsc.stop()
    st = d.wait_state("card0", "offline", timeout=10)
    assert "pcscd" in st["reason"] or "reader" in st["reason"], st
    d.stop()
