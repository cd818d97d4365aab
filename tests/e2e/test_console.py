"""The web console over real HTTP: who may see it, forms that need their CSRF token, escaping
of whatever a message carries, the unmasked view for raw-readers only, replay and discard with
their audit lines, and each page with what it is for (tests/e2e/test_console_browser.py drives
the same in a real browser)."""
from __future__ import annotations

import re
import time
import uuid

import pytest
import requests

from dao.reconcile import ReconStore
from services.console.app import COOKIE, pretty_xml
from tests.e2e.conftest import outbox_rows, post, wait_for
from tests.e2e.console_support import PASSWORDS, adm_rows, console_bus, dead_letter, pay


@pytest.fixture(scope="module")
def eb(tmp_path_factory):
    with console_bus(tmp_path_factory.mktemp("console")) as embedded:
        yield embedded


def browser(eb) -> requests.Session:
    s = requests.Session()
    s.base = eb.url + "/console"
    return s


def login(eb, name: str = "alice", password: str | None = None) -> requests.Session:
    s = browser(eb)
    r = s.post(f"{s.base}/login", data={"name": name, "password": password or PASSWORDS[name]},
               allow_redirects=False)
    assert r.status_code == 303, r.text
    return s


def csrf_of(html: str) -> str:
    return re.search(r"name='csrf' value='([0-9a-f]+)'", html).group(1)


def test_every_page_needs_a_logged_in_operator(eb):
    anonymous = browser(eb)
    for path in ("/", "/journal?msisdn=18603011234", "/trace/X", "/dlq", "/dlq/1", "/routes", "/reconciliation"):
        r = anonymous.get(anonymous.base + path, allow_redirects=False)
        assert r.status_code == 303 and r.headers["Location"].startswith("/console/login?next="), (path, r.status_code)
    r = anonymous.get(anonymous.base + "/journal?msisdn=1", allow_redirects=True)
    assert r.status_code == 200 and "name='password'" in r.text, "the login form, keeping where to go next"
    row = dead_letter(eb, "88")
    r = anonymous.post(f"{anonymous.base}/dlq/{row['id']}/replay", data={"csrf": "x"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/console/login"
    assert outbox_rows(eb, row["trans_ido"])[0]["status"] == "dead", "nothing happens without a login"


def test_a_wrong_password_an_unknown_name_or_no_password_is_refused(eb):
    for name, password in (("alice", "wrong"), ("alice", PASSWORDS["bob"]), ("mallory", "x"), ("carol", ""),
                           ("carol", "anything")):
        s = browser(eb)
        r = s.post(f"{s.base}/login", data={"name": name, "password": password}, allow_redirects=False)
        assert r.status_code == 401 and "Wrong name or password" in r.text, name
        assert COOKIE not in r.headers.get("Set-Cookie", "") and not s.cookies
        assert s.get(s.base + "/", allow_redirects=False).status_code == 303
    r = browser(eb).post(eb.url + "/console/login", data={"name": "bob", "password": PASSWORDS["bob"],
                                                          "next": "https://evil.example/"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/console/", "never a redirect off the console"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie


def test_repeated_failures_lock_the_name_for_a_while(eb):
    s = browser(eb)
    name = "bob"
    for _ in range(5):
        s.post(f"{s.base}/login", data={"name": name, "password": "guess"}, allow_redirects=False)
    r = s.post(f"{s.base}/login", data={"name": name, "password": PASSWORDS[name]}, allow_redirects=False)
    assert r.status_code == 401 and "Too many failed logins" in r.text
    eb.app.console._failures.clear()   # (per process, in memory: the other tests log bob in again)


def test_made_up_names_neither_lock_anyone_nor_reset_a_lock(eb):
    s = browser(eb)
    for _ in range(5):
        s.post(f"{s.base}/login", data={"name": "bob", "password": "guess"}, allow_redirects=False)
    for n in range(30):
        s.post(f"{s.base}/login", data={"name": f"nobody{n}", "password": "guess"}, allow_redirects=False)
    assert set(eb.app.console._failures) == {"bob"}
    r = s.post(f"{s.base}/login", data={"name": "bob", "password": PASSWORDS["bob"]}, allow_redirects=False)
    assert r.status_code == 401 and "Too many failed logins" in r.text
    eb.app.console._failures.clear()


def test_an_id_that_is_no_id_and_a_next_that_is_no_path_are_refused_quietly(eb):
    s = login(eb, "bob")
    for path in ("/dlq/\u00b2", "/dlq/99999999999999999999999", "/dlq/99999999999999999999999/replay",
                 "/reconciliation/\u00b2", "/reconciliation/" + "9" * 5000):
        r = s.get(s.base + path.encode().decode("unicode_escape"))
        assert r.status_code == 404, (path[:40], r.status_code)
    r = browser(eb).post(f"{eb.url}/console/login?next=/console/%0d%0aX-Injected:%20y",
                         data={"name": "bob", "password": PASSWORDS["bob"]}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/console/" and "X-Injected" not in r.headers


def test_a_forged_or_tampered_session_is_no_session(eb):
    s = login(eb)
    value = s.cookies.get(COOKIE)
    payload, signature = value.rsplit(".", 1)
    for forged in (payload + "." + "0" * 64, payload[:-4] + "AAAA." + signature, "x", ""):
        other = browser(eb)
        other.cookies.set(COOKIE, forged, path="/console/")
        assert other.get(other.base + "/", allow_redirects=False).status_code == 303
    r = s.post(f"{s.base}/logout", data={"csrf": csrf_of(s.get(s.base + "/").text)}, allow_redirects=False)
    assert r.status_code == 303 and "Max-Age=0" in r.headers["Set-Cookie"]
    assert s.get(s.base + "/", allow_redirects=False).status_code == 303


def test_a_replay_needs_the_csrf_token_of_the_session_then_is_journalled_with_the_operator(eb):
    row = dead_letter(eb, "89")
    s = login(eb, "bob")
    page = s.get(f"{s.base}/dlq/{row['id']}/replay")
    assert page.status_code == 200 and "Yes, replay it" in page.text and "journalled under your name, bob" in page.text
    assert outbox_rows(eb, row["trans_ido"])[0]["status"] == "dead", "asking is not doing"
    other = login(eb, "alice")
    for data in ({}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": csrf_of(other.get(other.base + "/").text)}):
        r = s.post(f"{s.base}/dlq/{row['id']}/replay", data=data, allow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text, data
    assert outbox_rows(eb, row["trans_ido"])[0]["status"] == "dead" and not adm_rows(eb, row["trans_ido"], "replayed")
    r = s.post(f"{s.base}/dlq/{row['id']}/replay", data={"csrf": csrf_of(page.text)}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == f"/console/dlq/{row['id']}?done=replayed"
    wait_for(lambda: outbox_rows(eb, row["trans_ido"])[0]["status"] == "delivered")
    audit = adm_rows(eb, row["trans_ido"], "replayed")
    assert [(a["source"], a["target"]) for a in audit] == [("bob", "BILLING-89")]
    assert f"dead letter {row['id']} replayed by bob" == audit[0]["route"]
    shown = s.get(f"{s.base}/dlq/{row['id']}").text
    assert "delivered" in shown and "Replay…" not in shown
    again = s.post(f"{s.base}/dlq/{row['id']}/replay", data={"csrf": csrf_of(page.text)}, allow_redirects=False)
    assert again.status_code == 409 and "not a dead letter" in again.text


def test_a_discard_needs_a_reason_and_is_journalled(eb):
    row = dead_letter(eb, "90")
    s = login(eb, "bob")
    token = csrf_of(s.get(f"{s.base}/dlq/{row['id']}/discard").text)
    r = s.post(f"{s.base}/dlq/{row['id']}/discard", data={"csrf": token, "reason": " "}, allow_redirects=False)
    assert r.status_code == 200 and "Say why" in r.text and outbox_rows(eb, row["trans_ido"])[0]["status"] == "dead"
    r = s.post(f"{s.base}/dlq/{row['id']}/discard", data={"csrf": token, "reason": "superseded"},
               allow_redirects=False)
    assert r.status_code == 303 and outbox_rows(eb, row["trans_ido"])[0]["status"] == "discarded"
    assert [(a["source"], a["error"].split(" (")[0]) for a in adm_rows(eb, row["trans_ido"], "discarded")] == [
        ("bob", "superseded")]


HOSTILE = "<script>window.__xss=1</script><img src=x onerror=alert(1)>"


def test_what_a_message_carries_is_escaped_on_every_page(eb):
    """A request that is no XML at all, and a valid envelope with markup in a CDATA section (a
    validation fault echoes it in its reason): neither reaches a page as markup."""
    garbage = f"{HOSTILE} not xml".encode()
    assert post(f"{eb.url}/ws/BankPayment", garbage)[0] == 500
    serial = f"<![CDATA[{HOSTILE}]]>"
    trans_ido = "T" + uuid.uuid4().hex[:26]
    envelope = (
        "<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/' "
        "xmlns:b='http://ws.chinaunicom.cn/BankPayment/unibssBody' xmlns:h='http://ws.chinaunicom.cn/unibssHead'>"
        "<soapenv:Body><b:QueryArrears><h:UNI_BSS_HEAD><h:ORIG_DOMAIN>BANK</h:ORIG_DOMAIN>"
        "<h:SERVICE_NAME>BankPayment</h:SERVICE_NAME><h:OPERATE_NAME>QueryArrears</h:OPERATE_NAME>"
        "<h:ACTION_CODE>0</h:ACTION_CODE><h:ROUTING><h:ROUTE_TYPE>01</h:ROUTE_TYPE>"
        f"<h:ROUTE_VALUE>18603011234</h:ROUTE_VALUE></h:ROUTING><h:PROC_ID>{trans_ido}</h:PROC_ID>"
        f"<h:TRANS_IDO>{trans_ido}</h:TRANS_IDO><h:PROCESS_TIME>20261127103000</h:PROCESS_TIME>"
        "<h:TEST_FLAG>0</h:TEST_FLAG></h:UNI_BSS_HEAD><b:UNI_BSS_BODY>"
        f"<b:BANK_CODE>{serial}</b:BANK_CODE><b:SERIAL_NUMBER>18603011234</b:SERIAL_NUMBER>"
        "</b:UNI_BSS_BODY></b:QueryArrears></soapenv:Body></soapenv:Envelope>")
    status, _, answer = post(f"{eb.url}/ws/BankPayment", envelope.encode(), headers={"SOAPAction": "QueryArrears"})
    assert status == 500 and b"Client.ValidationError" in answer, answer
    s = login(eb)
    hostile_hops = [h for h in eb.bus.journal.search(service="BankPayment", status="fault", limit=20)
                    if b"__xss" in (h["request"] or b"")]
    assert len(hostile_hops) == 2
    pages = [s.get(f"{s.base}/journal", params={"service": "BankPayment", "status": "fault"}).text]
    pages += [s.get(f"{s.base}/trace/{h['trans_ido'] or h['msg_id']}").text for h in hostile_hops]
    for html in pages:
        assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in pages[1] + pages[2], "shown, as text"
    assert "script-src" not in s.get(s.base + "/").headers["Content-Security-Policy"] and \
        "default-src 'none'" in s.get(s.base + "/").headers["Content-Security-Policy"], "and no script may run"


def test_the_unmasked_xml_is_for_raw_readers_only_and_each_view_is_journalled(eb):
    row = dead_letter(eb, "91")
    trans_ido, name = row["trans_ido"], row["args"]["UNI_BSS_BODY"]["CUSTOMER"]["CUST_NAME"]
    bob = login(eb, "bob")
    masked = bob.get(f"{bob.base}/trace/{trans_ido}").text
    assert name not in masked and name[0] + "*" in masked, "personal data masked in the XML"
    assert "Show the messages unmasked" not in masked
    r = bob.post(f"{bob.base}/trace/{trans_ido}/unmasked", data={"csrf": csrf_of(masked)})
    assert r.status_code == 403 and "lacks the role raw-reader" in r.text and name not in r.text
    assert not adm_rows(eb, trans_ido, "unmasked")
    alice = login(eb, "alice")
    page = alice.get(f"{alice.base}/trace/{trans_ido}").text
    assert name not in page and "Show the messages unmasked" in page
    r = alice.post(f"{alice.base}/trace/{trans_ido}/unmasked", data={})
    assert r.status_code == 403 and name not in r.text, "a POST without the token shows nothing"
    r = alice.post(f"{alice.base}/trace/{trans_ido}/unmasked", data={"csrf": csrf_of(page)})
    assert r.status_code == 200 and name in r.text and "Shown unmasked to alice" in r.text
    assert [a["source"] for a in adm_rows(eb, trans_ido, "unmasked")] == ["alice"]


def test_a_payment_found_by_number_and_its_trace_names_the_peer_that_answered(eb):
    args = pay(eb)
    number, trans_ido = args["UNI_BSS_BODY"]["SERIAL_NUMBER"], args["UNI_BSS_HEAD"]["TRANS_IDO"]
    s = login(eb, "bob")
    found = s.get(f"{s.base}/journal", params={"msisdn": number, "service": "BankPayment"}).text
    assert trans_ido in found and "BankPayment.Pay" in found and "BILLING-51" in found
    assert s.get(f"{s.base}/journal", params={"serial": args["UNI_BSS_BODY"]["BANK_SERIAL"]}).text.count(
        f"/console/trace/{trans_ido}") == 2, "the inbound hop and the call, by bank serial"
    assert "give an ISO time" in s.get(f"{s.base}/journal", params={"since": "yesterday"}).text
    trace = s.get(f"{s.base}/trace/{trans_ido}").text
    assert "BILLING-51 (0000)" in trace, "answered by"
    assert "route bank-payment (province 51, phase 2) -&gt; BILLING-51" in trace
    assert re.search(r"MSG_SENDER&gt;BILLING-51&lt;/[a-z0-9]*:?MSG_SENDER", trace), "the answer's XML"
    assert "\n  " in re.search(r"<pre class='xml'>(.*?)</pre>", trace, re.S).group(1), "pretty-printed"
    assert s.get(f"{s.base}/trace/nosuchkey").status_code == 404


def test_health_routes_dead_letters_and_reconciliation_pages(eb):
    row = dead_letter(eb, "97", reset=True)
    s = login(eb, "bob")
    health = s.get(s.base + "/").text
    assert "BILLING-97" in health and "as this bus process sees it" in health and "dead letters" in health
    routes = s.get(s.base + "/routes").text
    assert "bank-payment" in routes and "BILLING-51" in routes and "HQ-BILLING" in routes
    dlq = s.get(s.base + "/dlq").text
    assert f"/console/dlq/{row['id']}/replay" in dlq and "billing is being upgraded" in dlq
    assert f"/console/dlq/{row['id']}" not in s.get(s.base + "/dlq", params={"peer": "BILLING-51"}).text
    store = ReconStore(eb.bus.engine)
    day = time.strftime("%Y%m%d")
    batch = store.claim(f"ICBC_{day}.txt", "ICBC", day, uuid.uuid4().hex, 3, 30000)
    store.compared(batch, {"balanced": (1, 10000), "bank_only": (1, 10000), "mismatch": (1, 10000)}, [
        dict(bank_serial="ICBC0001", outcome="bank_only", action="post", state="pending", txn_type="0",
             msisdn="18603011234", province="51", bank_amount=10000, txn_time=day + "103000"),
        dict(bank_serial="ICBC0002", outcome="mismatch", action="hold", state="held", txn_type="0",
             msisdn="18603011235", province="51", bank_amount=10000, billing_amount=9000, detail="amounts differ")])
    listed = s.get(s.base + "/reconciliation").text
    assert f"/console/reconciliation/{batch}" in listed and "ICBC" in listed
    shown = s.get(f"{s.base}/reconciliation/{batch}").text
    assert "ICBC0001" in shown and "ICBC0002" in shown and "amounts differ" in shown and "90.00" in shown


def test_the_statistics_page_counts_the_payments_and_exports_them_as_csv(eb):
    s = login(eb, "bob")

    def paid_in_51(csv_text: str) -> tuple[int, int]:
        rows = [r.split(",") for r in csv_text.splitlines()[1:]]
        return (sum(int(r[4]) for r in rows if r[1] == "51"), sum(int(r[5]) for r in rows if r[1] == "51"))
    before = paid_in_51(s.get(f"{s.base}/stats.csv", params={"since": "1d"}).text)
    args = pay(eb)
    amount = int(args["UNI_BSS_BODY"]["AMOUNT"])
    page_ = s.get(f"{s.base}/stats", params={"since": "1d"}).text
    assert "Statistics" in page_ and "Download as CSV" in page_ and "<td>51</td>" in page_
    got = s.get(f"{s.base}/stats.csv", params={"since": "1d", "province": "51"})
    assert got.headers["Content-Type"].startswith("text/csv") and "attachment" in got.headers["Content-Disposition"]
    assert got.text.splitlines()[0].startswith("day,province,orders,work_orders_completed,payments,payments_fen")
    assert paid_in_51(got.text) == (before[0] + 1, before[1] + amount)
    bad = s.get(f"{s.base}/stats", params={"since": "someday"})
    assert bad.status_code == 200 and "give a date" in bad.text
    assert s.get(f"{s.base}/stats", params={"province": "5"}).text.count("two-digit province code") == 1


def test_pretty_xml_leaves_what_does_not_parse_as_it_is():
    assert pretty_xml(b"<a><b>1</b></a>") == "<a>\n  <b>1</b>\n</a>\n"
    assert pretty_xml("<?xml version='1.0' encoding='GBK'?><a/>") == "<a/>\n"
    assert pretty_xml(b"<a><b>") == "<a><b>"
