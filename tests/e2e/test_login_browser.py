"""The legacy-app login in a real browser (issue 12): Debian's chromium,
headless, driven by Selenium through chromium-driver. Envoy runs the shipped
envoy/legacy-app.yaml (oauth2 filter, mpass-guard with userinfo) in front of
the recording legacy app, against the login OP. Each test asserts on what the
page shows and on what the app received.
"""

from __future__ import annotations

import shutil
import time
import urllib.parse

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

import harness
from legacy import CONTRACTED, SIGNOUT, LegacyStack

SESSION_COOKIES = ("BearerToken", "IdToken", "RefreshToken", "OauthHMAC", "OauthExpires",
                   "OauthNonce", "CodeVerifier", "MpassGuardLogin")


def chromium() -> webdriver.Chrome:
    binary = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        raise harness.Missing("chromium / chromium-driver are missing: run `make setup` "
                              "(apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--no-first-run", "--password-store=basic"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.fixture
def browser():
    b = chromium()
    b.set_page_load_timeout(30)
    yield b
    b.quit()


@pytest.fixture
def stack(tmp_path):
    s = LegacyStack(tmp_path)
    s.start()
    yield s
    s.stop()


def wait(browser, cond, what: str, timeout: float = 20):
    try:
        return WebDriverWait(browser, timeout).until(cond)
    except Exception as e:  # noqa: BLE001 - name what was awaited, with the page
        raise AssertionError(f"waiting for {what}: at {browser.current_url}\n"
                             f"{browser.page_source[:800]}") from e


def log_in(browser, user: str) -> None:
    """The OP's login form, then its consent page (when it shows one)."""
    field = wait(browser, ec.presence_of_element_located((By.NAME, "login")), "the login form")
    field.send_keys(user)
    browser.find_element(By.NAME, "password").send_keys("any password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda b: "/interaction/" not in b.current_url
         or b.find_elements(By.CSS_SELECTOR, 'input[name="prompt"][value="consent"]'),
         "the consent page or the app")
    if browser.find_elements(By.CSS_SELECTOR, 'input[name="prompt"][value="consent"]'):
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def shown_attributes(browser) -> dict[str, str]:
    wait(browser, ec.presence_of_element_located((By.ID, "attributes")), "the app page")
    return {row.get_attribute("data-name"): row.find_element(By.TAG_NAME, "td").text
            for row in browser.find_elements(By.CSS_SELECTOR, "#attributes tr")}


def assert_clean(rec: harness.Recorded) -> None:
    names = [k for k, _ in rec.cookies()]
    assert not [n for n in names if n.startswith(SESSION_COOKIES)], names
    assert rec.values("authorization") == []
    assert set(k.lower() for k, _ in rec.headers if k.lower().startswith("x-mpass-")) == CONTRACTED


def test_learner_logs_in_consents_and_the_app_shows_the_contracted_attributes(browser, stack):
    browser.get(stack.base + "/grades")
    assert browser.current_url.startswith(stack.op.issuer), browser.current_url
    log_in(browser, "learner")
    shown = shown_attributes(browser)
    assert set(shown) == CONTRACTED, shown
    assert shown["x-mpass-given-name"] == "Aino"
    assert shown["x-mpass-family-name"] == "Sävynen"
    assert urllib.parse.urlparse(browser.current_url).path == "/grades"
    assert "Cookies received: none" in browser.page_source
    for rec in stack.app.received():
        assert_clean(rec)


def test_teacher_of_two_municipalities_sees_only_the_permitted_values(browser, stack):
    browser.get(stack.base + "/")
    log_in(browser, "teacher")
    shown = shown_attributes(browser)
    assert set(shown) == CONTRACTED
    text = shown["x-mpass-role"] + shown["x-mpass-school-info"]
    assert "30076" in text or "00000000002" in text
    assert "04647" not in text and "Äänekosken" not in text
    for rec in stack.app.received():
        assert_clean(rec)


def test_refused_learner_sees_the_html_refusal_page(browser, stack):
    browser.get(stack.base + "/")
    log_in(browser, "outsider")
    wait(browser, lambda b: urllib.parse.urlparse(b.current_url).port == urllib.parse.urlparse(
        stack.base).port and "<html" in b.page_source.lower(), "the refusal page")
    page = browser.page_source
    assert browser.find_elements(By.ID, "attributes") == []
    assert "legacy-app" in page
    assert "Ulla" not in page and "MPASSOID" not in page
    assert stack.app.received() == []


def test_expired_id_token_goes_through_login_again_and_lands_back(browser, tmp_path):
    with LegacyStack(tmp_path, id_token_ttl=2, issuer_changes={"clock_skew_seconds": 0}) as s:
        browser.get(s.base + "/first")
        log_in(browser, "learner")
        assert set(shown_attributes(browser)) == CONTRACTED
        time.sleep(3)  # the ID token expires; the OP's session does not
        browser.get(s.base + "/second")
        # The OP still knows the user: back on the app without a form.
        wait(browser, lambda b: urllib.parse.urlparse(b.current_url).path == "/second"
             and b.find_elements(By.ID, "attributes"), "landing back on /second")
        assert set(shown_attributes(browser)) == CONTRACTED
        pages = [r.path for r in s.app.received() if r.path != "/favicon.ico"]
        assert pages == ["/first", "/second"], pages
        for rec in s.app.received():
            assert_clean(rec)


def test_sign_out_ends_the_session(browser, stack):
    browser.get(stack.base + "/")
    log_in(browser, "learner")
    shown_attributes(browser)
    stack.app.clear()
    browser.find_element(By.ID, "signout").click()
    # The OP's end-session page asks to confirm (oidc-provider's stock form).
    wait(browser, lambda b: b.current_url.startswith(stack.op.issuer)
         or not b.find_elements(By.ID, "attributes"), "leaving the app")
    for button in browser.find_elements(By.CSS_SELECTOR, "button[autofocus], button[type=submit]"):
        button.click()
        break
    browser.get(stack.base + "/again")
    wait(browser, ec.presence_of_element_located((By.NAME, "login")), "the login form again")
    assert [r.path for r in stack.app.received() if r.path != "/favicon.ico"] == []
    names = [c["name"] for c in browser.get_cookies()]
    assert not [n for n in names if n.startswith(("BearerToken", "IdToken", "OauthHMAC"))], names
