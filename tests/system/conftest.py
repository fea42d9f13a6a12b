"""pytest fixtures for the kioskd system tests.

`kd(conf, ...)` starts a daemon on a private temp directory and waits for
READY=1 on its NOTIFY_SOCKET.  At teardown every daemon still running is
stopped with SIGTERM and must exit 0 with no sanitizer report in its log.
Set KIOSKD_KEEP=1 to keep the temp directories of failed tests
(KIOSKD_KEEP=all: of every test).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import kiosk  # noqa: E402


def pytest_report_header(config):
    return "kioskd build: %s%s" % (kiosk.BUILD, " (sanitizers)" if kiosk.SAN else "")


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    if not os.access(kiosk.KIOSKD, os.X_OK):
        pytest.fail("no kioskd at %s: run make (or set KIOSKD_BUILD)" % kiosk.KIOSKD)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


class _Factory:
    def __init__(self):
        self.made = []

    def __call__(self, conf="", dropins=None, env=None, args=None, start=True, **kw):
        d = kiosk.Daemon(conf, dropins=dropins, env=env, args=args, **kw)
        self.made.append(d)
        if start:
            d.start()
        return d

    def finish(self, keep):
        errors = []
        for d in self.made:
            try:
                if d.proc is not None and d.proc.poll() is None:
                    d.stop()
                elif d.proc is not None:
                    d.check_log()
            except AssertionError as e:
                errors.append(str(e))
            finally:
                want = os.environ.get("KIOSKD_KEEP", "")
                d.cleanup(keep=want == "all" or (bool(want) and keep))
        if errors:
            pytest.fail("daemon teardown: " + "\n".join(errors))


@pytest.fixture
def kd(request):
    """Factory: kd(conf, dropins=None, env=None, args=None, start=True) -> Daemon."""
    f = _Factory()
    yield f
    rep = getattr(request.node, "rep_call", None)
    f.finish(keep=rep is None or rep.failed)


@pytest.fixture(scope="module")
def kd_module():
    """The same factory, for daemons shared by a whole module."""
    f = _Factory()
    yield f
    f.finish(keep=False)


@pytest.fixture(scope="module")
def ep_module(tmp_path_factory, request):
    """One reference HTTPS endpoint for the module (ENDPOINT_SEED in the
    module seeds its random faults)."""
    sys.path.insert(0, os.path.join(kiosk.REPO, "tests", "endpoint"))
    from endpoint import Endpoint
    e = Endpoint(str(tmp_path_factory.mktemp("endpoint")),
                 seed=getattr(request.module, "ENDPOINT_SEED", None)).start()
    yield e
    e.stop()


@pytest.fixture
def ep(ep_module):
    """The module's reference endpoint, up, forgotten and fault-free."""
    ep_module.reset()
    ep_module.up()
    yield ep_module
    ep_module.clear_faults()
    ep_module.close_connections()
