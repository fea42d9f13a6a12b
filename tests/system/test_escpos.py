"""The escpos plugin against real byte streams: a raw-TCP listener and a
pty play the printer (tests/system/escpos_decode.py), capture every byte
the daemon sends, decode it as ESC/POS and answer DLE EOT status queries
with the status the test sets.  Nothing is mocked inside the daemon."""

import pytest

import kiosk
from escpos_decode import PtyPrinter, TcpPrinter, render_text
from kiosk import run_kioskd, sim_device, wait_until

RECEIPT = [
    {"text": "加油卡充值 GAS TOP-UP", "align": "center", "bold": True, "double": True},
    {"text": "卡号 Card 4442****0001"},
    {"text": "金额 Amount:  50.00 元", "align": "right"},
    {"qr": "https://kiosk.example/r/T-20261204-0001?站=朝阳", "size": 6, "align": "center"},
    {"barcode": "20261204001", "symbology": "code128"},
    {"feed": 2},
    {"cut": "partial"},
]


def escpos_device(name="printer0", **opts):
    lines = ["[device %s]" % name, "class = printer", "plugin = escpos"]
    lines += ["%s = %s" % (k, v) for k, v in opts.items()]
    return "\n".join(lines) + "\n\n"


@pytest.fixture
def tcp_printer():
    p = TcpPrinter().start()
    yield p
    p.stop()


def tcp_conf(printer, **opts):
    o = dict(transport="tcp", host="127.0.0.1", port=printer.port, poll_ms=100,
             timeout_ms=1000)
    o.update(opts)
    return escpos_device(**o)


def printed(items):
    """Everything but status traffic: what reached the paper."""
    return [i for i in items if i["kind"] != "status"]


def start(kd, printer, extra="", **opts):
    d = kd(tcp_conf(printer, **opts) + extra)
    d.wait_state("printer0", "ready")
    wait_until(lambda: len(printer.queries()) >= 4, 5, "the first status poll")
    return d


def test_tcp_receipt_bytes_decode_to_the_document(kd, tcp_printer):
    d = start(kd, tcp_printer)
    ui = d.client()
    ui.ok("events.subscribe", args={"topics": ["printer.*"]})
    r = ui.ok("printer.print", args={"blocks": RECEIPT})
    assert r["lines"] == 1 + 1 + 1 + 1 + 1 + 2 + 1 and r["bytes"] > 100
    ui.event("printer.printed", "printer0")
    items = tcp_printer.wait_items(lambda its: any(i["kind"] == "cut" for i in its))
    assert tcp_printer.errors == []
    texts = [i for i in items if i["kind"] == "text"]
    # double size: 24 columns; the title is 22 columns, so one line
    assert texts[0]["text"] == "加油卡充值 GAS TOP-UP"
    assert texts[0]["chinese"] and texts[0]["bold"] and texts[0]["double"]
    assert texts[0]["align"] == "center"
    assert texts[1]["text"] == "卡号 Card 4442****0001" and not texts[1]["bold"]
    assert texts[2]["text"] == "金额 Amount:  50.00 元" and texts[2]["align"] == "right"
    qr = [i for i in items if i["kind"] == "qr"]
    assert len(qr) == 1
    assert qr[0]["data"].decode("utf-8") == RECEIPT[3]["qr"]
    assert qr[0]["size"] == 6 and qr[0]["ec"] == "M" and qr[0]["align"] == "center"
    bc = [i for i in items if i["kind"] == "barcode"]
    assert bc == [{"kind": "barcode", "symbology": "code128", "data": "20261204001",
                   "align": "left", "ended": True}]
    assert [i["lines"] for i in items if i["kind"] == "feed"] == [2]
    assert items[-1] == {"kind": "cut", "mode": "partial"}
    assert d.device("printer0")["status"]["printed_jobs"] == 1


def test_tcp_long_text_wraps_at_width_without_splitting_characters(kd, tcp_printer):
    d = start(kd, tcp_printer, width=16)
    a = d.admin()
    a.ok("printer.print", args={"blocks": [{"text": "一二三四五六七八九十\nabcdefghijklmnopqrstu"},
                                           {"text": "ab一二三四五六七八"}]})
    items = tcp_printer.wait_items(lambda its: len(its) >= 6)
    assert [i["text"] for i in items] == ["一二三四五六七八", "九十", "abcdefghijklmnop", "qrstu",
                                          "ab一二三四五六七", "八"]
    assert tcp_printer.errors == []


def test_tcp_status_drives_state_and_events(kd, tcp_printer):
    d = start(kd, tcp_printer)
    ui = d.client()
    ui.ok("events.subscribe", args={"topics": ["printer.*"]})
    a = d.admin()
    st = tcp_printer.status

    st.paper = "low"
    ui.event("printer.paper_low", "printer0")
    assert a.ok("printer.status")["paper"] == "low"
    # near end still prints
    a.ok("printer.print", args={"blocks": [{"text": "still printing"}]})

    st.paper = "out"
    ui.event("printer.paper_out", "printer0")
    s = a.ok("printer.status")
    assert s["paper"] == "out" and s["online"] is False
    tcp_printer.clear()
    e = a.err("printer.print", args={"blocks": [{"text": "must not print"}, {"cut": True}]})
    assert e == {"code": "device_offline", "message": "paper out"}
    tcp_printer.wait_queries(4)  # the poll goes on; nothing else was sent
    assert tcp_printer.items == []

    st.paper = "ok"
    ui.event("printer.paper_ok", "printer0")
    st.cover_open = True
    ui.event("printer.cover_open", "printer0")
    assert a.ok("printer.status")["cover"] == "open"
    assert a.err("printer.print", args={"blocks": [{"text": "x"}]})["message"] == "cover open"
    st.cover_open = False
    ui.event("printer.cover_closed", "printer0")

    st.cutter_error = True
    ui.event("printer.jam", "printer0")
    assert a.ok("printer.status")["jammed"] is True
    st.cutter_error = False
    ui.event("printer.jam_cleared", "printer0")
    a.ok("printer.print", args={"blocks": [{"text": "back"}]})
    assert any(i.get("text") == "back" for i in tcp_printer.wait_items(
        lambda its: any(i.get("text") == "back" for i in its)))


def test_tcp_paper_out_found_by_the_print_itself_prints_nothing(kd, tcp_printer):
    """The daemon's last poll said ok; the paper ran out since.  The print
    asks again before sending and refuses: no byte of the document goes out."""
    d = start(kd, tcp_printer, poll_ms=600000)
    a = d.admin()
    assert a.ok("printer.status")["paper"] == "ok"
    tcp_printer.clear()
    tcp_printer.status.paper = "out"
    e = a.err("printer.print", args={"blocks": [{"text": "收据"}, {"cut": True}]})
    assert e["code"] == "device_offline" and e["message"] == "paper out"
    assert tcp_printer.queries() == [1, 2, 3, 4]
    assert tcp_printer.items == []
    assert a.ok("printer.status")["paper"] == "out"


def test_tcp_connection_lost_goes_offline_and_comes_back(kd, tcp_printer):
    d = start(kd, tcp_printer, extra="[daemon]\nreopen_min_ms = 100\nreopen_max_ms = 200\n\n")
    before = tcp_printer.connections
    tcp_printer.drop()
    d.wait_state("printer0", "offline")
    d.wait_state("printer0", "ready")
    wait_until(lambda: tcp_printer.connections > before, 5, "a new connection")
    d.admin().ok("printer.print", args={"blocks": [{"text": "after reconnect"}]})
    tcp_printer.wait_items(lambda its: any(i.get("text") == "after reconnect" for i in its))


def test_tcp_host_name_is_looked_up_by_the_first_job(kd, tcp_printer):
    # a name is not refused at open any more: a worker job looks it up
    # (DNS may take seconds) and connects, then the device is used as with
    # an address; the connection it made is the one later jobs use
    d = start(kd, tcp_printer, host="localhost")
    d.admin().ok("printer.print", args={"blocks": [{"text": "by name"}]})
    tcp_printer.wait_items(lambda its: any(i.get("text") == "by name" for i in its))
    assert "not an IP address" not in d.log()


def test_tcp_unknown_host_name_keeps_the_device_offline_with_the_resolver_reason(kd):
    # .invalid never resolves (RFC 6761); one short try per lookup
    d = kd(escpos_device(transport="tcp", host="receipt-printer.invalid", port=9100,
                         poll_ms=100, timeout_ms=500),
           env={"RES_OPTIONS": "timeout:1 attempts:1"})
    dev = d.wait_state("printer0", "offline", timeout=20)
    assert "host 'receipt-printer.invalid'" in dev["reason"], dev
    e = d.admin().err("printer.print", args={"blocks": [{"text": "x"}]})
    assert e["code"] == "device_offline"
    assert d.proc.poll() is None


def test_tcp_printer_that_never_answers_status(kd, tcp_printer):
    tcp_printer.status.silent = True
    d = kd(tcp_conf(tcp_printer, timeout_ms=200))
    dev = d.wait_state("printer0", "offline")
    assert "did not answer" in dev["reason"] and "status = false" in dev["reason"]
    # status = false: no queries, prints go out as they are
    d2 = kd(tcp_conf(tcp_printer, status="false"))
    d2.wait_state("printer0", "ready")
    d2.admin().ok("printer.print", args={"blocks": [{"text": "no status"}]})
    tcp_printer.wait_items(lambda its: any(i.get("text") == "no status" for i in its))
    assert d2.admin().ok("printer.status")["paper"] == "unknown"


def test_tcp_garbage_status_is_not_taken_for_status(kd, tcp_printer):
    tcp_printer.status.garbage = True
    d = kd(tcp_conf(tcp_printer))
    dev = d.wait_state("printer0", "offline")
    assert "is not ESC/POS status" in dev["reason"]


# --- bad input: each a clear error, nothing printed, no crash ---

@pytest.mark.parametrize("opts,msg", [
    ({"colour": "red"}, "unknown option 'colour'"),
    ({"port": "70000"}, "port"),
    ({"width": "8"}, "width"),
    ({"poll_ms": "fast"}, "poll_ms"),
    ({"status": "maybe"}, "status"),
])
def test_bad_options_are_refused_by_check_config(tmp_path, opts, msg):
    conf = tmp_path / "kioskd.conf"
    o = dict(transport="tcp", host="127.0.0.1", port=9100)
    o.update(opts)
    conf.write_text(escpos_device(**o))
    rc, out, err = run_kioskd(["--check-config", "--config", str(conf)])
    assert rc != 0
    assert msg in out + err, out + err


@pytest.mark.parametrize("opts,reason", [
    ({"transport": "serial"}, "transport 'serial': must be tcp, usb or chardev"),
    ({"transport": "tcp"}, "transport tcp needs 'host'"),
    ({"transport": "chardev"}, "transport chardev needs 'device'"),
    ({"transport": "chardev", "device": "/nonexistent/lp0"}, "No such file"),
    ({"transport": "usb", "usb_id": "epson"}, "usb_id 'epson'"),
    ({"transport": "tcp", "host": "127.0.0.1", "qr_ec": "X"}, "qr_ec 'X'"),
])
def test_bad_option_values_keep_the_device_offline_with_a_reason(kd, opts, reason):
    d = kd(escpos_device(**opts))
    dev = d.wait_state("printer0", "offline")
    assert reason in dev["reason"], dev
    e = d.admin().err("printer.print", args={"blocks": [{"text": "x"}]})
    assert e["code"] == "device_offline"


BAD_DOCS = [
    ([{"text": "emoji 😀"}], "blocks[0]: text: U+1F600 is not in the printer's GBK font"),
    ([{"text": "ok"}, {"text": "ext-B \U00020000"}], "blocks[1]: text: U+20000 is not in"),
    ([{"text": "unassigned \u0378"}], "U+0378 is not in the printer's GBK font"),
    ([{"text": "private \ue000"}], "private-use character U+E000"),
    ([{"text": "inject \u001bE\u0001"}], "control character U+001B"),
    ([{"barcode": "123456789012X", "symbology": "ean13"}], "cannot be encoded as ean13"),
    ([{"barcode": "4006381333932", "symbology": "ean13"}], "cannot be encoded as ean13"),
    ([{"barcode": "lower case", "symbology": "code39"}], "cannot be encoded as code39"),
    ([{"image": "0" * 64}], "blocks[0]: image 00000000: no such blob"),
]


@pytest.mark.parametrize("blocks,msg", BAD_DOCS)
def test_bad_documents_are_bad_requests_and_print_nothing(kd, tcp_printer, blocks, msg):
    d = start(kd, tcp_printer)
    tcp_printer.clear()
    e = d.admin().err("printer.print", args={"blocks": blocks})
    assert e["code"] == "bad_request" and msg in e["message"], e
    tcp_printer.wait_queries(4)
    assert tcp_printer.items == []
    assert d.device("printer0")["state"] == "ready"


def test_qr_payload_too_long_for_the_printers_qr(kd, tcp_printer):
    d = start(kd, tcp_printer, qr_ec="H")
    a = d.admin()
    tcp_printer.clear()
    e = a.err("printer.print", args={"blocks": [{"qr": "x" * 1274}]})
    assert e["code"] == "bad_request"
    assert "1274 bytes does not fit the printer's QR code (1 to 1273 bytes at error " \
           "correction H)" in e["message"]
    # the largest that fits prints, whole
    a.ok("printer.print", args={"blocks": [{"qr": "y" * 1273}]})
    items = tcp_printer.wait_items(lambda its: any(i["kind"] == "qr" for i in its))
    assert [i["data"] for i in items if i["kind"] == "qr"] == [b"y" * 1273]


def test_images_png_prints_and_non_image_blob_is_refused(kd, tcp_printer):
    d = start(kd, tcp_printer, dots=48,
              extra=sim_device("camera0", "camera") + sim_device("audio0", "audio"))
    a = d.admin()
    png = a.ok("camera.capture", "camera0", {"width": 64, "height": 48})["blob"]
    wav = a.ok("audio.record", "audio0", {"duration_ms": 100})["blob"]
    tcp_printer.clear()
    e = a.err("printer.print", "printer0", {"blocks": [{"image": wav}]})
    assert e == {"code": "bad_request",
                 "message": "blocks[0]: image: the blob is not a PNG image"}
    tcp_printer.wait_queries(4)
    assert tcp_printer.items == []
    a.ok("printer.print", "printer0", {"blocks": [{"image": png, "align": "center"}]})
    items = tcp_printer.wait_items(lambda its: any(i["kind"] == "image" for i in its))
    img = [i for i in items if i["kind"] == "image"][0]
    # 64x48 scaled to the 48 printable dots: 48x36
    assert (img["width"], img["height"], img["align"]) == (48, 36, "center")
    assert any(img["data"]) and tcp_printer.errors == []


def test_cancel_while_the_printer_takes_no_data(kd):
    """A printer that stopped reading holds the write: a cancel is
    answered, the half-sent document is not left to swallow the next one
    (the device reconnects), and the printer prints again afterwards."""
    p = PtyPrinter().start()
    try:
        d = kd(escpos_device(transport="chardev", device=p.path, poll_ms=100,
                             timeout_ms=5000)
               + "[daemon]\nreopen_min_ms = 100\nreopen_max_ms = 200\n\n")
        d.wait_state("printer0", "ready")
        a = d.admin()
        p.stall_on_document = True
        id = a.request("printer.print", args={"blocks": [{"text": "x" * 60000}] * 4})
        wait_until(lambda: p.stalled, 5, "the printer to stall")
        a.ok("cancel", args={"target": id})
        assert a.reply(id)["error"]["code"] == "cancelled"
        p.stall_on_document = False
        p.stalled = False
        d.wait_state("printer0", "ready")
        a.ok("printer.print", args={"blocks": [{"text": "after cancel"}]}, timeout=10)
        p.wait_items(lambda its: any(i.get("text") == "after cancel" for i in its))
    finally:
        p.stop()


# --- character device: a pty is the printer ---

def test_chardev_pty_prints_and_reports_status(kd):
    p = PtyPrinter().start()
    try:
        d = kd(escpos_device(transport="chardev", device=p.path, baud=115200, poll_ms=100,
                             timeout_ms=1000))
        d.wait_state("printer0", "ready")
        ui = d.client()
        ui.ok("events.subscribe", args={"topics": ["printer.*"]})
        ui.ok("printer.print", args={"blocks": [{"text": "串口打印 serial"}, {"cut": True}]})
        items = p.wait_items(lambda its: any(i["kind"] == "cut" for i in its))
        assert items[0]["text"] == "串口打印 serial" and items[0]["chinese"]
        assert items[-1] == {"kind": "cut", "mode": "full"}
        assert p.errors == []
        p.status.paper = "out"
        ui.event("printer.paper_out", "printer0")
        assert ui.err("printer.print", args={"blocks": [{"text": "x"}]})["message"] == \
            "paper out"
    finally:
        p.stop()


def test_decoder_side_by_side_with_the_simulator(kd, tcp_printer):
    """The same receipt on the simulator and on escpos: the escpos bytes,
    decoded back, read like the simulator's rendering (text lines equal)."""
    d = start(kd, tcp_printer, width=32, extra=sim_device("sim0", "printer", width=32))
    a = d.admin()
    blocks = [{"text": "收据 Receipt", "align": "center"}, {"text": "Total: 50.00"},
              {"text": "谢谢惠顾 Thank you", "align": "right"}, {"cut": True}]
    sim_text = a.ok("printer.print", "sim0", {"blocks": blocks})["text"]
    a.ok("printer.print", "printer0", {"blocks": blocks})
    items = tcp_printer.wait_items(lambda its: any(i["kind"] == "cut" for i in its))
    assert render_text(items, 32) == sim_text
