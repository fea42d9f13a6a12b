"""The sane plugin against a real SANE: libsane with its `test` backend.

Every daemon gets a private SANE_CONFIG_DIR whose dll.conf names only
`test`, so listing is fast and touches no other backend.  The backend's own
options inject the faults (read-return-value=SANE_STATUS_JAMMED, ...), set
through the plugin's `sane_options`; its feeder runs empty after 10 pages.
Pages are decoded here (zlib + PNG unfiltering) and compared pixel for
pixel with what `scanimage --format=png` makes of the same page.
"""

import os
import shutil
import struct
import subprocess
import time
import zlib

import pytest

import kiosk
from kiosk import daemon_section, hexid, wait_until

MM_PER_INCH = 25.4
# the test backend's default scan area
PAGE_W_MM, PAGE_H_MM = 80.0, 100.0
SCANIMAGE = shutil.which("scanimage") or "/usr/bin/scanimage"


@pytest.fixture
def sane_env(tmp_path):
    etc = tmp_path / "sane.d"
    etc.mkdir()
    (etc / "dll.conf").write_text("test\n")
    shutil.copy("/etc/sane.d/test.conf", etc / "test.conf")
    # The test backend's reader mallocs its picture buffer and frees it
    # only when the page is done; sane_cancel() kills it mid-page (cancel,
    # timeout, an injected read fault) and the buffer is lost.  That is
    # libsane-test's leak, not kioskd's: suppressed for that module only.
    supp = tmp_path / "lsan.supp"
    supp.write_text("leak:libsane-test.so\n")
    lsan = os.environ.get("LSAN_OPTIONS", "")
    return {"SANE_CONFIG_DIR": str(etc),
            "LSAN_OPTIONS": (lsan + ":" if lsan else "") + "suppressions=" + str(supp)}


def sane_device(name="scanner0", **opts):
    lines = ["[device %s]" % name, "class = scanner", "plugin = sane"]
    lines += ["%s = %s" % (k, v) for k, v in opts.items()]
    return "\n".join(lines) + "\n\n"


def start(kd, sane_env, state="ready", **opts):
    opts.setdefault("device", "test:0")
    d = kd(daemon_section(log_level="info") + sane_device(**opts), env=sane_env)
    # open() answers at once; the connect job then opens the SANE device
    a = d.admin()
    if state == "ready":
        wait_until(lambda: a.ok("scanner.status").get("state") == "idle", 10,
                   "the SANE device to open")
    return d, a


# --- PNG, decoded with the standard library ---

def png_chunks(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    i, out = 8, []
    while i < len(data):
        n, = struct.unpack(">I", data[i:i + 4])
        typ, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        crc, = struct.unpack(">I", data[i + 8 + n:i + 12 + n])
        assert zlib.crc32(typ + body) == crc, typ
        out.append((typ, body))
        i += 12 + n
    return out


def png_decode(data):
    """(width, height, depth, colour type, dpi, raw bytes without filters)."""
    chunks = png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert interlace == 0
    dpi = None
    for typ, body in chunks:
        if typ == b"pHYs":
            ppm, _, unit = struct.unpack(">IIB", body)
            assert unit == 1
            dpi = round(ppm / 39.3700787401575)
    z = zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT"))
    channels = 3 if ctype == 2 else 1
    stride = (w * channels * depth + 7) // 8
    bpp = max(1, channels * depth // 8)
    assert len(z) == h * (stride + 1)
    return w, h, depth, ctype, dpi, unfilter(z, h, stride, bpp)


def unfilter(z, h, stride, bpp):
    out = bytearray()
    prev = bytearray(stride)
    for y in range(h):
        f = z[y * (stride + 1)]
        line = bytearray(z[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        else:
            assert f == 0, "filter %d" % f
        out += line
        prev = line
    return bytes(out)


def any_pixel_set(data):
    """True unless every pixel is 0.  Needs no unfiltering: every PNG filter
    of an all-zero image is all zero, and only then."""
    chunks = png_chunks(data)
    w, h, depth, ctype = struct.unpack(">IIBB", chunks[0][1][:10])
    stride = (w * (3 if ctype == 2 else 1) * depth + 7) // 8
    z = zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT"))
    return any(any(z[y * (stride + 1) + 1:(y + 1) * (stride + 1)]) for y in range(h))


def blob(d, id):
    assert hexid(id), id
    with open(os.path.join(d.state_dir, "blobs", id), "rb") as f:
        return f.read()


def scanimage(sane_env, tmp_path, *args):
    out = tmp_path / "scanimage.png"
    env = dict(os.environ, **sane_env)
    subprocess.run([SCANIMAGE, "-d", "test:0", "--format=png", "-o", str(out)] + list(args),
                   env=env, check=True, timeout=60 * kiosk.SLOW,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return out.read_bytes()


def expect_size(dpi):
    return int(dpi * PAGE_W_MM / MM_PER_INCH), int(dpi * PAGE_H_MM / MM_PER_INCH)


# --- tests ---

def test_lists_devices_and_capabilities(kd, sane_env):
    d, a = start(kd, sane_env, device="")  # empty: the first scanner SANE lists
    st = a.ok("scanner.status")
    names = [x["name"] for x in st["devices"]]
    assert names[:2] == ["test:0", "test:1"], st
    assert st["devices"][0]["model"] == "frontend-tester"
    assert st["device"] == "test:0"
    assert st["modes"] == ["Gray", "Color"]
    assert st["sources"] == ["Flatbed", "Automatic Document Feeder"]
    assert st["resolutions"] == {"min": 1.0, "max": 1200.0}
    assert st["fault"] is None and st["scanned_pages"] == 0
    # the same view in devices.list, for any UI client
    dev = d.device("scanner0", d.client())
    assert dev["plugin"] == "sane" and dev["state"] == "ready"
    assert dev["status"]["devices"] == st["devices"]


def test_colour_page_300dpi_is_a_png_of_the_page(kd, sane_env):
    d, a = start(kd, sane_env, sane_options="test-picture=Color pattern")
    ui = d.client()
    rid = ui.request("scanner.scan", args={"resolution": 300, "mode": "color"})
    r = ui.reply(rid, timeout=30)
    assert r["ok"], r
    progress = [m["progress"] for m in ui.inbox if m.get("id") == rid]
    # percentages while the page is read, then the page itself
    assert progress[-1] == {"page": 1, "pages": 1}, progress
    pcts = [p["percent"] for p in progress[:-1]]
    assert pcts and pcts == sorted(pcts) and all(0 < p < 100 for p in pcts), progress
    (page,) = r["result"]["pages"]
    w, h = expect_size(300)
    assert (page["width"], page["height"]) == (w, h) == (944, 1181)
    assert page["resolution"] == 300 and page["mode"] == "color"
    assert page["mime"] == "image/png"
    data = blob(d, page["blob"])
    chunks = png_chunks(data)
    assert struct.unpack(">IIBB", chunks[0][1][:10]) == (w, h, 8, 2)
    assert any_pixel_set(data)
    assert a.ok("scanner.status")["scanned_pages"] == 1


@pytest.mark.parametrize("mode,depth,args", [
    ("color", 8, {"mode": "color"}),
    ("gray", 8, {"mode": "gray"}),
    ("lineart", 1, {"mode": "gray"}),     # the test backend's 1-bit gray
    ("color", 16, {"mode": "color"}),
])
def test_page_equals_scanimage(kd, sane_env, tmp_path, mode, depth, args):
    d, a = start(kd, sane_env, sane_options="test-picture=Color pattern, depth=%d" % depth)
    page = a.ok("scanner.scan", args=dict(args, resolution=75), timeout=20)["pages"][0]
    assert page["mode"] == mode
    ours = png_decode(blob(d, page["blob"]))
    theirs = png_decode(scanimage(
        sane_env, tmp_path, "--mode", "Color" if args["mode"] == "color" else "Gray",
        "--resolution", "75", "--test-picture", "Color pattern", "--depth", str(depth)))
    assert ours[:5] == theirs[:5] == expect_size(75) + (depth, 2 if mode == "color" else 0, 75)
    assert ours[5] == theirs[5], "pixels differ from scanimage's"
    assert any(ours[5]) and any(b != ours[5][0] for b in ours[5])


def test_adf_several_pages(kd, sane_env):
    d, a = start(kd, sane_env, sane_options="test-picture=Grid")
    ui = d.client()
    rid = ui.request("scanner.scan", args={"source": "adf", "pages": 3, "resolution": 50,
                                           "mode": "gray"})
    r = ui.reply(rid, timeout=20)
    assert r["ok"], r
    pages = r["result"]["pages"]
    assert len(pages) == 3
    for p in pages:
        assert (p["width"], p["height"]) == expect_size(50)
        data = blob(d, p["blob"])
        assert png_decode(data)[:2] == expect_size(50) and any_pixel_set(data)
    progress = [m["progress"] for m in ui.inbox if m.get("id") == rid]
    assert [p for p in progress if "percent" not in p] == [
        {"page": n, "pages": 3} for n in (1, 2, 3)]
    assert a.ok("scanner.status")["scanned_pages"] == 3


def test_adf_runs_empty(kd, sane_env):
    d, a = start(kd, sane_env, sane_options="test-picture=Solid white")
    ui = d.client()
    # the test backend's feeder holds 10 sheets
    e = ui.err("scanner.scan", args={"source": "adf", "pages": 12, "resolution": 50},
               timeout=30)
    assert e == {"code": "device_error", "message": "no paper in feeder after 10 of 12 pages"}
    st = a.ok("scanner.status")
    assert st["fault"] == "no_paper" and st["scanned_pages"] == 10 and st["state"] == "idle"
    # still usable, and the fault clears with the next good scan
    assert len(ui.ok("scanner.scan", args={"resolution": 50})["pages"]) == 1
    assert a.ok("scanner.status")["fault"] is None


@pytest.mark.parametrize("status,code,message,fault", [
    ("SANE_STATUS_JAMMED", "device_error", "jammed", "jammed"),
    ("SANE_STATUS_NO_DOCS", "device_error", "no paper in feeder", "no_paper"),
    ("SANE_STATUS_COVER_OPEN", "device_offline", "cover open", "cover_open"),
    ("SANE_STATUS_IO_ERROR", "device_error", "sane_read: Error during device I/O", None),
])
def test_read_faults_are_typed(kd, sane_env, status, code, message, fault):
    d, a = start(kd, sane_env, sane_options="read-return-value=%s" % status)
    ui = d.client()
    e = ui.err("scanner.scan", args={"resolution": 50}, timeout=10)
    assert e == {"code": code, "message": message}
    st = a.ok("scanner.status")
    assert st["fault"] == fault and st["state"] == "idle"
    # the device stays ready: the fault is the paper's, not the link's
    assert d.device("scanner0")["state"] == "ready"
    assert ui.err("scanner.scan", args={"resolution": 50}, timeout=10)["code"] == code


SLOW_PAGE = "test-picture=Solid white, read-delay=yes, read-delay-duration=200000"


def test_cancel_mid_scan(kd, sane_env):
    # 200 ms per 64 KiB: a 300 dpi colour page would take about 10 s
    d, a = start(kd, sane_env, sane_options=SLOW_PAGE)
    ui = d.client()
    rid = ui.request("scanner.scan", args={"resolution": 300}, timeout_ms=60000)
    ui.wait_msg(lambda m: m.get("id") == rid and "progress" in m, timeout=10,
                what="the first progress")
    t0 = time.monotonic()
    ui.ok("cancel", args={"target": rid})
    e = ui.reply(rid, timeout=5)["error"]
    assert e["code"] == "cancelled", e
    # the scan itself stops, not just the reply: the device is free well
    # before the page would have ended
    wait_until(lambda: a.ok("scanner.status")["state"] == "idle", 3, "the scan to stop")
    assert time.monotonic() - t0 < 3 * kiosk.SLOW
    assert d.device("scanner0")["state"] == "ready"
    assert d.log_lines("did not finish after cancel") == []
    # and it scans again
    page = ui.ok("scanner.scan", args={"resolution": 50}, timeout=20)["pages"][0]
    assert (page["width"], page["height"]) == expect_size(50)


def test_timeout_stops_the_scan(kd, sane_env):
    d, a = start(kd, sane_env, sane_options=SLOW_PAGE)
    ui = d.client()
    e = ui.err("scanner.scan", args={"resolution": 300}, timeout_ms=700, timeout=10)
    assert e["code"] == "timeout", e
    wait_until(lambda: a.ok("scanner.status")["state"] == "idle", 3, "the scan to stop")
    assert ui.ok("scanner.scan", args={"resolution": 50}, timeout=20)["pages"]


def test_bad_requests(kd, sane_env):
    d, a = start(kd, sane_env)
    ui = d.client()

    def bad(args, *words):
        e = ui.err("scanner.scan", args=args, timeout=10)
        assert e["code"] == "bad_request", e
        for w in words:
            assert w in e["message"], e
        return e

    bad({"resolution": 2400}, "resolution")          # the class schema
    bad({"resolution": "high"}, "resolution")
    bad({"dpi": 300}, "dpi")                          # unknown argument
    bad({"mode": "sepia"}, "mode")
    bad({"mode": "lineart"}, "no lineart mode", "Gray, Color")  # this device has none
    bad({"pages": 2}, "flatbed scans one page")
    bad({"source": "adf", "pages": 101}, "pages")
    # none of it hurt the device
    assert a.ok("scanner.status")["scanned_pages"] == 0
    assert ui.ok("scanner.scan", args={"resolution": 50}, timeout=10)["pages"]


@pytest.mark.parametrize("opts,reason", [
    ({"sane_options": "no-such-option=1"}, "sane_options: no option 'no-such-option'"),
    ({"sane_options": "read-return-value=SANE_STATUS_BOGUS"},
     "sane_options: read-return-value: 'SANE_STATUS_BOGUS' is not one of Default"),
    ({"sane_options": "read-limit-size=100"}, "sane_options: option read-limit-size is inactive"),
    ({"sane_options": "resolution=5000"},
     "sane_options: resolution: 5000 is not one this scanner takes (1 to 1200)"),
    ({"sane_options": "depth=eight"}, "sane_options: depth: 'eight' is not a number"),
    ({"sane_options": "mode"}, "sane_options: 'mode' is not name=value"),
    ({"sane_options": "Mode=Gray"}, "sane_options: 'Mode' is not a SANE option name"),
    ({"device": "nosuch:0"}, "sane_open(nosuch:0): Invalid argument"),
])
def test_bad_configuration_says_why(kd, sane_env, opts, reason):
    d, a = start(kd, sane_env, state=None, **opts)
    dev = wait_until(lambda: (lambda x: x if x["state"] == "offline" else None)(
        d.device("scanner0", a)), 10, "scanner0 offline")
    assert dev["reason"].startswith(reason), dev
    e = d.client().err("scanner.scan", args={"resolution": 50}, timeout=10)
    assert e["code"] == "device_offline" and reason in e["message"], e


def test_option_values_the_core_refuses(kd, sane_env):
    d = kd(daemon_section() + sane_device(device="test:0", png_level=12), env=sane_env,
           start=False)
    rc, out, err = kiosk.run_kioskd(["--check-config", "--config", d.conf_path], env=sane_env)
    assert rc != 0 and "png_level" in err, (rc, out, err)


def test_scan_before_the_device_opened_waits(kd, sane_env):
    # a scan sent the moment the daemon is up queues behind the connect job
    d, a = start(kd, sane_env, state=None, sane_options="test-picture=Grid")
    r = d.client().ok("scanner.scan", args={"resolution": 50}, timeout=20)
    assert len(r["pages"]) == 1
