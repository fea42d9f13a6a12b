#!/usr/bin/python3
"""Test certificates for the reference endpoint, made with the openssl CLI.

    certs.py DIR            create them in DIR (no-op when already there)
    certs.ensure(DIR)       the same from Python; returns the file map

Everything is EC P-256 and takes a fraction of a second.  Generation is
idempotent (a stamp file is written last) and safe against concurrent
callers (flock on DIR/.lock).  Validity windows are wide on purpose: the
good certificates are valid from 2 years ago to 10 years ahead, so a test
that moves the clock a year either way still sees them as valid; the expired
ones ended a year ago.

| file | what |
|---|---|
| ca.crt / ca.key | the server CA: what kioskd's `ca_file` points to |
| server.crt / server.key | the endpoint: SAN localhost, 127.0.0.1, ::1 |
| client-ca.crt / client-ca.key | the CA the endpoint trusts for client certificates |
| client.crt / client.key | the kiosk (CN kiosk-0001), signed by client-ca |
| rogue-ca.crt / rogue-ca.key | a CA nobody trusts |
| unknown-ca-server.crt/.key | a server certificate for localhost signed by rogue-ca |
| unknown-ca-client.crt/.key | a client certificate signed by rogue-ca |
| expired-server.crt/.key | signed by ca, expired a year ago |
| expired-client.crt/.key | signed by client-ca, expired a year ago |
| wrong-host-server.crt/.key | signed by ca, but for DNS:wrong.example only |
"""

import datetime
import fcntl
import os
import subprocess
import sys

VERSION = "2"
STAMP = ".certs-v" + VERSION

# name -> role; the server presents one of these (server.py --server-cert)
SERVER_CERTS = {
    "good": "server",
    "expired": "expired-server",
    "unknown_ca": "unknown-ca-server",
    "wrong_host": "wrong-host-server",
}

_CA_CONF = """\
[ca]
default_ca = tca
[tca]
database = {db}/index.txt
new_certs_dir = {db}
serial = {db}/serial
default_md = sha256
policy = pol
unique_subject = no
copy_extensions = copy
email_in_dn = no
[pol]
commonName = supplied
organizationName = optional
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {san}
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _run(args, cwd):
    p = subprocess.run(["openssl"] + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), p.stdout.decode(errors="replace")))


def _date(days):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    return t.strftime("%Y%m%d%H%M%SZ")


def _key_and_csr(d, name, cn):
    _run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-subj", "/O=kioskd tests/CN=" + cn, "-keyout", name + ".key", "-out", name + ".csr"], d)
    os.chmod(os.path.join(d, name + ".key"), 0o600)


def _sign(d, ca, name, section, start, end, san="DNS:localhost", selfsign=False):
    db = os.path.join(d, ".db-" + ca)
    if not os.path.isdir(db):
        os.makedirs(db)
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write(os.urandom(8).hex().upper() + "\n")
    conf = os.path.join(d, ".%s-%s.cnf" % (ca, name))
    with open(conf, "w") as f:
        f.write(_CA_CONF.format(db=db, san=san))
    args = ["ca", "-batch", "-notext", "-config", conf, "-extensions", section, "-keyfile", ca + ".key",
            "-in", name + ".csr", "-out", name + ".crt", "-startdate", _date(start), "-enddate", _date(end)]
    args += ["-selfsign"] if selfsign else ["-cert", ca + ".crt"]
    _run(args, d)
    os.unlink(conf)
    os.unlink(os.path.join(d, name + ".csr"))


def _make_ca(d, name, cn):
    _key_and_csr(d, name, cn)
    _sign(d, name, name, "v3_ca", -800, 4000, selfsign=True)


def files(d):
    """The map of role -> path for a certificate directory."""
    d = os.path.abspath(d)
    f = {}
    for n in ("ca", "server", "client-ca", "client", "rogue-ca", "unknown-ca-server", "unknown-ca-client",
              "expired-server", "expired-client", "wrong-host-server"):
        f[n + ".crt"] = os.path.join(d, n + ".crt")
        f[n + ".key"] = os.path.join(d, n + ".key")
    return f


def ensure(d):
    """Create the certificates in d unless they are there; returns files(d)."""
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    stamp = os.path.join(d, STAMP)
    if os.path.exists(stamp):
        return files(d)
    with open(os.path.join(d, ".lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if os.path.exists(stamp):
            return files(d)
        local = "DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"
        _make_ca(d, "ca", "kioskd test server CA")
        _make_ca(d, "client-ca", "kioskd test client CA")
        _make_ca(d, "rogue-ca", "rogue CA nobody trusts")
        for name, ca, section, start, end, san, cn in (
            ("server", "ca", "server", -730, 3650, local, "localhost"),
            ("client", "client-ca", "client", -730, 3650, None, "kiosk-0001"),
            ("unknown-ca-server", "rogue-ca", "server", -730, 3650, local, "localhost"),
            ("unknown-ca-client", "rogue-ca", "client", -730, 3650, None, "kiosk-0001"),
            ("expired-server", "ca", "server", -730, -365, local, "localhost"),
            ("expired-client", "client-ca", "client", -730, -365, None, "kiosk-0001"),
            ("wrong-host-server", "ca", "server", -730, 3650, "DNS:wrong.example", "wrong.example"),
        ):
            _key_and_csr(d, name, cn)
            _sign(d, ca, name, section, start, end, san=san or "DNS:unused.invalid")
        with open(stamp, "w") as f:
            f.write("kioskd endpoint test certificates, version %s\n" % VERSION)
    return files(d)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.stderr.write("usage: certs.py DIR\n")
        sys.exit(2)
    for k, v in sorted(ensure(sys.argv[1]).items()):
        if k.endswith(".crt"):
            print(v)
