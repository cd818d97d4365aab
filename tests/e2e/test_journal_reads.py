"""``bus.journal_reads``: how the journal row of a read (Query*, List*) is written, over real
HTTP. Deferred (the default) and sync give the same rows; off gives none for reads and still
journals everything else."""
from __future__ import annotations

import time

import pytest

from bus.embedded import EmbeddedBus
from config.settings import ConfigError, load_settings
from sandbox.store import seed_users
from services.client import BusClient
from tests.e2e.conftest import make_args

COLUMNS = ("direction", "service", "operation", "status", "rsp_code", "target", "province", "source")


def journalled(mode: str, tmp_path) -> tuple[list[dict], list[dict]]:
    """(hops of a QueryArrears, hops of a Pay) through a bus with ``journal_reads: mode``."""
    settings = load_settings(env={}).copy()
    settings.raw.setdefault("bus", {})["journal_reads"] = mode
    u = seed_users("51")[2]
    route = ("01", u.msisdn)
    with EmbeddedBus(settings, workdir=tmp_path) as bus:
        client = BusClient(bus.url)
        query = make_args("BankPayment", "QueryArrears", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn)
        pay = make_args("BankPayment", "Pay", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn, AMOUNT=100,
                        BANK_SERIAL=f"JR{mode}{int(time.time() * 1000)}")
        assert client.call("BankPayment", "QueryArrears", query).rsp_code == "0000"
        assert client.call("BankPayment", "Pay", pay).rsp_code == "0000"
        return [[{c: h[c] for c in COLUMNS} for h in bus.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"])]
                for args in (query, pay)]


def test_a_deferred_read_is_journalled_as_a_synchronous_one_is(tmp_path):
    deferred_read, deferred_pay = journalled("deferred", tmp_path / "deferred")
    sync_read, sync_pay = journalled("sync", tmp_path / "sync")
    assert [h["direction"] for h in deferred_read] == ["in", "out"]
    assert deferred_read[0]["status"] == "ok" and deferred_read[1]["target"] == "BILLING-51"
    assert deferred_read == sync_read
    assert deferred_pay == sync_pay and [h["direction"] for h in sync_pay] == ["in", "out"]


def test_off_keeps_no_row_of_a_read_and_still_journals_a_payment(tmp_path):
    read, pay = journalled("off", tmp_path)
    assert read == []
    assert [(h["direction"], h["status"]) for h in pay] == [("in", "ok"), ("out", "ok")]


def test_an_unknown_journal_reads_setting_is_refused():
    settings = load_settings(env={}).copy()
    settings.raw.setdefault("bus", {})["journal_reads"] = "later"
    with pytest.raises(ConfigError, match="bus.journal_reads: 'later' is not one of deferred, sync, off"):
        settings.journal_reads
