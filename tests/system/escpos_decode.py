"""The test side of ESC/POS: a decoder for the bytes a receipt printer
receives, and scripted printers (raw TCP 9100, a pty) that run it.

Standard library only (Debian's /usr/bin/python3).  The decoder is strict
on purpose: an unknown command, a byte >= 0x80 outside Chinese mode, or
text that is not valid GB18030 is recorded in `errors`, so a test that
checks `errors == []` fails on garbage the plugin should never send.

The decoder is also the scripted printers' "firmware": it parses the stream
command by command, so a DLE EOT n inside raster or QR data is data, not a
status query -- the same rule a real printer follows.
"""

import os
import select
import socket
import threading
import time
import tty

ESC, FS, GS, DLE = 0x1B, 0x1C, 0x1D, 0x10
BARCODES = {73: "code128", 67: "ean13", 69: "code39"}


class Decoder:
    """Feed bytes; read `items` (dicts, in print order) and `errors`.
    `status(n)` (if given) answers DLE EOT n with one byte, or None."""

    def __init__(self, status=None):
        self.status = status
        self.buf = b""
        self.items = []
        self.errors = []
        self.queries = []  # every DLE EOT n seen, in order
        self.reset()

    def reset(self):
        self.chinese = False
        self.align = 0
        self.bold = False
        self.double = False
        self.segs = []  # [(chinese, bytearray)] of the line being built
        self.qr = {"data": None, "size": 3, "ec": "L"}

    # --- output ---
    def _add_text_byte(self, b):
        if not self.segs or self.segs[-1][0] != self.chinese:
            self.segs.append((self.chinese, bytearray()))
        self.segs[-1][1].extend(b)

    def _flush_line(self):
        text, segs = "", self.segs
        for chinese, raw in segs:
            if chinese:
                try:
                    text += bytes(raw).decode("gb18030")
                except UnicodeDecodeError as e:
                    self.errors.append("not GB18030: %r (%s)" % (bytes(raw), e))
            else:
                if any(c >= 0x80 for c in raw):
                    self.errors.append("byte >= 0x80 outside Chinese mode: %r" % bytes(raw))
                text += bytes(raw).decode("latin-1")
        self.segs = []
        self.items.append({"kind": "text", "text": text,
                           "align": ("left", "center", "right")[self.align],
                           "bold": self.bold, "double": self.double,
                           "chinese": any(seg[0] for seg in segs)})

    def _item(self, **kw):
        if self.segs:  # a command that prints the buffer first
            self._flush_line()
        self.items.append(kw)

    # --- parsing ---
    def feed(self, data):
        """Parse what is complete; return the answers to status queries."""
        self.buf += data
        out = bytearray()
        while self.buf:
            n = self._one(out)
            if n == 0:
                break  # incomplete: wait for more bytes
            self.buf = self.buf[n:]
        return bytes(out)

    def _need(self, n):
        return len(self.buf) >= n

    def _one(self, out):
        b = self.buf
        c = b[0]
        if c == 0x0A:
            last = self.items[-1] if self.items else None
            if not self.segs and last and last["kind"] in ("qr", "barcode", "image") \
                    and not last.get("ended"):
                last["ended"] = True  # the line feed that ends a symbol's line
                return 1
            self._flush_line() if self.segs else self.items.append(
                {"kind": "text", "text": "", "align": ("left", "center", "right")[self.align],
                 "bold": self.bold, "double": self.double, "chinese": False})
            return 1
        if c == 0x0D:
            return 1
        if c == DLE:
            if not self._need(3):
                return 0
            if b[1] == 0x04:
                self.queries.append(b[2])
                ans = self.status(b[2]) if self.status else None
                if ans is not None:
                    out.append(ans)
                return 3
            self.errors.append("unknown DLE %02x" % b[1])
            return 2
        if c == ESC:
            return self._esc(b)
        if c == FS:
            return self._fs(b)
        if c == GS:
            return self._gs(b)
        if c < 0x20 or c == 0x7F:
            self.errors.append("control byte %02x in text" % c)
            return 1
        if c >= 0x80 and self.chinese:
            if not self._need(2):
                return 0
            k = 4 if 0x30 <= b[1] <= 0x39 else 2
            if not self._need(k):
                return 0
            self._add_text_byte(b[:k])
            return k
        self._add_text_byte(b[:1])
        return 1

    def _esc(self, b):
        if not self._need(2):
            return 0
        op = b[1]
        if op == ord("@"):
            self.reset()
            return 2
        if op in b"EaMt-!dJ3":
            if not self._need(3):
                return 0
            n = b[2]
            if op == ord("E"):
                self.bold = bool(n & 1)
            elif op == ord("a"):
                self.align = n % 3 if n < 3 else (n - 48) % 3
            elif op == ord("!"):
                self.bold = bool(n & 0x08)
                self.double = bool(n & 0x30)
            elif op == ord("d"):
                self._item(kind="feed", lines=n)
            return 3
        if op == ord("2"):
            return 2
        self.errors.append("unknown ESC %02x" % op)
        return 2

    def _fs(self, b):
        if not self._need(2):
            return 0
        if b[1] == ord("&"):
            self.chinese = True
            return 2
        if b[1] == ord("."):
            self.chinese = False
            return 2
        if b[1] in b"!CW":
            return 3 if self._need(3) else 0
        self.errors.append("unknown FS %02x" % b[1])
        return 2

    def _gs(self, b):
        if not self._need(2):
            return 0
        op = b[1]
        if op in b"!HhwfB":
            if not self._need(3):
                return 0
            if op == ord("!"):
                self.double = b[2] != 0
            return 3
        if op in b"LW":
            return 4 if self._need(4) else 0
        if op == ord("V"):
            if not self._need(3):
                return 0
            m = b[2]
            if m in (0, 1, 48, 49):
                self._item(kind="cut", mode="partial" if m in (1, 49) else "full")
                return 3
            if not self._need(4):
                return 0
            self._item(kind="cut", mode="partial" if m in (66, 104) else "full")
            return 4
        if op == ord("("):
            if not self._need(5):
                return 0
            n = b[3] | b[4] << 8
            if not self._need(5 + n):
                return 0
            self._gs_paren(b[2], b[5:5 + n])
            return 5 + n
        if op == ord("k"):
            return self._barcode(b)
        if op == ord("v"):
            if not self._need(8):
                return 0
            xb, y = b[4] | b[5] << 8, b[6] | b[7] << 8
            if not self._need(8 + xb * y):
                return 0
            last = self.items[-1] if self.items else None
            if last and last["kind"] == "image" and last["width"] == xb * 8 \
                    and not last.get("ended"):
                last["height"] += y
                last["data"] += b[8:8 + xb * y]
            else:
                self._item(kind="image", width=xb * 8, height=y, data=bytes(b[8:8 + xb * y]),
                           align=("left", "center", "right")[self.align], open=True)
            return 8 + xb * y
        self.errors.append("unknown GS %02x" % op)
        return 2

    def _gs_paren(self, fn_class, p):
        if fn_class != ord("k") or len(p) < 2 or p[0] != 49:
            return  # other GS ( functions: skipped whole
        fn = p[1]
        if fn == 65:
            self.qr["model"] = p[2] - 48 if len(p) > 2 else None
        elif fn == 67:
            self.qr["size"] = p[2]
        elif fn == 69:
            self.qr["ec"] = "LMQH"[(p[2] - 48) % 4]
        elif fn == 80:
            self.qr["data"] = bytes(p[3:])
        elif fn == 81:
            if self.qr["data"] is None:
                self.errors.append("QR print with no stored data")
            self._item(kind="qr", data=self.qr["data"], size=self.qr["size"], ec=self.qr["ec"],
                       align=("left", "center", "right")[self.align])

    def _barcode(self, b):
        if not self._need(3):
            return 0
        m = b[2]
        if m <= 6:
            end = b.find(b"\0", 3)
            if end < 0:
                return 0
            data, n = bytes(b[3:end]), end + 1
        else:
            if not self._need(4) or not self._need(4 + b[3]):
                return 0
            data, n = bytes(b[4:4 + b[3]]), 4 + b[3]
        if m == 73:
            if data[:2] != b"{B":
                self.errors.append("code128 without a code set: %r" % data)
            data = data[2:].replace(b"{{", b"{")
        self._item(kind="barcode", symbology=BARCODES.get(m, str(m)),
                   data=data.decode("latin-1"),
                   align=("left", "center", "right")[self.align])
        return n


def decode(data):
    d = Decoder()
    d.feed(data)
    return d


def columns(s):
    """Columns on the print head in Chinese mode: ASCII 1, others 2."""
    return sum(1 if ord(ch) < 0x80 else 2 for ch in s)


def render_text(items, width):
    """The items as a person reads the paper, one line per printed line,
    in the simulator's placeholder style ([QR: ...], cut line)."""
    lines = []

    def placed(s, align):
        pad = max(0, width - columns(s))
        return " " * (0 if align == "left" else pad // 2 if align == "center" else pad) + s

    for it in items:
        k = it["kind"]
        if k == "text":
            w = width // 2 if it["double"] else width
            pad = max(0, w - columns(it["text"]))
            lines.append(" " * (0 if it["align"] == "left" else pad // 2
                                if it["align"] == "center" else pad) + it["text"])
        elif k == "qr":
            lines.append(placed("[QR: %s]" % it["data"].decode("utf-8", "replace"), it["align"]))
        elif k == "barcode":
            lines.append(placed("[BARCODE %s: %s]" % (it["symbology"], it["data"]), it["align"]))
        elif k == "image":
            lines.append(placed("[IMAGE %dx%d]" % (it["width"], it["height"]), it["align"]))
        elif k == "feed":
            lines.extend([""] * it["lines"])
        elif k == "cut":
            lines.append("-------- cut --------")
    return "".join(l + "\n" for l in lines)


# --- scripted printers ---

class Status:
    """What the printer reports to DLE EOT 1..4 (Epson TM semantics)."""

    def __init__(self):
        self.paper = "ok"  # ok, low, out
        self.cover_open = False
        self.cutter_error = False
        self.silent = False  # answer nothing
        self.garbage = False  # answer bytes that are not status bytes

    def answer(self, n):
        if self.silent:
            return None
        if self.garbage:
            return 0xFF
        out = self.paper == "out"
        if n == 1:
            return 0x12 | (0x08 if out or self.cover_open or self.cutter_error else 0)
        if n == 2:
            return 0x12 | (0x04 if self.cover_open else 0) | (0x20 if out else 0) | (
                0x40 if self.cutter_error else 0)
        if n == 3:
            return 0x12 | (0x08 if self.cutter_error else 0)
        if n == 4:
            return 0x12 | (0x0C if self.paper in ("low", "out") else 0) | (0x60 if out else 0)
        return None


class _Printer:
    def __init__(self):
        self.status = Status()
        self.lock = threading.Lock()
        self.raw = bytearray()  # every byte received
        self.decoder = Decoder(self._answer)
        self.stop_ev = threading.Event()
        self.thread = None
        self.stall_on_document = False  # stop reading once a document starts
        self.stalled = False

    def _answer(self, n):
        return self.status.answer(n)

    def _take(self, data):
        if self.stall_on_document and b"\x1b@" in data:
            self.stalled = True
        with self.lock:
            self.raw += data
            return self.decoder.feed(data)

    @property
    def items(self):
        with self.lock:
            return list(self.decoder.items)

    @property
    def errors(self):
        with self.lock:
            return list(self.decoder.errors)

    def clear(self):
        with self.lock:
            self.decoder.items.clear()
            self.decoder.errors.clear()
            self.decoder.queries.clear()

    def queries(self):
        with self.lock:
            return list(self.decoder.queries)

    def wait_items(self, pred, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            its = self.items
            if pred(its):
                return its
            time.sleep(0.01)
        raise AssertionError("printer never got the expected items: %r" % self.items)

    def wait_queries(self, count, timeout=5.0):
        end = time.monotonic() + timeout
        start = len(self.queries())
        while time.monotonic() < end:
            if len(self.queries()) >= start + count:
                return
            time.sleep(0.01)
        raise AssertionError("no %d more status queries" % count)

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stop_ev.set()
        if self.thread:
            self.thread.join(5)


class TcpPrinter(_Printer):
    """A raw-TCP (port 9100 style) printer on 127.0.0.1 and a free port.
    One connection at a time; drop() closes the current one."""

    def __init__(self):
        super().__init__()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.conn = None
        self.connections = 0

    def drop(self):
        c, self.conn = self.conn, None
        if c:
            c.close()

    def _run(self):
        while not self.stop_ev.is_set():
            socks = [self.lsock] + ([self.conn] if self.conn else [])
            r, _, _ = select.select(socks, [], [], 0.05)
            if self.lsock in r:
                c, _ = self.lsock.accept()
                self.drop()
                self.conn = c
                self.connections += 1
            if self.conn and self.conn in r:
                try:
                    data = self.conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.drop()
                    continue
                ans = self._take(data)
                if ans:
                    self.conn.sendall(ans)

    def stop(self):
        super().stop()
        self.drop()
        self.lsock.close()


class PtyPrinter(_Printer):
    """A printer behind a pseudo-terminal: the daemon opens `path`."""

    def __init__(self):
        super().__init__()
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo of our answers back to us
        self.path = os.ttyname(self.slave)

    def _run(self):
        while not self.stop_ev.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r or self.stalled:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            ans = self._take(data)
            if ans:
                os.write(self.master, ans)

    def stop(self):
        super().stop()
        os.close(self.master)
        os.close(self.slave)
