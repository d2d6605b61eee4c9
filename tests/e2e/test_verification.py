"""Token verification through the real Envoy, judged by what the UPSTREAM received.

Tokens are minted at test time with the CLI from the test-only keys in
tests/keys. Protected paths: /shop/ (provider studeo, by path prefix) and
/library/ (provider library, by route name). Every other path passes through.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import pytest

import harness
from conftest import (AUD_LIBRARY, AUD_STUDEO, ISS_ED, ISS_ES, ISS_MAIN, ISS_PS, ISS_RS_ONLY,
                      STUDEO_SECRET, STUDEO_SECRET_ENV, plugin_config)
from harness import Envoy, key_path, mint, public_pem, unsigned_token, with_payload

SHOP = "/shop/basket"

# Every test that uses `guard` runs twice: with the project's RSA, ES256 and
# EdDSA verifiers (`rsa_fast`, `p256_fast`, `ed25519_fast`, the defaults) and
# with the three kill switches, `rsa_verifier`, `ec_verifier` and
# `eddsa_verifier: "ring"`.
VERIFIERS = ["fast", "ring"]


@pytest.fixture(scope="module", params=VERIFIERS)
def guard(request, upstream, tmp_path_factory):
    """Envoy with mpass-guard in front of the recording upstream, per verifier choice."""
    harness.require_envoy()
    harness.require_wasm()
    harness.require_cli()
    config = plugin_config()
    if request.param != "fast":
        config["rsa_verifier"] = request.param
        config["eddsa_verifier"] = request.param
        config["ec_verifier"] = request.param
    envoy = Envoy(upstream.port, config, env={STUDEO_SECRET_ENV: STUDEO_SECRET},
                  workdir=tmp_path_factory.mktemp(f"guard-{request.param}"))
    envoy.start()
    yield envoy
    envoy.stop()


def test_the_envoy_under_test_runs_the_verifiers_it_was_given(guard):
    rsa = guard.plugin_config.get("rsa_verifier", "fast")
    ec = guard.plugin_config.get("ec_verifier", "fast")
    eddsa = guard.plugin_config.get("eddsa_verifier", "fast")
    want = f"rsa_verifier {rsa}, ec_verifier {ec}, eddsa_verifier {eddsa}"
    assert want in guard.log(), guard.log_tail()
LIBRARY = "/library/loans"
OPEN = "/public/info"


def claims(iss: str = ISS_MAIN, aud: str = AUD_STUDEO, **extra) -> dict:
    return {"iss": iss, "aud": aud, "sub": "pairwise-subject-1",
            "urn:mpass.id:uid": "MPASSOID.e2e-user", **extra}


def rs256(**kw) -> str:
    c = kw.pop("claims", None) or claims()
    return mint(key_path("rsa-a.pem"), "RS256", c, kid=kw.pop("kid", "rsa-a"), **kw)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def assert_no_token_reached(rec: harness.Recorded, token: str) -> None:
    assert rec.values("authorization") == [], "the Authorization header reached the upstream"
    signature = token.rsplit(".", 1)[1]
    assert token not in rec.path and signature not in rec.path
    for name, value in rec.headers:
        assert token not in value and signature not in value, f"the token reached the upstream in {name}"


def assert_rejected(guard, upstream, resp, status: int, reason: str) -> None:
    assert resp.status == status, f"{resp.status} {resp.body!r}"
    body = resp.json()
    if status == 401:
        assert body == {"error": "invalid_token", "reason": reason}
        challenge = resp.header("www-authenticate") or ""
        assert challenge.startswith('Bearer realm="mpass-guard"'), challenge
        assert 'error="invalid_token"' in challenge
        assert f'error_description="{reason}"' in challenge
    else:
        assert body == {"error": "forbidden", "reason": reason}
    assert upstream.received() == [], "a rejected request reached the upstream"


# --------------------------------------------------------------------------
# Valid tokens pass, and the upstream never sees the token
# --------------------------------------------------------------------------

VALID = {
    "RS256": (lambda: mint(key_path("rsa-a.pem"), "RS256", claims(ISS_MAIN), kid="rsa-a")),
    "PS256": (lambda: mint(key_path("rsa-b.pem"), "PS256", claims(ISS_PS), kid="rsa-b")),
    "ES256": (lambda: mint(key_path("ec-p256.pem"), "ES256", claims(ISS_ES), kid="ec-p256")),
    "EdDSA": (lambda: mint(key_path("ed25519.pem"), "EdDSA", claims(ISS_ED), kid="ed25519")),
    "HS256": (lambda: mint(f"hmac:{STUDEO_SECRET}", "HS256", claims(ISS_MAIN))),
}


@pytest.mark.parametrize("alg", list(VALID))
def test_a_valid_token_is_let_through_and_the_upstream_never_sees_it(guard, upstream, alg):
    token = VALID[alg]()
    resp = guard.send(SHOP, bearer(token))
    assert resp.status == 200, f"{alg}: {resp.status} {resp.body!r}\n{guard.log_tail()}"
    rec = upstream.only()
    assert rec.path == SHOP
    assert_no_token_reached(rec, token)


def test_a_valid_token_on_a_route_matched_by_name_is_let_through(guard, upstream):
    token = rs256(claims=claims(aud=AUD_LIBRARY))
    assert guard.send(LIBRARY, bearer(token)).status == 200
    assert_no_token_reached(upstream.only(), token)


def test_a_route_matched_by_name_without_a_token_is_refused(guard, upstream):
    resp = guard.send(LIBRARY)
    assert resp.status == 401
    assert upstream.received() == []


def test_a_request_without_a_token_is_refused_with_a_bearer_challenge(guard, upstream):
    resp = guard.send(SHOP)
    assert resp.status == 401
    assert resp.header("www-authenticate") == 'Bearer realm="mpass-guard"'
    assert upstream.received() == []


def test_a_request_no_provider_matches_passes_through_untouched(guard, upstream):
    resp = guard.send(OPEN + "?a=1&b=2", [("Cookie", "a=1; b=2"), ("X-App", "kept")])
    assert resp.status == 200
    rec = upstream.only()
    assert rec.path == OPEN + "?a=1&b=2"
    assert rec.cookies() == [("a", "1"), ("b", "2")]
    assert rec.values("x-app") == ["kept"]


# --------------------------------------------------------------------------
# Invalid tokens: 401 with the reason, 403 for the wrong audience
# --------------------------------------------------------------------------


def test_an_expired_token_is_refused_as_expired(guard, upstream):
    token = rs256(exp_in=-3600, iat_offset=-7200)
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "expired")


def test_a_token_expired_within_the_clock_skew_is_still_accepted(guard, upstream):
    token = rs256(exp_in=-10, iat_offset=-600)
    assert guard.send(SHOP, bearer(token)).status == 200


def test_a_token_not_yet_valid_is_refused_as_not_yet_valid(guard, upstream):
    token = rs256(set={"nbf": int(time.time()) + 3600})
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "not_yet_valid")


def test_a_token_issued_in_the_future_is_refused(guard, upstream):
    token = rs256(iat_offset=3600, exp_in=3700)
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "issued_in_future")


def test_a_token_living_longer_than_the_maximum_lifetime_is_refused(guard, upstream):
    token = rs256(exp_in=2 * 86400)
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "lifetime_too_long")


def test_a_token_without_expiration_is_refused_when_expiration_is_required(guard, upstream):
    token = rs256(no_exp=True)
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "missing_expiration")


def test_a_token_from_an_unknown_issuer_is_refused(guard, upstream):
    token = rs256(claims=claims(iss="https://mpass-proxy.evil.example"))
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "unknown_issuer")


def test_a_token_for_another_audience_is_forbidden(guard, upstream):
    token = rs256(claims=claims(aud=AUD_LIBRARY))
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 403, "audience_mismatch")


def test_a_token_with_a_tampered_payload_is_refused_as_bad_signature(guard, upstream):
    token = with_payload(rs256(), sub="someone-else")
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "bad_signature")


def test_an_es256_token_with_a_tampered_payload_or_signature_is_refused_as_bad_signature(
        guard, upstream):
    token = VALID["ES256"]()
    h, p, s = token.split(".")
    sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    sig[40] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(sig)).rstrip(b"=").decode()
    for bad in [with_payload(token, sub="someone-else"), f"{h}.{p}.{flipped}"]:
        assert_rejected(guard, upstream, guard.send(SHOP, bearer(bad)), 401, "bad_signature")


def test_an_eddsa_token_with_a_tampered_payload_or_signature_is_refused_as_bad_signature(
        guard, upstream):
    token = VALID["EdDSA"]()
    h, p, s = token.split(".")
    sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    sig[40] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(sig)).rstrip(b"=").decode()
    for bad in [with_payload(token, sub="someone-else"), f"{h}.{p}.{flipped}"]:
        assert_rejected(guard, upstream, guard.send(SHOP, bearer(bad)), 401, "bad_signature")


def test_an_eddsa_token_signed_by_another_key_under_its_kid_is_refused_as_bad_signature(
        guard, upstream):
    token = mint(key_path("ed25519-b.pem"), "EdDSA", claims(ISS_ED), kid="ed25519")
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "bad_signature")


def test_a_token_signed_by_another_key_under_a_known_kid_is_refused_as_bad_signature(guard, upstream):
    token = mint(key_path("rsa-b.pem"), "RS256", claims(), kid="rsa-a")
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "bad_signature")


def test_an_unsigned_alg_none_token_is_refused(guard, upstream):
    token = unsigned_token(claims())
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "unsupported_algorithm")


def test_hs256_signed_with_the_rsa_public_key_is_refused_where_only_rs256_is_allowed(guard, upstream):
    # Key confusion: the attacker "signs" with the public key as HMAC secret.
    token = mint("hmac:" + public_pem(key_path("rsa-a.pem")), "HS256", claims(ISS_RS_ONLY), kid="rsa-a")
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "algorithm_not_allowed")


def test_hs256_signed_with_the_rsa_public_key_fails_against_the_provider_secret(guard, upstream):
    # Where HS256 is allowed, it is checked against the provider's client
    # secret only, never against a JWKS key.
    token = mint("hmac:" + public_pem(key_path("rsa-a.pem")), "HS256", claims(ISS_MAIN), kid="rsa-a")
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "bad_signature")


def test_an_allowed_algorithm_of_another_issuer_is_not_allowed_here(guard, upstream):
    token = mint(key_path("ec-p256.pem"), "ES256", claims(ISS_MAIN), kid="ec-p256")
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "algorithm_not_allowed")


def test_a_token_with_an_unknown_kid_is_refused_as_unknown_key(guard, upstream):
    token = rs256(kid="no-such-key")
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "unknown_key")


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "e30.e30", "....", "eyJhbGciOi.%%%.xx"])
def test_a_malformed_token_is_refused_as_malformed(guard, upstream, garbage):
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(garbage)), 401, "malformed")


def test_an_oversized_token_is_refused_as_too_large(guard, upstream):
    token = rs256(set={"padding": "x" * 20000})
    assert len(token) > 16384
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(token)), 401, "too_large")


def test_two_authorization_headers_are_refused_as_ambiguous(guard, upstream):
    a, b = rs256(), rs256(claims=claims(sub="another-subject"))
    resp = guard.send(SHOP, bearer(a) + bearer(b))
    assert_rejected(guard, upstream, resp, 401, "ambiguous_token")


def test_the_same_token_twice_is_still_ambiguous(guard, upstream):
    a = rs256()
    assert_rejected(guard, upstream, guard.send(SHOP, bearer(a) + bearer(a)), 401, "ambiguous_token")


def test_a_token_in_the_header_and_another_in_a_cookie_are_refused_as_ambiguous(guard, upstream):
    a, b = rs256(), rs256(claims=claims(sub="another-subject"))
    resp = guard.send(SHOP, bearer(a) + [("Cookie", f"id_token={b}")])
    assert_rejected(guard, upstream, resp, 401, "ambiguous_token")


def test_a_token_in_the_header_and_another_in_the_query_are_refused_as_ambiguous(guard, upstream):
    a, b = rs256(), rs256(claims=claims(sub="another-subject"))
    resp = guard.send(f"{SHOP}?id_token={b}", bearer(a))
    assert_rejected(guard, upstream, resp, 401, "ambiguous_token")


# --------------------------------------------------------------------------
# The token is removed from exactly where it came from
# --------------------------------------------------------------------------


def test_a_token_in_a_cookie_is_removed_and_the_other_cookies_are_kept(guard, upstream):
    token = rs256()
    resp = guard.send(SHOP, [("Cookie", f"theme=dark; id_token={token}; lang=fi")])
    assert resp.status == 200, resp.body
    rec = upstream.only()
    assert_no_token_reached(rec, token)
    assert rec.cookies() == [("theme", "dark"), ("lang", "fi")]


def test_a_cookie_only_token_leaves_no_empty_cookie_header(guard, upstream):
    token = rs256()
    assert guard.send(SHOP, [("Cookie", f"id_token={token}")]).status == 200
    rec = upstream.only()
    assert_no_token_reached(rec, token)
    assert rec.cookies() == []


def test_a_token_in_the_query_is_removed_and_the_rest_of_the_query_is_kept(guard, upstream):
    token = rs256()
    resp = guard.send(f"{SHOP}?page=2&id_token={token}&sort=price%20asc")
    assert resp.status == 200, resp.body
    rec = upstream.only()
    assert_no_token_reached(rec, token)
    assert rec.path == f"{SHOP}?page=2&sort=price%20asc"


def test_a_query_holding_only_the_token_becomes_no_query(guard, upstream):
    token = rs256()
    assert guard.send(f"{SHOP}?id_token={token}").status == 200
    assert upstream.only().path == SHOP


def test_a_look_alike_parameter_is_not_taken_for_the_token(guard, upstream):
    token = rs256()
    resp = guard.send(f"{SHOP}?x_id_token=keep&id_token={token}")
    assert resp.status == 200
    assert upstream.only().path == f"{SHOP}?x_id_token=keep"


# --------------------------------------------------------------------------
# Spoofed identity headers never reach the upstream
# --------------------------------------------------------------------------

SPOOF = "spoofed-by-client"
SPOOFED_HEADERS = [
    ("x-mpass-uid", SPOOF),
    ("X-MPASS-ROLE", SPOOF),
    ("X-Mpass-Email", SPOOF),
    ("X_Mpass_Uid", SPOOF),
    ("x_mpass_learner_id", SPOOF),
    ("X-Forwarded-User", SPOOF),
    ("X-UserInfo", SPOOF),
    ("x-id-token", SPOOF),
    ("X-Auth-Request-Email", SPOOF),
    ("x-auth-request-user", SPOOF),
    ("X_Userinfo", SPOOF),
]


def assert_no_spoof(rec: harness.Recorded, allow_prefix: bool) -> None:
    for name, value in rec.headers:
        assert SPOOF not in value, f"spoofed header {name} reached the upstream"
        norm = name.lower().replace("_", "-")
        if norm.startswith("x-mpass-"):
            assert allow_prefix and "_" not in name, f"{name} reached the upstream"
        assert norm not in {"x-forwarded-user", "x-userinfo", "x-id-token"}, name
        assert not norm.startswith("x-auth-request-"), name
    assert rec.values("x-app") == ["kept"], "an unrelated header was lost"


def test_spoofed_identity_headers_never_reach_an_unprotected_route(guard, upstream):
    assert guard.send(OPEN, SPOOFED_HEADERS + [("X-App", "kept")]).status == 200
    assert_no_spoof(upstream.only(), allow_prefix=False)


def test_spoofed_identity_headers_never_reach_a_protected_route_with_a_valid_token(guard, upstream):
    resp = guard.send(SHOP, bearer(rs256()) + SPOOFED_HEADERS + [("X-App", "kept")])
    assert resp.status == 200, resp.body
    # The filter may set its own x-mpass-* headers here, never the client's.
    assert_no_spoof(upstream.only(), allow_prefix=True)


def test_spoofed_identity_headers_never_reach_a_route_matched_by_name(guard, upstream):
    token = rs256(claims=claims(aud=AUD_LIBRARY))
    assert guard.send(LIBRARY, bearer(token) + SPOOFED_HEADERS + [("X-App", "kept")]).status == 200
    assert_no_spoof(upstream.only(), allow_prefix=True)


# --------------------------------------------------------------------------
# Bad configuration is refused at load, naming the field
# --------------------------------------------------------------------------


def _start_refused(upstream, config, tmp_path) -> Envoy:
    """Starts Envoy with ``config`` and asserts it never serves the upstream."""
    envoy = Envoy(upstream.port, config, env={STUDEO_SECRET_ENV: STUDEO_SECRET}, workdir=tmp_path)
    envoy.launch()
    try:
        try:
            envoy.wait_ready(timeout=20)
        except harness.EnvoyFailed:
            return envoy  # Envoy refused to start: the expected outcome
        # If it did come up, the fail-closed filter must refuse everything.
        for path in (OPEN, SHOP):
            resp = envoy.send(path)
            assert resp.status >= 500, f"{path} answered {resp.status} with a bad plugin config"
        assert upstream.received() == [], "a request reached the upstream with a bad plugin config"
        return envoy
    finally:
        envoy.stop()


def test_a_plugin_config_with_an_unknown_field_is_refused_naming_the_field(upstream, tmp_path):
    config = plugin_config()
    config["issuers"][0]["jwks_url"] = "https://example.invalid/keys"
    envoy = _start_refused(upstream, config, tmp_path)
    log = envoy.log()
    assert "jwks_url" in log and "issuers[0]" in log, envoy.log_tail()


def test_a_plugin_config_with_a_bad_issuer_is_refused_naming_the_field(upstream, tmp_path):
    config = plugin_config()
    config["issuers"][1]["issuer"] = "not a url"
    envoy = _start_refused(upstream, config, tmp_path)
    assert "issuers[1].issuer" in envoy.log(), envoy.log_tail()


def test_a_plugin_config_that_is_not_json_is_refused(upstream, tmp_path):
    _start_refused(upstream, '{"issuers": [', tmp_path)


def test_the_cli_check_names_the_same_field_as_envoy(tmp_path):
    config = plugin_config()
    config["issuers"][0]["jwks_url"] = "https://example.invalid/keys"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    r = harness.check(path)
    assert r.returncode == 1
    assert "issuers[0]" in r.stdout + r.stderr and "jwks_url" in r.stdout + r.stderr


def test_the_cli_check_accepts_the_test_configuration(tmp_path):
    path = tmp_path / "good.json"
    path.write_text(json.dumps(plugin_config()))
    r = harness.check(path)
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------
# Shipped configurations
# --------------------------------------------------------------------------

ENVOY_CONFIGS = sorted(p for p in harness.ENVOY_DIR.glob("*.yaml")
                       if re.search(r"^static_resources:", p.read_text(), re.M))


def test_there_are_envoy_configs_to_validate():
    assert harness.ENVOY_DIR / "envoy.yaml" in ENVOY_CONFIGS


@pytest.mark.parametrize("config", ENVOY_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_envoy_config_passes_envoy_validate(config: Path):
    harness.require_wasm()
    r = harness.envoy_validate(config, env={STUDEO_SECRET_ENV: "validate-only-secret"})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


def test_the_istio_wasmplugin_fails_closed():
    text = (harness.ENVOY_DIR / "istio-wasmplugin.yaml").read_text()
    assert re.search(r"^\s*failStrategy:\s*FAIL_CLOSE\s*$", text, re.M)
    assert re.search(r"^kind:\s*WasmPlugin\s*$", text, re.M)


def test_the_istio_plugin_config_is_a_valid_mpass_guard_configuration(tmp_path):
    """The same JSON works as an Istio WasmPlugin pluginConfig: the YAML's
    pluginConfig, as JSON, passes the filter's own configuration check."""
    import yaml

    docs = list(yaml.safe_load_all((harness.ENVOY_DIR / "istio-wasmplugin.yaml").read_text()))
    plugin = next(d for d in docs if d and d.get("kind") == "WasmPlugin")
    assert plugin["spec"]["failStrategy"] == "FAIL_CLOSE"
    path = tmp_path / "istio-plugin-config.json"
    path.write_text(json.dumps(plugin["spec"]["pluginConfig"]))
    r = harness.check(path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok:" in r.stdout


def test_the_plugin_config_in_envoy_yaml_is_a_valid_mpass_guard_configuration(tmp_path):
    """The example's StringValue, read back out of envoy.yaml, passes check."""
    import yaml

    bootstrap = yaml.safe_load((harness.ENVOY_DIR / "envoy.yaml").read_text())
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    wasm = next(f for f in hcm["typed_config"]["http_filters"]
                if f["name"] == "envoy.filters.http.wasm")
    value = wasm["typed_config"]["config"]["configuration"]["value"]
    path = tmp_path / "envoy-plugin-config.json"
    path.write_text(value)
    r = harness.check(path)
    assert r.returncode == 0, r.stdout + r.stderr
