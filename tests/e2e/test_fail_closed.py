"""Fail closed in the real Envoy: a configuration the filter refuses, and a
Wasm VM that traps, never let a request reach the upstream unverified.

The trap comes from a test-only build of the filter (cargo feature
``test-trap``, off by default, built by ``make wasm-test-trap`` into
``target/test-trap/``): it executes the Wasm ``unreachable`` instruction when
a request carries ``x-mpass-guard-test-trap``, as a bug would.

What Envoy 1.40 does after a trap in ``proxy_on_request_headers`` (measured
here, one worker so that one VM serves every request):

- ``failure_policy: FAIL_CLOSED`` (and the field unset, whose default is
  FAIL_CLOSED): the trapping request and every later request on that VM get
  503 with an empty body, on every route, until the configuration changes
  or Envoy restarts. Nothing reaches the upstream. Safe, but an outage.
- ``failure_policy: FAIL_RELOAD``: 503 while the reload backoff runs
  (``reload_config.backoff``, default base interval 1 s), then the next
  request creates a fresh VM (stat ``wasm.<plugin>.vm_reload_success``) and
  the filter decides again as before. Safe, and it heals.
- ``failure_policy: FAIL_OPEN``: after the trap the filter is skipped:
  spoofed identity headers and tokenless requests reach the upstream. Never
  use it with mpass-guard; the test below shows why.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import harness
from conftest import AUD_STUDEO, ISS_MAIN, STUDEO_SECRET, STUDEO_SECRET_ENV, plugin_config
from harness import Envoy, key_path, mint

TRAP_WASM = harness.REPO / "target" / "test-trap" / "wasm32-wasip1" / "release" / "mpass_guard.wasm"
TRAP = ("x-mpass-guard-test-trap", "1")
SHOP = "/shop/basket"
OPEN = "/public/info"
SPOOF = ("x-mpass-uid", "spoofed-by-client")


def require_trap_wasm() -> None:
    harness.require_file(TRAP_WASM, "the test-trap Wasm build", "run `make wasm-test-trap`")


class TrapEnvoy(Envoy):
    """Envoy running the test-trap build under a chosen failure policy."""

    def __init__(self, *args: Any, failure_policy: str | None = "FAIL_CLOSED",
                 reload_backoff: dict | None = None, **kw: Any) -> None:
        super().__init__(*args, concurrency=1, **kw)
        self.failure_policy = failure_policy
        self.reload_backoff = reload_backoff

    def render(self) -> dict:
        f = harness.wasm_filter(self.plugin_config, self.env, wasm=TRAP_WASM)
        config = f["typed_config"]["config"]
        if self.failure_policy is None:
            config.pop("failure_policy")
        else:
            config["failure_policy"] = self.failure_policy
        if self.reload_backoff is not None:
            config["reload_config"] = {"backoff": self.reload_backoff}
        return harness.bootstrap(self.upstream_port, self.port, self.admin_port, [f], self.routes)


def valid_token() -> str:
    return mint(key_path("rsa-a.pem"), "RS256",
                {"iss": ISS_MAIN, "aud": AUD_STUDEO, "sub": "pairwise-subject-1"}, kid="rsa-a")


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def probes(token: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Requests that must never reach the upstream unverified after a trap."""
    return [(SHOP, bearer(token)), (SHOP, []), (OPEN, [SPOOF]), (SHOP, bearer(token) + [SPOOF])]


@pytest.fixture
def trap_envoy(upstream, tmp_path, request):
    require_trap_wasm()
    envoy = TrapEnvoy(upstream.port, plugin_config(), env={STUDEO_SECRET_ENV: STUDEO_SECRET},
                      workdir=tmp_path, **getattr(request, "param", {}))
    envoy.start()
    yield envoy
    envoy.stop()


def trap_it(envoy: Envoy, upstream, token: str) -> None:
    """The filter works, then the trap request is answered 503 and goes nowhere."""
    assert envoy.send(SHOP, bearer(token)).status == 200, envoy.log_tail()
    upstream.clear()
    resp = envoy.send(SHOP, bearer(token) + [TRAP])
    assert resp.status == 503, resp.status
    assert upstream.received() == [], "the trapping request reached the upstream"
    assert "Uncaught RuntimeError: unreachable" in envoy.log(), envoy.log_tail()


def test_the_trap_feature_is_off_by_default(guard, upstream):
    """The shipped build ignores the trap header: it is an identity header
    like any other ``x-mpass-*`` name, stripped, and the request decided
    normally. Client: 200. Upstream: the request, without the header."""
    token = valid_token()
    resp = guard.send(SHOP, bearer(token) + [TRAP])
    assert resp.status == 200, resp.body
    assert upstream.only().values(TRAP[0]) == []


@pytest.mark.parametrize("trap_envoy", [{"failure_policy": "FAIL_CLOSED"}, {"failure_policy": None}],
                         ids=["FAIL_CLOSED", "unset-defaults-to-FAIL_CLOSED"], indirect=True)
def test_after_a_trap_under_fail_closed_nothing_reaches_the_upstream(trap_envoy, upstream):
    """A VM trap under FAIL_CLOSED (or no policy: the default is the same).
    Client: 503 for the trapping request and for every request after it,
    valid token or not, protected route or not. Upstream: nothing."""
    token = valid_token()
    trap_it(trap_envoy, upstream, token)
    for _ in range(3):
        for path, headers in probes(token):
            resp = trap_envoy.send(path, headers)
            assert resp.status == 503, f"{path}: {resp.status}"
        time.sleep(0.5)
    assert upstream.received() == [], "a request reached the upstream after the VM trapped"
    assert trap_envoy.serving()


@pytest.mark.parametrize("trap_envoy", [
    {"failure_policy": "FAIL_RELOAD", "reload_backoff": {"base_interval": "0.2s", "max_interval": "0.4s"}},
], ids=["FAIL_RELOAD"], indirect=True)
def test_after_a_trap_under_fail_reload_a_fresh_vm_decides_again(trap_envoy, upstream):
    """A VM trap under FAIL_RELOAD with a short reload backoff.
    Client: 503 until the backoff ends, then the filter's own answers again
    (200 for a valid token, 401 without one). Upstream: nothing until the
    new VM runs; then only verified requests, never a spoofed header."""
    token = valid_token()
    trap_it(trap_envoy, upstream, token)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        resp = trap_envoy.send(SHOP)
        if resp.status != 503:
            break
        assert upstream.received() == []
        time.sleep(0.1)
    assert resp.status == 401 and resp.json() == {"error": "missing_token"}, resp.status
    assert upstream.received() == []
    assert trap_envoy.send(SHOP, bearer(token) + [SPOOF]).status == 200
    rec = upstream.only()
    assert rec.values("authorization") == [] and rec.values("x-mpass-uid") == []
    assert int(trap_envoy.stats().get("wasm.mpass-guard.vm_reload_success", "0")) >= 1
    # A second trap is survived the same way.
    trap_it(trap_envoy, upstream, token)


@pytest.mark.parametrize("trap_envoy", [{"failure_policy": "FAIL_OPEN"}], ids=["FAIL_OPEN"],
                         indirect=True)
def test_fail_open_lets_unverified_requests_through_after_a_trap(trap_envoy, upstream):
    """Why the configuration must never say FAIL_OPEN: after one trap the
    filter is skipped. Client: 200 without a token. Upstream: the request,
    with the client's spoofed identity header. (This documents Envoy's
    behaviour; the shipped configurations use FAIL_CLOSED.)"""
    token = valid_token()
    trap_it(trap_envoy, upstream, token)
    upstream.clear()
    resp = trap_envoy.send(SHOP, [SPOOF])
    assert resp.status == 200
    assert upstream.only().values("x-mpass-uid") == ["spoofed-by-client"]


def test_the_shipped_configurations_fail_closed():
    """Every shipped Envoy configuration names FAIL_CLOSED (or FAIL_RELOAD),
    never FAIL_OPEN; the Istio WasmPlugin says FAIL_CLOSE."""
    for path in harness.ENVOY_DIR.glob("*.yaml"):
        text = path.read_text()
        assert "FAIL_OPEN" not in text, path.name
        if "envoy.filters.http.wasm" in text:
            assert "failure_policy: FAIL_CLOSED" in text or "failure_policy: FAIL_RELOAD" in text, path.name


# --------------------------------------------------------------------------
# Configuration refused at load
# --------------------------------------------------------------------------

def _bad_configs() -> dict[str, Any]:
    missing_secret = plugin_config()
    missing_secret["providers"]["studeo"]["hs_secret_env"] = "NO_SUCH_VARIABLE"
    bad_jwks = plugin_config()
    bad_jwks["issuers"][0]["local_jwks"]["inline_string"] = '{"keys": "not a list"}'
    no_provider = plugin_config()
    no_provider["providers"] = {}
    none_alg = plugin_config()
    none_alg["issuers"][0]["allowed_algorithms"] = ["none"]
    return {
        "empty": "",
        "json-array": "[]",
        "truncated": '{"issuers": [',
        "missing-secret-env": missing_secret,
        "bad-inline-jwks": bad_jwks,
        "no-provider": no_provider,
        "alg-none-allowed": none_alg,
    }


@pytest.mark.parametrize("name", list(_bad_configs()))
def test_a_configuration_refused_at_load_lets_no_request_through(upstream, tmp_path, name):
    """Attack surface: a broken or weakened plugin configuration.
    on_configure refuses it; Envoy 1.40 then refuses the listener (it exits,
    as the filter is in the static bootstrap). Client: no connection, or 5xx
    if Envoy came up anyway. Upstream: nothing, for any route."""
    envoy = Envoy(upstream.port, _bad_configs()[name], env={STUDEO_SECRET_ENV: STUDEO_SECRET},
                  workdir=tmp_path)
    envoy.launch()
    try:
        try:
            envoy.wait_ready(timeout=20)
            came_up = True
        except harness.EnvoyFailed:
            came_up = False
        if came_up:
            for path, headers in probes(valid_token()):
                assert envoy.send(path, headers).status >= 500, path
        assert upstream.received() == [], "a request reached the upstream with a refused config"
        if name != "empty":
            assert "configuration rejected" in envoy.log(), envoy.log_tail()
    finally:
        envoy.stop()
