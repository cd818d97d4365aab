"""bus/config_check.py: every problem of a configuration at once, each with where it is and,
for a misspelt name, what was probably meant."""
from __future__ import annotations

import pytest

from bus.config_check import check_config
from bus.segments import SegmentError, SegmentTable
from config.settings import ConfigError, load_settings


def check(tmp_path, yaml_text: str = "", env: dict | None = None, **kwargs):
    override = tmp_path / "override.yaml"
    override.write_text(yaml_text, encoding="utf-8")
    return check_config(override, env=env or {}, **kwargs)


def problems(report) -> dict[str, str]:
    return {p.where: p.what for p in report.errors}


def test_the_default_configuration_is_valid():
    report = check_config(env={})
    assert report.ok and report.errors == [] and report.warnings == []
    assert report.counts == {"routes": 18, "peers": 6, "provinces": 31, "consumers": 7,
                             "number segments": 33862, "number overrides": 1}
    assert report.summary() == ("configuration OK: 18 routes, 6 peers, 31 provinces, 7 consumers, "
                                "33862 number segments, 1 number override")


ROUTE = "routes:\n  - name: bank-payments\n    service: BankPayment\n"


@pytest.mark.parametrize("yaml_text, where, words", [
    # routes: unknown peers, in a plain target, a phase map and further recipients
    (ROUTE + "    target: province_biling\n", "routes[0] (bank-payments).target",
     "peer 'province_biling' is not configured (did you mean \"province_billing\"?)"),
    (ROUTE + "    target: {2: province_billing, 3: hq_biling}\n", "routes[0] (bank-payments).target.3",
     "peer 'hq_biling' is not configured (did you mean \"hq_billing\"?)"),
    (ROUTE + "    target: hq_billing\n    also: [{target: hq_crn, when: 3g_user}]\n",
     "routes[0] (bank-payments).also[0].target", "peer 'hq_crn' is not configured (did you mean \"hq_crm\"?)"),
    (ROUTE + "    target: hq_billing\n    also: [{target: {3: province_cmr}}]\n",
     "routes[0] (bank-payments).also[0].target.3", "(did you mean \"province_crm\"?)"),
    (ROUTE + "    target: hq_billing\n    also: [esale]\n", "routes[0] (bank-payments).also[0]",
     "(did you mean \"esales\"?)"),
    # routes: no service, no target, an unknown service or operation, a phase map missing a phase
    ("routes:\n  - {name: nothing, target: hq_crm}\n", "routes[0] (nothing).service", "a route needs a service"),
    (ROUTE, "routes[0] (bank-payments).target", "a route needs a target"),
    ("routes:\n  - {name: bills, service: BillQuerry, target: hq_crm}\n", "routes[0] (bills).service",
     "no service 'BillQuerry' (did you mean \"BillQuery\"?)"),
    (ROUTE + "    operations: [Pay, QueryArrear]\n    target: hq_billing\n", "routes[0] (bank-payments).operations",
     "BankPayment has no operation 'QueryArrear' (did you mean \"QueryArrears\"?)"),
    (ROUTE + "    target: {2: province_billing}\n", "routes[0] (bank-payments).target",
     "names no peer for phase 3"),
    (ROUTE + "    target: {2: province_billing, 4: hq_billing}\n", "routes[0] (bank-payments).target.4",
     "phase 4 is not one of 2, 3"),
    # what the router itself refuses, with its own words
    (ROUTE + "    target: hq_billing\n    delivery: store-and-foward\n", "routes[0] (bank-payments)",
     "delivery 'store-and-foward' is not one of sync, store-and-forward (did you mean \"store-and-forward\"?)"),
    (ROUTE + "    target: hq_billing\n    also: [{target: hq_crm, when: 3g_usr}]\n", "routes[0] (bank-payments)",
     "unknown condition '3g_usr' (did you mean \"3g_user\"?)"),
    # consumers
    ("consumers:\n  ESALES: {domain: ESALE, services: {OrderSinc: all}}\n", "consumers.ESALES.services.OrderSinc",
     "no service 'OrderSinc' (did you mean \"OrderSync\"?)"),
    ("consumers:\n  ESALES: {domain: ESALE, services: {BillQuery: [QueryBil]}}\n",
     "consumers.ESALES.services.BillQuery", "BillQuery has no operation 'QueryBil' (did you mean \"QueryBill\"?)"),
    ("consumers:\n  ICBC: {domain: BANK, services: {BankPayment: all}, provinces: [\"52\"]}\n",
     "consumers.ICBC.provinces", "province 52 has no phase in provinces"),
    ("consumers:\n  ICBC: {domain: BANK, service: {BankPayment: all}}\n", "consumers.ICBC",
     "unknown setting service"),
    # provinces and their phases
    ('provinces: {"51": 4}\n', "provinces.51", "phase 4 is not one of 2, 3"),
    ('provinces: {"51": two}\n', "provinces.51", "phase 'two' is not one of 2, 3"),
    ('peers:\n  province_billing:\n    provinces:\n      "42": {adapter: legacy_billing}\n',
     'peers.province_billing.provinces."42"', 'province 42 has no phase in provinces; add provinces."42": 2'),
    # peers
    ("peers:\n  hq_crm: {timout: 5}\n", "peers.hq_crm.timout",
     "unknown setting (did you mean \"timeout\"?)"),
    ("peers:\n  hq_crm: {adapter: hq_cmr}\n", "peers.hq_crm.adapter", "no adapter 'hq_cmr' (did you mean \"hq_crm\"?)"),
    ("peers:\n  hq_crm: {timeout: soon}\n", "peers.hq_crm", "not a usable value"),
    ("peers:\n  hq_crm: {max_in_flight: 0}\n", "peers.hq_crm.max_in_flight", "0 is not a whole number of at least 1"),
    ("peers:\n  hq_crm: {breaker: {failures: 0}}\n", "peers.hq_crm.breaker.failures", "0 must be at least 1"),
    ('peers:\n  province_billing:\n    provinces:\n      "34": {services: [BankPayments]}\n',
     'peers.province_billing.provinces."34".services', "(did you mean \"BankPayment\"?)"),
    # unknown sections and settings, and values the settings refuse
    ("bsu: {port: 8080}\n", "bsu", "unknown section (did you mean \"bus\"?)"),
    ("bus: {max_depht: 10}\n", "bus.max_depht", "unknown setting (did you mean \"max_depth\"?)"),
    ("files: {reconciliation: {page_sise: 10}}\n", "files.reconciliation.page_sise",
     "(did you mean \"page_size\"?)"),
    (ROUTE + "    target: hq_billing\n    caler: BANK\n", "routes[0] (bank-payments).caler",
     "(did you mean \"caller\"?)"),
    ("bus: {max_depth: 1000}\n", "bus.max_depth", "above 256"),
    ("bus: {journal_reads: lazy}\n", "bus.journal_reads", "'lazy' is not one of deferred, sync, off"),
    ("files: {cdr: {every_seconds: 0}}\n", "files.cdr.every_seconds", "is not a number above 0"),
    ("files: {reconciliation: {page_size: 0}}\n", "files.reconciliation", "page_size 1..10000"),
    ("security: {authentication: requird}\n", "security.authentication", "(did you mean \"required\"?)"),
    ("routes: {bank: hq_billing}\n", "routes", "must be a list"),
    ('stats: {timezone: "+25:00"}\n', "stats.timezone", "is not a UTC offset between -14:00 and +14:00"),
    ("stats: {timezone: America/New_York}\n", "stats.timezone", "daylight saving time"),
    ("stats: {time_zone: UTC}\n", "stats.time_zone", "(did you mean \"timezone\"?)"),
])
def test_each_problem_is_found_with_where_it_is(tmp_path, yaml_text, where, words):
    report = check(tmp_path, yaml_text)
    assert not report.ok
    found = problems(report)
    assert where in found, report.errors
    assert words in found[where]


def test_several_problems_are_all_reported(tmp_path):
    report = check(tmp_path, """
bsu: {}
provinces: {"51": 4}
peers:
  hq_crm: {timout: 5}
routes:
  - {name: a, service: BillQuerry, target: hq_crm}
  - {name: b, service: BankPayment, target: {2: province_biling, 3: hq_billing}}
  - {name: c, service: AccountSync, target: hq_billing, also: [{target: hq_crn}]}
consumers:
  ESALES: {domain: ESALE, services: {OrderSinc: all}}
""")
    assert set(problems(report)) == {
        "bsu", "provinces.51", "peers.hq_crm.timout", "routes[0] (a).service", "routes[1] (b).target.2",
        "routes[2] (c).also[0].target", "consumers.ESALES.services.OrderSinc"}
    assert report.summary().startswith("7 problems in the configuration (config/bus.yaml + ")


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_segment_and_override_files_are_checked_line_by_line(tmp_path):
    ranges = write(tmp_path / "seg.csv", "begin_msisdn,end_msisdn,province_code,province,city,area_code\n"
                   "13000000000,13000009999,51,广东,广州,020\n"
                   "13000005000,13000019999,11,北京,北京,010\n"     # overlaps line 2
                   "1300002000x,13000029999,11,北京,北京,010\n"     # not a number
                   "13000039999,13000030000,11,北京,北京,010\n"     # end before begin
                   "13000040000,13000049999,42,火星,火星,000\n"     # no phase
                   "13000050000,13000059999,42,火星,火星,000\n")
    overrides = write(tmp_path / "over.csv", "msisdn,province_code,reason\n18600000000,51,ok\n"
                      "18600000001,52,no phase\n186000,51,short\n")
    report = check(tmp_path, f"segments: {{file: {ranges}, overrides: {overrides}}}\n")
    found = problems(report)
    assert found[f"{ranges}:3"] == "range 13000005000-13000019999 overlaps 13000000000-13000009999 (line 2)"
    assert found[f"{ranges}:4"] == "begin and end must be numbers"
    assert "is not a range of 11-digit numbers" in found[f"{ranges}:5"]
    assert found[f"{ranges}:6"].startswith("province 42 (火星, 2 ranges) has no phase in provinces")
    assert found[f"{overrides}:3"].startswith("province 52 (of 18600000001) has no phase in provinces")
    assert found[f"{overrides}:4"] == "need an 11-digit msisdn and a province_code"
    assert len(report.errors) == 6
    assert report.counts["number segments"] == 3 and report.counts["number overrides"] == 2


def test_a_segment_file_that_is_missing_is_one_problem(tmp_path):
    report = check(tmp_path, f"segments: {{file: {tmp_path}/none.csv}}\n")
    assert f"{tmp_path}/none.csv" in problems(report)
    assert "cannot be read" in problems(report)[f"{tmp_path}/none.csv"]


def test_a_range_without_a_province_is_refused(tmp_path):
    # it was taken as a range of province "", every number of it unroutable
    ranges = write(tmp_path / "seg.csv", "begin_msisdn,end_msisdn,province_code\n13000000000,13000009999\n")
    with pytest.raises(SegmentError, match="seg.csv:2: range 13000000000-13000009999 names no province_code"):
        SegmentTable.from_files(ranges)


def test_a_missing_peer_password_names_its_variable_or_file_never_a_secret(tmp_path):
    report = check(tmp_path, """
peers:
  hq_billing: {auth: {scheme: basic, username: bssbus}}
  hq_crm: {auth: {scheme: basic, username: bssbus, password_file: /no/such/hq_crm.password}}
  province_billing:
    auth: {scheme: username_token, username: "bus-{province}"}
    provinces:
      "34": {auth: {scheme: basic, username: js}}
""", env={"BSSBUS_PEER_PROVINCE_BILLING_PASSWORD": "s3cret-Pw"})
    found = problems(report)
    assert "set the environment variable BSSBUS_PEER_HQ_BILLING_PASSWORD" in found["peers.hq_billing.auth"]
    assert "/no/such/hq_crm.password does not exist" in found["peers.hq_crm.auth.password_file"]
    assert "BSSBUS_PEER_PROVINCE_BILLING_34_PASSWORD" in found['peers.province_billing.provinces."34".auth']
    assert "peers.province_billing.auth" not in found   # its password is set
    assert len(report.errors) == 3
    assert "s3cret-Pw" not in repr(report) + "".join(map(str, report.errors))


def test_consumers_without_credentials_are_named_once_a_peer_is_real(tmp_path):
    report = check(tmp_path, "peers:\n  hq_crm: {url: 'https://crm.example:8443/ws'}\n",
                   env={"BSSBUS_CONSUMER_ESALES_PASSWORD": "x"})
    found = problems(report)
    assert "set BSSBUS_CONSUMER_ICBC_PASSWORD" in found["consumers.ICBC"]
    assert "consumers.ESALES" not in found
    assert len(report.errors) == 6


def test_peers_at_the_sandbox_need_one(tmp_path):
    assert check(tmp_path, sandbox=True).ok
    report = check(tmp_path, sandbox=False)
    assert [p.where for p in report.errors] == ["peers"]
    assert "no sandbox is running" in report.errors[0].what and "hq_crm" in report.errors[0].what
    assert check(tmp_path, env={"BSSBUS_SANDBOX_URL": "http://127.0.0.1:9"}, sandbox=False).ok


def test_suspicious_but_legal_is_a_warning(tmp_path):
    report = check(tmp_path, """
routes:
  - {name: all-bank, service: BankPayment, target: hq_billing}
  - {name: pay, service: BankPayment, operations: [Pay], caller: BANK, target: province_billing}
  - {name: by-robot, service: TopUp, caller: ROBOT, target: hq_billing}
""")
    assert report.ok
    warned = {p.where: p.what for p in report.warnings}
    assert warned["routes[1] (pay)"].startswith("never used: routes[0] (all-bank) comes first")
    assert "no consumer speaks as ORIG_DOMAIN 'ROBOT'" in warned["routes[2] (by-robot).caller"]
    assert report.summary().endswith(", 2 warnings")


def test_a_file_that_cannot_be_read_is_one_problem(tmp_path):
    report = check_config(tmp_path / "none.yaml", env={})
    assert not report.ok and len(report.errors) == 1 and "does not exist" in report.errors[0].what


def test_a_phase_that_is_not_a_number_is_a_config_error_when_loading(tmp_path):
    # it was a ValueError from int(), a traceback on every command
    override = write(tmp_path / "p.yaml", 'provinces: {"51": two}\n')
    with pytest.raises(ConfigError, match="provinces.51: phase 'two' is not one of 2, 3"):
        load_settings(override, env={})
