"""peers.<key>.max_in_flight: how many calls one peer endpoint may have in flight in a bus
process. By default three quarters of a worker's threads, whatever sets them."""
from __future__ import annotations

from config.settings import SERVER_THREADS, load_settings

SANDBOX = {"BSSBUS_SANDBOX_URL": "http://127.0.0.1:9"}


def test_each_peer_gets_three_quarters_of_the_threads_unless_it_says_otherwise(tmp_path):
    peers = load_settings(env=SANDBOX).peers
    assert {p.max_in_flight for p in peers.values()} == {SERVER_THREADS * 3 // 4}
    override = tmp_path / "limits.yaml"
    override.write_text("server: {threads: 40}\npeers:\n  hq_crm: {max_in_flight: 7}\n", encoding="utf-8")
    peers = load_settings(override, env=SANDBOX).peers
    assert peers["hq_crm"].max_in_flight == 7
    assert peers["province_billing"].max_in_flight == 30
    assert peers["province_billing"].for_province("34", "BankPayment").max_in_flight == 30   # an override keeps it
