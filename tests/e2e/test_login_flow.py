"""The legacy-app login without a browser (issue 12): an HTTP client follows
the redirects through Envoy (the shipped envoy/legacy-app.yaml: oauth2 filter,
mpass-guard with userinfo) and the login OP, fills the OP's login and consent
forms, and lands on the app. The assertions are on what the app received.
"""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

import harness
from legacy import CALLBACK, CONTRACTED, SIGNOUT, LegacyStack

SESSION_COOKIES = ("BearerToken", "IdToken", "RefreshToken", "OauthHMAC", "OauthExpires",
                   "OauthNonce", "CodeVerifier", "MpassGuardLogin")


class LoopbackIsSecure(http.cookiejar.DefaultCookiePolicy):
    """Sends Secure cookies to loopback over HTTP, as browsers do for
    127.0.0.1 and localhost (potentially trustworthy origins)."""

    def return_ok_secure(self, cookie, request):  # noqa: D102
        host = urllib.parse.urlparse(request.get_full_url()).hostname
        return True if host in ("127.0.0.1", "localhost") else super().return_ok_secure(
            cookie, request)


@dataclass
class Page:
    status_code: int
    headers: Any  # email.message.Message: get(), get_all()
    text: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # followed by hand, to see each step
        return None


class Client:
    """A browser-shaped HTTP client: follows redirects itself, keeps cookies,
    asks for HTML, and answers the OP's login and consent forms."""

    def __init__(self) -> None:
        self.cookies = http.cookiejar.CookieJar(policy=LoopbackIsSecure())
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies),
                                                  _NoRedirect())
        self.trail: list[str] = []
        self.prompts: list[str] = []  # the OP's forms answered, in order

    def get(self, url: str, form: dict | None = None,
            accept: str = "text/html,application/xhtml+xml") -> Page:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(url, data, {"accept": accept})
        try:
            with self.opener.open(req, timeout=10) as r:
                return Page(r.status, r.headers, r.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as e:
            return Page(e.code, e.headers, e.read().decode("utf-8", "replace"))

    def open(self, url: str, user: str = "learner") -> Page:
        form = None
        for _ in range(20):
            r = self.get(url, form)
            self.trail.append(f"{r.status_code} {url.split('?')[0]}")
            form = None
            if r.status_code in (301, 302, 303, 307) and r.headers.get("location"):
                url = urllib.parse.urljoin(url, r.headers["location"])
                continue
            prompt = re.search(r'name="prompt" value="([^"]+)"', r.text)
            action = re.search(r'<form[^>]*action="([^"]+)"', r.text)
            xsrf = re.search(r'name="xsrf" value="([^"]+)"', r.text)
            if r.status_code == 200 and xsrf and action and "/session/end" in action.group(1):
                # The OP's sign-out confirmation ("Yes, sign me out").
                url, form = urllib.parse.urljoin(url, action.group(1)), {
                    "xsrf": xsrf.group(1), "logout": "yes"}
                self.prompts.append("logout")
                continue
            if r.status_code == 200 and prompt and action:
                self.prompts.append(prompt.group(1))
                url = urllib.parse.urljoin(url, action.group(1))
                form = {"prompt": prompt.group(1)}
                if prompt.group(1) == "login":
                    form.update(login=user, password="any password")
                continue
            return r
        raise AssertionError(f"no landing after {self.trail}")


@pytest.fixture
def stack(tmp_path):
    s = LegacyStack(tmp_path)
    s.start()
    yield s
    s.stop()


def mpass_headers(rec: harness.Recorded) -> dict[str, str]:
    return {k.lower(): v for k, v in rec.headers if k.lower().startswith("x-mpass-")}


def assert_no_session_material(rec: harness.Recorded, client: Client) -> None:
    """No session cookie, no Authorization, and no cookie value of the jar anywhere."""
    names = [k for k, _ in rec.cookies()]
    assert not [n for n in names if n.startswith(SESSION_COOKIES)], names
    assert rec.values("authorization") == []
    values = [c.value for c in client.cookies if c.value and len(c.value) > 12]
    assert values, "the client holds the session cookies"
    for _, v in rec.headers:
        for secret in values:
            assert secret not in v


def test_learner_lands_on_the_app_with_exactly_the_contracted_attributes_and_no_token(stack):
    client = Client()
    page = client.open(stack.base + "/grades?term=autumn", "learner")
    assert page.status_code == 200, f"{client.trail}\n{page.text[:500]}\n{stack.envoy.log_tail()}"
    assert "Legacy app" in page.text
    assert any(CALLBACK in step for step in client.trail), client.trail
    rec = stack.app.received()[-1]
    assert rec.path == "/grades?term=autumn"
    got = mpass_headers(rec)
    assert set(got) == CONTRACTED, got
    assert got["x-mpass-uid"] == "MPASSOID.391ea8eb34f1e27024ab1342603537bdbd494900"
    # The names came from userinfo only: the ID token carries just sub.
    assert "Aino" in urllib.parse.unquote(got["x-mpass-given-name"])
    assert "legacy" not in " ".join(got).lower()
    assert_no_session_material(rec, client)
    # The whole login reached the app once: the landing request.
    assert len(stack.app.received()) == 1


def decisions(stats: dict[str, str]) -> int:
    return sum(int(v) for k, v in stats.items() if "mpass_guard.decisions." in k)


def test_a_session_costs_one_userinfo_call_not_one_per_request(stack):
    client = Client()
    assert client.open(stack.base + "/", "learner").status_code == 200
    # Counters reach Envoy on the filter's tick: wait for the session's call,
    # then for the five decisions, before comparing.
    first = stack.envoy.wait_stats(lambda s: sum(int(v) for k, v in s.items() if "userinfo_calls" in k) > 0)
    for _ in range(5):
        r = client.open(stack.base + "/page", "learner")
        assert r.status_code == 200
    later = stack.envoy.wait_stats(lambda s: decisions(s) >= decisions(first) + 5)
    calls = [k for k in later if "userinfo_calls" in k]
    assert calls, sorted(k for k in later if "mpass" in k)[:40]
    assert all(later[k] == first.get(k) for k in calls), {k: (first.get(k), later[k]) for k in calls}
    assert len(stack.app.received()) == 6
    for rec in stack.app.received():
        assert set(mpass_headers(rec)) == CONTRACTED
        assert_no_session_material(rec, client)


def test_teacher_of_two_municipalities_sees_only_the_permitted_values(stack):
    client = Client()
    assert client.open(stack.base + "/", "teacher").status_code == 200
    got = mpass_headers(stack.app.received()[-1])
    assert set(got) == CONTRACTED
    released = urllib.parse.unquote(got["x-mpass-role"] + got["x-mpass-school-info"])
    assert "1.2.246.562.10.00000000001" in released or "00000000002" in released
    assert "04647" not in released and "00000000004" not in released
    assert "00000000005" not in released and "Äänekoski" not in released


def test_refused_learner_gets_the_html_refusal_page_and_the_app_nothing(stack):
    client = Client()
    page = client.open(stack.base + "/", "outsider")
    assert page.status_code == 403, f"{client.trail}\n{page.text[:300]}"
    assert page.headers["content-type"].startswith("text/html")
    assert "Ulla" not in page.text and "MPASSOID" not in page.text
    assert stack.app.received() == []


def test_an_api_call_without_a_session_is_not_sent_to_login_by_mpass_guard(stack):
    # No session: the oauth2 filter itself answers (it owns the login); with a
    # session but no ID token cookie mpass-guard keeps JSON for non-browsers.
    api = Client()
    r = api.get(stack.base + "/api/grades", accept="application/json")
    assert r.status_code in (302, 401), r.status_code
    assert stack.app.received() == []


def test_sign_out_clears_the_session_ends_it_at_the_op_and_the_next_visit_logs_in_again(stack):
    client = Client()
    assert client.open(stack.base + "/", "learner").status_code == 200
    r = client.get(stack.base + SIGNOUT)
    assert r.status_code == 302, r.status_code
    cleared = " ".join(r.headers.get_all("set-cookie") or [])
    for name in ("BearerToken", "IdToken", "OauthHMAC", "OauthExpires"):
        assert f"{name}=deleted" in cleared, cleared
    # RP-initiated logout at the OP (end_session_endpoint), back to the app.
    assert r.headers["location"].startswith(stack.op.issuer + "/session/end?")
    stack.app.clear()
    client.prompts.clear()
    page = client.open(r.headers["location"], "learner")
    assert page.status_code == 200, client.trail
    # The OP's session ended with the gateway's: the login form came again.
    assert client.prompts[:2] == ["logout", "login"], (client.prompts, client.trail)
    assert [rec.path for rec in stack.app.received()] == ["/"]


def test_an_expired_id_token_sends_the_client_back_through_login_and_it_lands_back(tmp_path):
    with LegacyStack(tmp_path, id_token_ttl=2, issuer_changes={"clock_skew_seconds": 0}) as s:
        client = Client()
        assert client.open(s.base + "/first", "learner").status_code == 200
        time.sleep(3)  # the ID token expires; the oauth2 session does not
        client.trail.clear()
        page = client.open(s.base + "/second", "learner")
        assert page.status_code == 200, f"{client.trail}\n{page.text[:300]}\n{s.envoy.log_tail()}"
        assert any("/auth" in step for step in client.trail), client.trail
        rec = s.app.received()[-1]
        assert rec.path == "/second"
        assert set(mpass_headers(rec)) == CONTRACTED
        assert_no_session_material(rec, client)


def test_a_stale_id_token_cookie_is_sent_back_to_login_by_mpass_guard_with_the_cookies_cleared(
        tmp_path):
    """The oauth2 session outlives the ID token (a browser that kept the cookie,
    a clock off): the oauth2 filter lets the request through, mpass-guard
    answers a navigation with a redirect to the same URL that clears every
    session cookie, and an API call with JSON 401."""
    with LegacyStack(tmp_path, id_token_ttl=2, issuer_changes={"clock_skew_seconds": 0}) as s:
        client = Client()
        assert client.open(s.base + "/first", "learner").status_code == 200
        kept = "; ".join(f"{c.name}={c.value}" for c in client.cookies
                         if c.domain == "127.0.0.1")
        time.sleep(3)  # the ID token expires; the oauth2 session does not
        s.app.clear()
        host = ("Host", f"127.0.0.1:{s.envoy.port}")
        r = s.envoy.send("/grades?term=1", [host, ("Cookie", kept),
                                            ("Accept", "text/html,application/xhtml+xml")])
        assert r.status == 302, f"{r.status} {r.body[:300]!r}"
        assert r.header("location") in ("/grades?term=1", f"{s.base}/grades?term=1"), r.header("location")
        cleared = [v for k, v in r.headers if k.lower() == "set-cookie"]
        for name in ("BearerToken", "IdToken", "OauthHMAC", "OauthExpires"):
            assert any(v.startswith(f"{name}=") and ("Max-Age=0" in v or "1970" in v)
                       for v in cleared), cleared
        api = s.envoy.send("/api/grades", [host, ("Cookie", kept), ("Accept", "application/json")])
        assert api.status == 401
        assert api.json()["reason"] == "expired"
        assert s.app.received() == []
        # Following the redirect with the cleared cookies: through the OP and back.
        page = client.open(s.base + "/grades?term=1", "learner")
        assert page.status_code == 200
        assert s.app.received()[-1].path == "/grades?term=1"
