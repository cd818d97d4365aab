"""A bus for the console's tests: operators with passwords, quick redelivery, and helpers
that make what an operator looks for (a payment, a dead letter) over real HTTP."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import yaml

from bus.embedded import EmbeddedBus
from bus.security import hash_password
from config.settings import load_settings
from sandbox.store import seed_users
from services.client import BusClient
from tests.e2e.conftest import control, make_args, outbox_rows, wait_for

#: alice may see messages unmasked; her password comes from the environment. bob may not; his is
#: a hash in the secrets file. carol has no password: she cannot log in to the console.
PASSWORDS = {"alice": "alice-console-pw", "bob": "bob-console-pw"}


@contextlib.contextmanager
def console_bus(workdir: Path, max_attempts: int = 2):
    secrets_file = Path(workdir) / "secrets.yaml"
    secrets_file.write_text(yaml.safe_dump({"operators": {"bob": {"password_hash": hash_password(
        PASSWORDS["bob"], iterations=1000)}}}), encoding="utf-8")
    settings = load_settings(env={})
    settings.raw["operators"] = {"alice": {"roles": ["raw-reader"]}, "bob": {"roles": []}, "carol": {}}
    settings.raw.setdefault("security", {})["secrets_file"] = str(secrets_file)
    settings.raw["redelivery"] = dict(settings.raw.get("redelivery") or {}, poll_seconds=0.1, initial_seconds=0.1,
                                      cap_seconds=0.3, max_attempts=max_attempts)
    previous = os.environ.get("BSSBUS_OPERATOR_ALICE_PASSWORD")
    os.environ["BSSBUS_OPERATOR_ALICE_PASSWORD"] = PASSWORDS["alice"]
    try:
        with EmbeddedBus(settings, workdir=workdir) as embedded:
            yield embedded
    finally:
        if previous is None:
            os.environ.pop("BSSBUS_OPERATOR_ALICE_PASSWORD", None)
        else:
            os.environ["BSSBUS_OPERATOR_ALICE_PASSWORD"] = previous


def pay(embedded) -> dict:
    """A bank's payment for a number of Guangdong (51, phase 2): its Billing answers."""
    args = make_args("BankPayment", "Pay")
    args["UNI_BSS_BODY"]["BANK_SERIAL"] = "ICBC" + time.strftime("%Y%m%d%H%M%S") + str(time.time_ns())[-6:]
    result = BusClient(embedded.url).call("BankPayment", "Pay", args)
    assert (result.rsp_code, result.sender) == ("0000", "BILLING-51"), (result.head, result.fault_string)
    return args


def dead_letter(embedded, province: str = "87", reset: bool = True) -> dict:
    """A three-account change of a GSM user of ``province`` that its Billing refuses until the
    attempts are spent: its outbox row, a dead letter. The Billing is reset afterwards unless
    ``reset`` is false (then it goes on refusing until ``control(sandbox_url, peer=...)``)."""
    peer = f"BILLING-{province}"
    user = next(u for u in seed_users(province) if u.net_type == "10")
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("01", user.msisdn),
                     SYNC_SEQ=int(time.time() * 1000))
    args["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=user.msisdn, PROVINCE_CODE=user.province,
                                        NET_TYPE_CODE=user.net_type, USER_ID=f"U{user.msisdn}")
    control(embedded.sandbox_url, peer=peer, fault="billing is being upgraded")
    try:
        result = BusClient(embedded.url).call("AccountSync", "SyncThreeAccount", args)
        assert result.rsp_code == "0000", result.fault_string
        trans_ido = args["UNI_BSS_HEAD"]["TRANS_IDO"]
        wait_for(lambda: [r["status"] for r in outbox_rows(embedded, trans_ido)] == ["dead"])
    finally:
        if reset:
            control(embedded.sandbox_url, peer=peer)
    return dict(outbox_rows(embedded, trans_ido)[0], args=args)


def adm_rows(embedded, trans_ido: str, status: str) -> list[dict]:
    return [h for h in embedded.bus.journal.hops(trans_ido) if h["direction"] == "adm" and h["status"] == status]
