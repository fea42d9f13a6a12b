"""Socket permissions and roles for peers other than root: ui.sock is
0660 with ui_group, admin.sock is root's, and members of admin_group are
admin on admin.sock."""

import json
import os
import stat
import subprocess
import sys

import pytest

from kiosk import daemon_section

NOBODY = 65534
USERS_GID = 100  # Debian's "users" group

PEER = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(json.dumps({"connect_error": e.errno}))
    sys.exit(0)
s.sendall(b'{"id":1,"cmd":"hello"}\n{"id":2,"cmd":"config.reload"}\n')
buf = b""
s.settimeout(5)
while buf.count(b"\n") < 2:
    d = s.recv(4096)
    if not d:
        break
    buf += d
print(json.dumps([json.loads(l) for l in buf.splitlines()]))
"""


def as_user(path, uid=NOBODY, gid=USERS_GID):
    out = subprocess.run([sys.executable, "-c", PEER, path], user=uid, group=gid,
                         extra_groups=[], stdout=subprocess.PIPE, timeout=10, check=True)
    return json.loads(out.stdout)


@pytest.fixture
def open_tmp(kd):
    def make(conf):
        d = kd(conf, start=False)
        os.chmod(d.tmp, 0o755)
        d.start()
        return d
    return make


def test_socket_modes(open_tmp):
    d = open_tmp(daemon_section())
    ui = os.stat(d.ui_sock)
    adm = os.stat(d.admin_sock)
    assert stat.S_ISSOCK(ui.st_mode) and stat.S_ISSOCK(adm.st_mode)
    assert stat.S_IMODE(ui.st_mode) == 0o660
    assert stat.S_IMODE(adm.st_mode) == 0o600
    assert adm.st_uid == 0


def test_other_user_without_groups(open_tmp):
    d = open_tmp(daemon_section())
    assert as_user(d.ui_sock, gid=NOBODY) == {"connect_error": 13}
    assert as_user(d.admin_sock, gid=NOBODY) == {"connect_error": 13}


def test_ui_group_member_is_ui(open_tmp):
    d = open_tmp(daemon_section(ui_group="users"))
    assert os.stat(d.ui_sock).st_gid == USERS_GID
    hello, reload = as_user(d.ui_sock)
    assert hello["result"]["role"] == "ui"
    assert reload["error"]["code"] == "not_permitted"


def test_admin_group_member_is_admin(open_tmp):
    """PROTOCOL.md: a session on admin.sock whose peer is in the configured
    admin group is admin -- so such a peer must be able to connect."""
    d = open_tmp(daemon_section(admin_group="users"))
    assert os.stat(d.admin_sock).st_gid == USERS_GID
    got = as_user(d.admin_sock)
    assert isinstance(got, list), "admin_group member cannot connect to admin.sock: %r" % got
    hello, reload = got
    assert hello["result"]["role"] == "admin"
    assert reload["ok"] is True


def test_non_member_on_admin_sock_is_not_admin(open_tmp):
    """Someone who can reach admin.sock but is neither root nor in the
    admin group gets the ui role there."""
    d = open_tmp(daemon_section(admin_group="daemon"))
    os.chmod(d.admin_sock, 0o666)  # as a too-open SocketMode= would
    hello, reload = as_user(d.admin_sock, gid=USERS_GID)
    assert hello["result"]["role"] == "ui"
    assert reload["error"]["code"] == "not_permitted"
