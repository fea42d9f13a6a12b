"""The audit journal: every device command and its outcome, linked to the
flow or transaction it served (audit.list, admin)."""
from kiosk import daemon_section, sim_device

CONF = daemon_section() + sim_device("card0", "cardreader", latency_ms=0) \
    + sim_device("printer0", "printer", latency_ms=0)


def test_device_commands_are_journaled_with_their_flow(kd):
    d = kd(CONF)
    a = d.admin()
    ui = d.client()
    a.ok("sim.inject", "card0", {"what": "insert"})
    ui.ok("cardreader.read", args={"length": 4, "flow": "f-1", "txn": "t-1"})
    e = ui.err("cardreader.write", args={"offset": 9999, "data": "00", "flow": "f-1"})
    assert e["code"] == "bad_request"
    ui.ok("printer.print", args={"blocks": [{"text": "x"}]})
    a.ok("sim.inject", "printer0", {"what": "paper_out"})
    assert ui.err("printer.print", args={"blocks": [{"text": "x"}], "flow": "f-2"})["code"] \
        == "device_offline"

    def entries(**flt):
        # the journal shares the store's group commit: it is there once a
        # later commit (any submit) has run
        return a.ok("audit.list", args=flt)["entries"]

    a.ok("txn.submit", args={"type": "t.sync", "payload": {}})
    f1 = entries(flow="f-1")
    assert [(x["cmd"], x["outcome"]) for x in f1] == [
        ("cardreader.write", "bad_request"), ("cardreader.read", "ok")], f1
    assert f1[1]["txn"] == "t-1" and f1[1]["device"] == "card0"
    assert "detail" not in f1[1]  # success needs no detail
    # a failure keeps the device's own words: what was and was not done
    assert "9999" in f1[0]["detail"] and "256" in f1[0]["detail"], f1
    f2 = entries(flow="f-2")
    assert [(x["cmd"], x["outcome"], x["detail"]) for x in f2] == [
        ("printer.print", "device_offline", "paper out")], f2
    allp = entries(device="printer0")
    assert [x["outcome"] for x in allp] == ["device_offline", "ok"], allp
    # paging: newest first, then before=seq
    first = entries(limit=1)
    older = entries(limit=1, before=first[0]["seq"])
    assert older[0]["seq"] < first[0]["seq"]
    # admin only; bad filters are refused
    assert ui.err("audit.list")["code"] == "not_permitted"
    assert a.err("audit.list", args={"limit": 0})["code"] == "bad_request"
    assert a.err("audit.list", args={"colour": "red"})["code"] == "bad_request"
