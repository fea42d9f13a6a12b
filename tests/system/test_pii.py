"""No personal data in logs, ever -- not even at debug level."""

import pytest

from kiosk import daemon_section, sim_device

NAME = "Ouyang Xiuying"
ID_NUMBER = "44030419851231797X"
ADDRESS = "Shenzhen Futian Lianhua Road 77"
CARD_UID = "5ec7e7f00d"
CARD_DATA = "c0ffee15deadbeef4242"
QR = "PAYQR-8f3e1b2c9d"
TTS = NAME


@pytest.mark.parametrize("debug", [False, True])
def test_no_pii_in_logs(kd, debug):
    d = kd(daemon_section(log_level="debug" if debug else "info")
           + sim_device("id0", "idreader", latency_ms=0)
           + sim_device("card0", "cardreader", latency_ms=0)
           + sim_device("qr0", "barcode", latency_ms=0)
           + sim_device("audio0", "audio", latency_ms=0)
           + sim_device("printer0", "printer", latency_ms=0),
           args=["--debug"] if debug else [])
    a = d.admin()
    ui = d.client()
    ui.ok("events.subscribe", args={"topics": ["*"]})
    a.ok("sim.inject", "id0", {"what": "place", "identity": {
        "name": NAME, "id_number": ID_NUMBER, "address": ADDRESS}})
    r = ui.ok("idreader.read", timeout=10)
    assert r["identity"]["id_number"] == ID_NUMBER and r["identity"]["name"] == NAME
    a.ok("sim.inject", "card0", {"what": "insert",
                                 "card": {"type": "sle4442", "uid": CARD_UID,
                                          "data": CARD_DATA}})
    assert ui.ok("cardreader.read", args={"offset": 0, "length": 10})["data"] == CARD_DATA
    assert ui.ok("cardreader.apdu", args={"apdu": "ffca000000"})["response"].startswith(CARD_UID)
    ui.ok("cardreader.write", args={"offset": 16, "data": CARD_DATA})
    a.ok("sim.inject", "qr0", {"what": "scan", "code": QR})
    ui.ok("audio.play", args={"tts": TTS})
    ui.ok("printer.print", args={"blocks": [{"text": NAME}, {"qr": QR}]})
    # failures carry messages too
    ui.err("cardreader.write", args={"offset": 250, "data": CARD_DATA})
    ui.ok("cardreader.eject")
    a.ok("sim.inject", "id0", {"what": "remove"})
    d.stop()
    log = d.log()
    assert "ID card read" in log or "id0" in log  # the log did cover these devices
    for secret in (NAME, ID_NUMBER, ADDRESS, CARD_UID, CARD_DATA, QR, "Ouyang",
                   ID_NUMBER[:10], CARD_DATA[:8], CARD_UID.upper(), CARD_DATA.upper()):
        assert secret not in log, "PII %r in the log:\n%s" % (
            secret, "\n".join(l for l in log.splitlines() if secret in l))
