"""The documentation and the code agree.

- docs/protocol.md documents, with an example, every core command of
  src/proto.c and every <class>.<verb> a daemon on the default configuration
  offers; every command its headings name exists;
- every event topic the code emits (seen on a scripted run, and found in
  the sources) is in its Events index, with an example;
- its error table is the closed set of PROTOCOL.md and holds every code the
  sources use;
- kioskctl --help, docs/kioskctl.md and README.md name the same
  subcommands and the same exit statuses;
- kioskd --help has every option the docs use, and every [daemon] key of
  docs/configuration.md passes --check-config.

The documents are parsed loosely (headings, tables, fenced blocks, `code`
spans) so that rewording them does not break these tests; dropping a
section, a row or an example does.
"""

import os
import re
import subprocess
import tempfile

import pytest

import kiosk
from kiosk import REPO, run_kioskd

KIOSKCTL = os.path.join(kiosk.BUILD, "kioskctl")
CMD_RE = r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)?"


def read(rel):
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


# --- markdown, loosely ---

def split_fences(text):
    """[(in_fence, lang, line)] for every line; fence lines themselves are dropped."""
    out, fence, lang = [], None, ""
    for line in text.splitlines():
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
        if m and (fence is None or m.group(1).startswith(fence)):
            if fence is None:
                fence, lang = m.group(1), m.group(2)
            else:
                fence, lang = None, ""
            continue
        out.append((fence is not None, lang, line))
    return out


def headings(text):
    """[(level, title)] outside fenced blocks."""
    res = []
    for fenced, _, line in split_fences(text):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m and not fenced:
            res.append((len(m.group(1)), m.group(2)))
    return res


def section(text, title_re, level=None):
    """The text under the first heading matching title_re, up to the next
    heading of the same or a higher level."""
    lines = text.splitlines()
    fenced, inside = [], False
    for line in lines:
        if re.match(r"^\s*(```|~~~)", line):
            inside = not inside
            fenced.append(True)
            continue
        fenced.append(inside)
    start = lvl = None
    for i, line in enumerate(lines):
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if not m or fenced[i]:
            continue
        n = len(m.group(1))
        if start is None:
            if re.search(title_re, m.group(2)) and (level is None or n == level):
                start, lvl = i + 1, n
        elif n <= lvl:
            return "\n".join(lines[start:i])
    assert start is not None, "no section /%s/" % title_re
    return "\n".join(lines[start:])


def table_rows(text):
    """Cells of every markdown table row outside fenced blocks (separator
    rows left out)."""
    rows = []
    for fenced, _, line in split_fences(text):
        s = line.strip()
        if fenced or not s.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", s.strip("|"))]
        if all(re.fullmatch(r":?-+:?", c) for c in cells if c):
            continue
        rows.append(cells)
    return rows


def code_spans(s):
    return re.findall(r"`([^`\n]+)`", s)


def json_blocks(text):
    """The text of every ```json block, joined."""
    return "\n".join(json_block_list(text))


def json_block_list(text):
    """Every ```json block's text, one string per block."""
    blocks, cur, fence = [], None, None
    for line in text.splitlines():
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
        if m and fence is None:
            fence, cur = m.group(1), [] if m.group(2) == "json" else None
        elif m and m.group(1).startswith(fence):
            if cur is not None:
                blocks.append("\n".join(cur))
            fence, cur = None, None
        elif cur is not None:
            cur.append(line)
    return blocks


# --- C sources, loosely ---

def c_sources(*dirs):
    for d in dirs:
        for name in sorted(os.listdir(os.path.join(REPO, d))):
            if name.endswith(".c"):
                yield os.path.join(d, name), read(os.path.join(d, name))


def strip_comments(src):
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", src, flags=re.S)


def call_args(src, func):
    """The argument texts of every call of func (a name, or '->name')."""
    calls = []
    lead = "" if func.startswith("->") else r"(?<![\w])"
    for m in re.finditer(lead + r"%s\s*\(" % re.escape(func), src):
        i, depth, args, cur, quote = m.end(), 1, [], "", None
        while i < len(src) and depth:
            c = src[i]
            if quote:
                cur += c
                if c == "\\":
                    cur += src[i + 1]
                    i += 1
                elif c == quote:
                    quote = None
            elif c in "\"'":
                quote = c
                cur += c
            elif c in "([{":
                depth += 1
                cur += c
            elif c in ")]}":
                depth -= 1
                if depth:
                    cur += c
            elif c == "," and depth == 1:
                args.append(cur.strip())
                cur = ""
            else:
                cur += c
            i += 1
        args.append(cur.strip())
        calls.append(args)
    return calls


def literals(s):
    return re.findall(r'"((?:[^"\\]|\\.)*)"', s)


def own_literals(arg):
    """The literals of an argument, not those of calls inside it:
    strcmp(x, "ok") == 0 ? "paper_ok" : "paper_low" -> paper_ok, paper_low."""
    prev = None
    while prev != arg:
        prev, arg = arg, re.sub(r"\w+\s*\([^()]*\)", "0", arg)
    return literals(arg)


def core_commands():
    src = strip_comments(read("src/proto.c"))
    table = re.search(r"\bcommands\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
    assert table, "src/proto.c: no commands[] table"
    cmds = re.findall(r'\{\s*"([^"]+)"\s*,\s*ROLE_', table.group(1))
    assert "hello" in cmds and len(cmds) >= 5, cmds
    return cmds


def schema_classes():
    src = strip_comments(read("src/schema.c"))
    names = re.findall(r'\{\s*KIOSK_CLASS_\w+\s*,\s*"([a-z]+)"', src)
    assert len(names) >= 10, names
    return names


# --- a daemon on the default configuration ---

@pytest.fixture(scope="module")
def daemon(kd_module):
    return kd_module(read("conf/kioskd.conf"))


@pytest.fixture(scope="module")
def capabilities(daemon):
    """{class: [verbs]} from devices.list of the default configuration."""
    devs = daemon.admin().ok("devices.list")["devices"]
    caps = {}
    for d in devs:
        assert d["state"] == "ready", d
        caps.setdefault(d["class"], d["capabilities"])
    assert sorted(caps) == sorted(schema_classes()), \
        "conf/kioskd.conf should have one device of every class: %r" % sorted(caps)
    return caps


def device_commands(caps):
    return ["%s.%s" % (cls, verb) for cls, verbs in sorted(caps.items()) for verb in verbs]


# --- docs/protocol.md: commands ---

PROTOCOL = "docs/protocol.md"


def documented_names(text):
    """Every `code` token in headings and in table cells."""
    names = set()
    for _, title in headings(text):
        names.update(code_spans(title))
    for row in table_rows(text):
        for cell in row:
            names.update(code_spans(cell))
    return names


def has_cmd_example(blocks, cmd):
    """A JSON block holds a request for cmd and a successful reply to it
    (the same id, "ok": true)."""
    for block in blocks:
        for m in re.finditer(r'"id"\s*:\s*(\d+|"[^"]*")\s*,\s*"cmd"\s*:\s*"%s"' % re.escape(cmd),
                             block):
            if re.search(r'"id"\s*:\s*%s\s*,\s*"ok"\s*:\s*true' % re.escape(m.group(1)), block):
                return True
    return False


def test_every_command_is_documented_with_an_example(capabilities):
    text = read(PROTOCOL)
    names = documented_names(text)
    blocks = json_block_list(text)
    missing = []
    for cmd in core_commands() + device_commands(capabilities):
        if cmd not in names:
            missing.append("%s: no heading or table entry" % cmd)
        if not has_cmd_example(blocks, cmd):
            missing.append("%s: no JSON example of a request and its \"ok\": true reply" % cmd)
    assert not missing, "%s is missing:\n  %s" % (PROTOCOL, "\n  ".join(missing))


def test_every_verb_has_its_own_heading(capabilities):
    """Each device verb has a heading of its own (where its arguments,
    result and example are)."""
    heads = set()
    for _, title in headings(read(PROTOCOL)):
        heads.update(code_spans(title))
    missing = [c for c in device_commands(capabilities) if c not in heads]
    assert not missing, "%s: no heading for %s" % (PROTOCOL, ", ".join(missing))


def heading_commands(text):
    cmds = set()
    for _, title in headings(text):
        for tok in code_spans(title):
            if re.fullmatch(CMD_RE, tok):
                cmds.add(tok)
    return cmds


def test_every_documented_command_exists(daemon, capabilities):
    named = heading_commands(read(PROTOCOL))
    assert len(named) >= 10, "found too few commands in the headings: %r" % sorted(named)
    known = set(core_commands()) | set(device_commands(capabilities))
    unknown = sorted(named - known)
    assert not unknown, "%s headings name commands the daemon does not have: %s" % (
        PROTOCOL, ", ".join(unknown))
    # and the daemon itself agrees: none of them is unknown_command
    c = daemon.admin()
    for cmd in sorted(named):
        cls = cmd.split(".")[0]
        if cls in capabilities:
            # a device that does not exist: the command is checked, nothing runs
            r = c.call(cmd, device="no-such-device", args={}, timeout_ms=2000)
            assert r["ok"] is False and r["error"]["code"] == "unknown_device", (cmd, r)
        else:
            r = c.call(cmd, args={}, timeout_ms=2000)
            assert r["ok"] or r["error"]["code"] != "unknown_command", (cmd, r)


def test_unknown_commands_are_refused(daemon):
    """The converse test above means something: a made-up name is refused."""
    c = daemon.admin()
    for cmd in ("printer.fly", "nosuchclass.status", "nosuch"):
        assert c.err(cmd, device="no-such-device", args={})["code"] == "unknown_command"


# --- docs/protocol.md: events ---

def sim_event_topics_from_source():
    """<class>.<event> for every literal event name in hal/sim and every
    topic the core publishes."""
    topics = set()
    for path, src in c_sources("hal/sim"):
        src = strip_comments(src)
        m = re.search(r'\.name\s*=\s*"([a-z]+)"', src)
        if not m:
            continue
        cls = m.group(1)
        names = set()
        for args in call_args(src, "sim_emit"):
            if len(args) > 1:
                names.update(own_literals(args[1]))
        for args in call_args(src, "set_flag"):  # set_flag(s, &flag, on, "ev_on", "ev_off")
            for a in args[3:5]:
                names.update(own_literals(a))
        topics.update("%s.%s" % (cls, n) for n in names if re.fullmatch(r"[a-z_]+", n))
    for path, src in c_sources("src"):
        for args in call_args(strip_comments(src), "events_publish"):
            topics.update(t for t in literals(args[0]) if re.fullmatch(CMD_RE, t))
    return topics


@pytest.fixture(scope="module")
def emitted_topics(daemon):
    """Every topic seen by a '*' subscriber while a scripted session
    exercises every class on the simulators."""
    ui = daemon.client()
    assert ui.ok("events.subscribe", args={"topics": ["*"]})["topics"] == ["*"]
    a = daemon.admin()

    def inj(dev, what, **args):
        args["what"] = what
        return a.ok("sim.inject", dev, args)

    inj("card0", "insert", card={"type": "sle4442"})
    a.ok("cardreader.read", args={"offset": 0, "length": 4})
    a.ok("cardreader.eject")
    a.ok("printer.print", args={"blocks": [{"text": "doc test"}, {"cut": True}]})
    for what in ("paper_low", "paper_out", "paper_ok", "cover_open", "cover_close",
                 "jam", "clear"):
        inj("printer0", what)
    a.ok("scanner.scan", args={"resolution": 50}, timeout=20)
    inj("idreader0", "place")
    a.ok("idreader.read", timeout=10)
    inj("idreader0", "remove")
    a.ok("camera.capture", args={"width": 16, "height": 16}, timeout=10)
    a.ok("audio.play", args={"tts": "ok"})
    a.ok("audio.record", args={"duration_ms": 100})
    a.ok("audio.volume", args={"level": 50})
    inj("qr0", "scan", code="doc-test")
    a.ok("locker.open", args={"door": 1})
    inj("locker0", "close", door=1)
    inj("locker0", "force", door=2)
    inj("locker0", "close", door=2)
    # a read samples the sensor: reading and alarm without waiting for its timer
    inj("cabinet0", "set", temperature=80)
    assert a.ok("sensor.read")["alarm"] == "high"
    inj("cabinet0", "set", temperature=20)
    assert a.ok("sensor.read")["alarm"] is None
    inj("cabinet0", "door_open")
    inj("cabinet0", "door_close")
    inj("cabinet0", "tamper")
    inj("cabinet0", "tamper_reset")
    a.ok("actuator.set", args={"output": "fan1", "on": True})
    a.ok("actuator.set", args={"output": "fan1", "on": False})
    ui.drain(0.3)
    topics = {e["event"] for e in ui.events}
    ui.ok("events.unsubscribe")
    return topics


def events_index(text):
    rows = table_rows(section(text, r"(?i)^events index"))
    topics = set()
    for row in rows:
        toks = code_spans(row[0])
        if toks and re.fullmatch(CMD_RE, toks[0]) and "." in toks[0]:
            topics.add(toks[0])
    return topics


def has_event_example(blocks, topic):
    return re.search(r'"event"\s*:\s*"%s"' % re.escape(topic), blocks) is not None


def test_emitted_events_are_documented(emitted_topics):
    text = read(PROTOCOL)
    index = events_index(text)
    blocks = json_blocks(text)
    source = sim_event_topics_from_source()
    assert len(source) >= 20, "the source scan found too few events: %r" % sorted(source)
    assert len(emitted_topics) >= 20, "the scripted run saw too few events: %r" % sorted(
        emitted_topics)
    missing = []
    for topic in sorted(emitted_topics | source):
        if topic not in index:
            missing.append("%s: not in the Events index" % topic)
        if not has_event_example(blocks, topic):
            missing.append("%s: no JSON example with \"event\": \"%s\"" % (topic, topic))
    assert not missing, "%s is missing:\n  %s" % (PROTOCOL, "\n  ".join(missing))


def test_indexed_events_exist(emitted_topics):
    """The Events index lists nothing the code never emits."""
    index = events_index(read(PROTOCOL))
    phantom = sorted(index - emitted_topics - sim_event_topics_from_source())
    assert not phantom, "%s: Events index lists topics nothing emits: %s" % (
        PROTOCOL, ", ".join(phantom))


def test_every_class_is_documented(capabilities):
    heads = {t.strip("` ").lower() for _, t in headings(read(PROTOCOL))}
    missing = [cls for cls in capabilities if cls not in heads]
    assert not missing, "%s: no section for class %s" % (PROTOCOL, ", ".join(missing))


# --- error codes ---

# The closed set of the design's PROTOCOL.md ("Error codes (closed set;
# extend only with a documented reason)"), which lives outside this tree.
CLOSED_SET = {"bad_request", "unknown_command", "unknown_device", "not_permitted",
              "device_offline", "device_busy", "device_error", "timeout", "cancelled",
              "too_large", "storage_full", "storage_error", "remote_unavailable",
              "remote_rejected", "internal"}
DESIGN = os.environ.get("KIOSKD_DESIGN_PROTOCOL", "/work/shared/design/PROTOCOL.md")


def closed_error_set():
    return set(CLOSED_SET)


def test_closed_set_is_the_designs():
    if not os.path.exists(DESIGN):
        pytest.skip("the design's PROTOCOL.md is not at %s" % DESIGN)
    with open(DESIGN, encoding="utf-8") as f:
        body = section(f.read(), r"(?i)^error codes")
    codes = {c for c in code_spans(body) if re.fullmatch(r"[a-z_]+", c)}
    assert codes == CLOSED_SET, "PROTOCOL.md's closed set changed: %r" % sorted(codes)


# function -> index of its error-code argument
CODE_ARG = {"reply_error": 2, "req_fail": 1, "req_vfail": 1, "session_close_with": 1,
            "devices_abort": 1, "fail_queue": 1, "sim_fail": 1, "sim_fail_after": 2,
            "->fail": 1}


def error_codes_in_sources():
    codes = {}
    for path, src in list(c_sources("src")) + list(c_sources("hal/sim")):
        if os.path.basename(path) in ("kioskctl.c", "kclient.c"):
            continue  # the client side reads codes, it does not make them
        src = strip_comments(src)
        found = set()
        for func, at in CODE_ARG.items():
            for args in call_args(src, func):
                if len(args) > at:
                    found.update(literals(args[at]))
        # code = "...", *code = x ? "..." : "...", and sim's fail_next list
        for m in re.finditer(r'[*\s]code\s*=\s*((?:[^;,?]*\?\s*)?"[a-z_]+"(?:\s*:\s*"[a-z_]+")?)',
                             src):
            found.update(literals(m.group(1)))
        for m in re.finditer(r"\bcodes\[\]\s*=\s*\{(.*?)\}", src, re.S):
            found.update(literals(m.group(1)))
        for c in found:
            if re.fullmatch(r"[a-z_]+", c):
                codes.setdefault(c, set()).add(path)
    return codes


def doc_error_table():
    rows = table_rows(section(read(PROTOCOL), r"(?i)^error codes"))
    codes = set()
    for row in rows:
        codes.update(c for c in code_spans(row[0]) if re.fullmatch(r"[a-z_]+", c))
    return codes


def test_error_table_is_the_closed_set():
    closed = closed_error_set()
    doc = doc_error_table()
    assert closed - doc == set(), "%s: error table misses %s" % (PROTOCOL, sorted(closed - doc))
    assert doc - closed == set(), "%s: error table has codes outside PROTOCOL.md's closed set: %s" % (
        PROTOCOL, sorted(doc - closed))


def test_every_error_code_in_the_sources_is_documented():
    used = error_codes_in_sources()
    assert len(used) >= 8, "the source scan found too few codes: %r" % sorted(used)
    doc = doc_error_table()
    undocumented = {c: sorted(p) for c, p in used.items() if c not in doc}
    assert not undocumented, "%s: error codes used in the sources but not in its table: %r" % (
        PROTOCOL, undocumented)
    outside = {c: sorted(p) for c, p in used.items() if c not in closed_error_set()}
    assert not outside, "codes outside the closed set of PROTOCOL.md: %r" % outside


# --- kioskctl ---

def run(argv, **kw):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20 * kiosk.SLOW,
                       env=kiosk.base_env(), **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def kioskctl_help():
    rc, out, err = run([KIOSKCTL, "--help"])
    assert rc == 0, (rc, out, err)
    return out


def help_block(text, title):
    """The indented lines under 'title:' in a --help text."""
    lines, on = [], False
    for line in text.splitlines():
        if line.strip() == title + ":":
            on = True
            continue
        if on:
            if not line.strip() or not line.startswith(" "):
                break
            lines.append(line)
    assert lines, "no %r block in:\n%s" % (title, text)
    return lines


def help_subcommands():
    return [l.split()[0] for l in help_block(kioskctl_help(), "Commands")]


def manual_subcommands():
    body = section(read("docs/kioskctl.md"), r"^COMMANDS$")
    return [t.split()[0] for lvl, t in headings(body) if lvl == 3]


def readme_subcommands():
    """Subcommands of the kioskctl command lines README.md shows."""
    text = read("README.md")
    spans = [l for fenced, _, l in split_fences(text) if fenced]
    spans += code_spans(text)
    subs = set()
    for s in spans:
        for m in re.finditer(r"\bkioskctl\b((?:\s+[^\s`;|&]+)*)", s):
            toks = m.group(1).split()
            while toks and toks[0].startswith("-"):
                opt = toks.pop(0)
                if opt in ("--socket", "-s", "--timeout", "-t") and toks:
                    toks.pop(0)
            if toks and re.fullmatch(r"[a-z]+", toks[0]):
                subs.add(toks[0])
    return subs


def test_kioskctl_subcommands_match_the_manual():
    in_help, in_manual = help_subcommands(), manual_subcommands()
    assert len(in_help) >= 5, in_help
    assert sorted(in_help) == sorted(in_manual), (
        "kioskctl --help lists %r, docs/kioskctl.md documents %r" % (in_help, in_manual))


def test_readme_mentions_only_real_subcommands():
    subs = readme_subcommands()
    assert subs, "README.md shows no kioskctl command line"
    unknown = sorted(subs - set(help_subcommands()))
    assert not unknown, "README.md uses kioskctl subcommands that do not exist: %s" % unknown


@pytest.mark.parametrize("sub", help_subcommands() if os.access(KIOSKCTL, os.X_OK) else [])
def test_kioskctl_subcommand_help(sub):
    rc, out, err = run([KIOSKCTL, sub, "--help"])
    assert rc == 0, (sub, rc, out, err)
    assert out.startswith("Usage: kioskctl %s" % sub), out
    assert err == ""
    # and its exit status table is the overview's
    assert exit_statuses(help_block(out, "Exit status")) == exit_statuses(
        help_block(kioskctl_help(), "Exit status"))


def meaning_head(s):
    """'usage error: bad option, ...' -> 'usage error'."""
    s = re.sub(r"[`*]", "", s).strip().lower()
    return re.split(r"[:(,;.]", s, 1)[0].strip()


def exit_statuses(lines):
    res = {}
    for line in lines:
        m = re.match(r"^\s*(\d+)\s+(.*)$", line)
        if m:
            res[int(m.group(1))] = meaning_head(m.group(2))
    return res


def test_kioskctl_exit_statuses_match_the_manual():
    in_help = exit_statuses(help_block(kioskctl_help(), "Exit status"))
    rows = table_rows(section(read("docs/kioskctl.md"), r"^EXIT STATUS$"))
    in_manual = {int(r[0]): meaning_head(r[1]) for r in rows if r and r[0].isdigit()}
    assert len(in_help) >= 5, in_help
    assert in_help == in_manual, (
        "exit statuses differ:\n  kioskctl --help: %r\n  docs/kioskctl.md: %r" % (
            in_help, in_manual))


# --- kioskd command line and configuration ---

FIXED_OPTIONS = {"--config", "--runtime-dir", "--state-dir", "--check-config", "--version"}


def kioskd_options_in_docs():
    opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", read("docs/configuration.md")))
    readme = read("README.md")
    for m in re.finditer(r"(?:^|[\s`/(])kioskd\b(?!ctl|\.)([^`\n]*)", readme, re.M):
        opts.update(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", m.group(1)))
    return opts


def test_kioskd_help_has_every_documented_option():
    rc, out, err = run_kioskd(["--help"])
    assert rc == 0, (rc, out, err)
    opts = kioskd_options_in_docs() | FIXED_OPTIONS
    missing = sorted(o for o in opts if not re.search(r"(?<![\w-])%s\b" % re.escape(o), out))
    assert not missing, "kioskd --help does not mention %s" % missing
    # and kioskd accepts each of them (--version ends the parse with 0)
    for o in sorted(opts):
        m = re.search(r"%s ([A-Z]+)\b" % re.escape(o), out)
        argv = [o, "/nonexistent"] if m else [o]
        if o != "--version":
            argv.append("--version")
        rc, out2, err2 = run_kioskd(argv)
        assert rc == 0, "kioskd %s: exit %d: %s" % (" ".join(argv), rc, err2)


def documented_daemon_keys():
    """{key: value to set}: every [daemon] key of docs/configuration.md with
    its documented default (a key documented as unset gets a name that
    exists everywhere)."""
    rows = table_rows(section(read("docs/configuration.md"), r"^`?\[daemon\]`?$"))
    keys = {}
    for row in rows:
        names = [k for k in code_spans(row[0]) if re.fullmatch(r"[a-z_]+", k)]
        values = [v for v in code_spans(row[1]) if not v.startswith("$")] if len(row) > 1 else []
        for i, k in enumerate(names):
            keys[k] = values[i] if i < len(values) else "root"
    assert len(keys) >= 10, keys
    return keys


def check_config(text):
    with tempfile.TemporaryDirectory(prefix="kd-docs-") as d:
        path = os.path.join(d, "kioskd.conf")
        with open(path, "w") as f:
            f.write(text)
        return run_kioskd(["--check-config", "--config", path])


def test_documented_daemon_keys_are_accepted():
    keys = documented_daemon_keys()
    conf = "[daemon]\n" + "".join("%s = %s\n" % kv for kv in keys.items())
    rc, out, err = check_config(conf)
    assert rc == 0, "kioskd --check-config refused the documented [daemon] keys:\n%s%s\n%s" % (
        out, err, conf)
    assert "configuration OK" in out + err


def test_undocumented_daemon_key_is_refused():
    assert "not_a_documented_key" not in documented_daemon_keys()
    rc, out, err = check_config("[daemon]\nnot_a_documented_key = 1\n")
    assert rc == 1, (rc, out, err)
    assert "not_a_documented_key" in out + err


def test_every_daemon_key_is_documented():
    """The converse: every key of conf.c's [daemon] table is documented."""
    src = strip_comments(read("src/conf.c"))
    table = re.search(r"\bdaemon_keys\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
    assert table, "src/conf.c: no daemon_keys[] table"
    in_code = set(re.findall(r'\{\s*"([a-z_]+)"\s*,\s*K_', table.group(1)))
    assert len(in_code) >= 10, in_code
    missing = sorted(in_code - set(documented_daemon_keys()))
    assert not missing, "docs/configuration.md does not document [daemon] %s" % missing
