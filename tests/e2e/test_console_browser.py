"""The console in a real headless browser (Debian's chromium, driven by Selenium through
chromedriver): log in, find a customer's payment by number and see which peer answered, open
the trace of a stored message that became a dead letter, replay it with the confirmation, and
see it delivered; markup a message carried never runs.

Needs ``apt-get install -y chromium chromium-driver`` (``.ci/install-browser.sh`` does it in
CI) and the Python package ``selenium`` (the ``test`` extra). Skipped without them, saying so;
under ``CI=true`` a missing browser fails the run instead.
"""
from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.e2e.conftest import control, outbox_rows, post, wait_for
from tests.e2e.console_support import PASSWORDS, adm_rows, console_bus, dead_letter, pay

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver   (or: bash .ci/install-browser.sh)"


def _need_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        message = f"no headless browser for the console test ({', '.join(missing)} missing): {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true, and the browser test must run there: {message}")
        pytest.skip(message)


@pytest.fixture(scope="module")
def driver():
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    chrome.set_page_load_timeout(30)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="module")
def eb(tmp_path_factory):
    with console_bus(tmp_path_factory.mktemp("console-browser")) as embedded:
        yield embedded


def text(driver) -> str:
    from selenium.webdriver.common.by import By
    return driver.find_element(By.TAG_NAME, "body").text


def follow(driver, element) -> None:
    """Click ``element`` (a link or a submit button) and wait until the next page has loaded."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def left(_) -> bool:
        """The clicked element belongs to a page that is gone. chromedriver says so with
        StaleElementReferenceException, or, caught mid-navigation, with "Node with given id does
        not belong to the document" (a plain WebDriverException, which staleness_of lets through)."""
        try:
            element.is_enabled()
        except WebDriverException:
            return True
        return False
    element.click()
    wait = WebDriverWait(driver, 20)
    wait.until(left)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_an_operator_finds_a_payment_and_replays_a_dead_letter_in_a_browser(driver, eb):
    from selenium.webdriver.common.by import By

    args = pay(eb)
    number, trans_ido = args["UNI_BSS_BODY"]["SERIAL_NUMBER"], args["UNI_BSS_HEAD"]["TRANS_IDO"]
    row = dead_letter(eb, "87", reset=False)     # BILLING-87 keeps refusing until reset below
    post(f"{eb.url}/ws/BankPayment", b"<script>window.__xss=1;alert('xss')</script> not xml")

    # 1. the console asks for a login, and takes alice's
    driver.get(f"{eb.url}/console/")
    assert "/console/login" in driver.current_url
    driver.find_element(By.ID, "name").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys("not her password")
    follow(driver, driver.find_element(By.ID, "login"))
    assert "Wrong name or password" in text(driver)
    driver.find_element(By.ID, "name").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys(PASSWORDS["alice"])
    follow(driver, driver.find_element(By.ID, "login"))
    assert driver.current_url.endswith("/console/") and "Health" in driver.title
    assert "BILLING-87" in text(driver), "the failing billing on the health page"

    # 2. a customer's payment, by number, and the peer that answered it
    follow(driver, driver.find_element(By.LINK_TEXT, "Journal"))
    driver.find_element(By.ID, "q-msisdn").send_keys(number)
    follow(driver, driver.find_element(By.ID, "search"))
    results = text(driver)
    assert "BankPayment.Pay" in results and trans_ido in results and "BILLING-51" in results
    follow(driver, driver.find_element(By.LINK_TEXT, trans_ido))
    trace = text(driver)
    assert f"Trace {trans_ido}" in trace and "BILLING-51 (0000)" in trace, "answered by BILLING-51"
    assert "BUS => BILLING-51 ok 0000" in trace
    driver.find_element(By.CSS_SELECTOR, "details summary").click()
    assert "ORIG_DOMAIN>BANK</" in text(driver), "the request's XML, pretty-printed"

    # 3. why the three-account change is stuck: its trace, then the dead letters
    driver.get(f"{eb.url}/console/trace/{row['trans_ido']}")
    stuck = text(driver)
    assert "dead letter" in stuck and "billing is being upgraded" in stuck
    customer = row["args"]["UNI_BSS_BODY"]["CUSTOMER"]["CUST_NAME"]
    assert customer not in driver.page_source, "personal data masked"
    follow(driver, driver.find_element(By.LINK_TEXT, "Dead letters"))
    assert row["trans_ido"] in text(driver)
    follow(driver, driver.find_element(By.CSS_SELECTOR, f"a[href='/console/dlq/{row['id']}/replay']"))
    assert f"Replay dead letter {row['id']}?" in text(driver)
    control(eb.sandbox_url, peer="BILLING-87")   # the billing is back
    follow(driver, driver.find_element(By.ID, "confirm"))
    assert f"Dead letter {row['id']} replayed by alice" in text(driver)

    # 4. delivered: the console says so, and the journal has the audit line with the operator
    def delivered_on_page():
        from selenium.common.exceptions import WebDriverException
        try:
            driver.refresh()
            return driver.find_element(By.CSS_SELECTOR, "dd.status").text == "delivered"
        except WebDriverException:   # caught mid-load: look again
            return False
    wait_for(delivered_on_page, 20)
    assert outbox_rows(eb, row["trans_ido"])[0]["status"] == "delivered"
    assert [(a["source"], a["target"]) for a in adm_rows(eb, row["trans_ido"], "replayed")] == [
        ("alice", "BILLING-87")]
    driver.get(f"{eb.url}/console/trace/{row['trans_ido']}")
    timeline = text(driver)
    assert f"dead letter {row['id']} replayed by alice" in timeline
    assert "BUS => BILLING-87 attempt 1: ok 0000" in timeline

    # 5. markup a caller sent is shown as text and never runs
    driver.get(f"{eb.url}/console/journal?service=BankPayment&status=fault")
    follow(driver, driver.find_element(By.PARTIAL_LINK_TEXT, "trace of the flow"))
    driver.find_element(By.CSS_SELECTOR, "details summary").click()
    assert "<script>window.__xss=1" in text(driver), "the hostile body, as text"
    assert driver.execute_script("return typeof window.__xss") == "undefined"
    from selenium.common.exceptions import NoAlertPresentException
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text

    # 6. log out: the console asks for a login again
    follow(driver, driver.find_element(By.XPATH, "//button[text()='Log out']"))
    driver.get(f"{eb.url}/console/dlq")
    assert "/console/login" in driver.current_url
