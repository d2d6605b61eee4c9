"""Attack corpus: hostile tokens and hostile requests through the real Envoy.

Every case says in its docstring what it attacks, what the client must see
and what the upstream must see. A refused request must never reach the
upstream; a request let through is judged by the upstream's record: no token,
no client-supplied identity header, nothing outside the provider's contract.

Cases that test_verification.py already covers (the plain ``alg: none``, the
PEM key-confusion token, two Authorization headers, header plus cookie or
query with two different tokens, the basic spoofed-header list) are extended
here, not repeated.

Raw tokens (duplicate JSON members, invalid UTF-8, numbers the CLI would
normalise) are signed here: RS256 with ``openssl dgst -sha256 -sign`` (RSA
PKCS#1 v1.5 over SHA-256 is exactly RS256) and HS256 with Python's ``hmac``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import subprocess
import time
from typing import Any

import pytest

import harness
from conftest import (AUD_LIBRARY, AUD_STUDEO, ISS_ES, ISS_MAIN, ISS_PS, ISS_RS_ONLY,
                      STUDEO_SECRET, STUDEO_SECRET_ENV, plugin_config)
from harness import Envoy, b64url, b64url_decode, jwks, key_path, mint, public_pem

SHOP = "/shop/basket"
LIBRARY = "/library/loans"
CONTRACT = "/contract/grades"
OPEN = "/public/info"

# An issuer whose allow-list is wider than its only key: the key (rsa-a)
# declares RS256, the issuer allows RS256 and PS256.
ISS_WIDE = "https://wide.mpass-guard.test"
AUD_CONTRACT = "contract-app"
ORG = "1.2.246.562.10.00000000001"
UID = "MPASSOID.attack-user"
GIVEN = "Pekka"
# Every header the filter may write for the contracted provider.
CONTRACT_HEADERS = {"x-mpass-uid", "x-shop-first-name", "x-mpass-payload"}


def attack_config() -> dict[str, Any]:
    """The default test configuration plus a wide issuer and a contracted provider."""
    config = plugin_config()
    config["issuers"].append({
        "issuer": ISS_WIDE,
        "local_jwks": {"inline_string": jwks((key_path("rsa-a.pem"), "rsa-a", "RS256"))},
        "allowed_algorithms": ["RS256", "PS256"],
    })
    config["providers"]["contracted"] = {
        "audiences": [AUD_CONTRACT],
        "match": {"path_prefixes": ["/contract/"]},
        "contract": {
            "organisations": ["*"],
            "release": {"uid": {}, "given_name": {"header": "x-shop-first-name"}},
            "payload_header": "x-mpass-payload",
        },
    }
    return config


@pytest.fixture(scope="module")
def g(upstream, tmp_path_factory):
    """Envoy with the attack configuration in front of the recording upstream."""
    envoy = Envoy(upstream.port, attack_config(), env={STUDEO_SECRET_ENV: STUDEO_SECRET},
                  workdir=tmp_path_factory.mktemp("attacks"))
    envoy.start()
    yield envoy
    envoy.stop()


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def claims(iss: str = ISS_MAIN, aud: str = AUD_STUDEO, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": iss, "aud": aud, "sub": "pairwise-subject-1", "iat": now, "exp": now + 600,
            "urn:mpass.id:uid": UID, **extra}


def contract_claims(**extra: Any) -> dict[str, Any]:
    return claims(aud=AUD_CONTRACT, given_name=GIVEN, family_name="Withheld",
                  email="withheld@example.test", **{
                      "urn:mpass.id:role": [f"{ORG};30076;7A;Opettaja;2;1.2.246.562.10.00000000002;"],
                      **extra})


def rs256(c: dict[str, Any] | None = None, **kw: Any) -> str:
    return mint(key_path("rsa-a.pem"), "RS256", c or claims(), kid=kw.pop("kid", "rsa-a"), **kw)


def as_bytes(part: bytes | str | dict) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode()
    return json.dumps(part).encode()


def sign_rs256(signing_input: bytes, key: str = "rsa-a.pem") -> bytes:
    return subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_path(key)), "-binary"],
                          input=signing_input, check=True, capture_output=True).stdout


def raw(header: bytes | str | dict, payload: bytes | str | dict, *, key: str = "rsa-a.pem",
        hs_secret: str | None = None) -> str:
    """A compact JWS over exactly these header and payload bytes.

    Signed RS256 with ``key``, or HS256 with ``hs_secret``; the header's own
    ``alg`` is whatever the caller wrote.
    """
    signing_input = f"{b64url(as_bytes(header))}.{b64url(as_bytes(payload))}".encode()
    if hs_secret is not None:
        sig = hmac.new(hs_secret.encode(), signing_input, hashlib.sha256).digest()
    else:
        sig = sign_rs256(signing_input, key)
    return f"{signing_input.decode()}.{b64url(sig)}"


RS_HEADER = '{"alg":"RS256","kid":"rsa-a"}'


def body(**fields: Any) -> str:
    """A payload with valid times, as raw JSON text, fields written in order."""
    now = int(time.time())
    base = {"iss": ISS_MAIN, "aud": AUD_STUDEO, "sub": "pairwise-subject-1", "iat": now,
            "exp": now + 600}
    base.update(fields)
    return json.dumps(base)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def refused(g, upstream, resp, status: int, reason: str | None) -> None:
    """The client got ``status`` (with ``reason``), and the upstream got nothing."""
    assert resp.status == status, f"{resp.status} {resp.body!r}\n{g.log_tail(5)}"
    if reason is not None:
        assert resp.json().get("reason", resp.json().get("error")) == reason, resp.body
    if status == 401:
        assert (resp.header("www-authenticate") or "").startswith("Bearer realm=")
    assert upstream.received() == [], "a refused request reached the upstream"


def assert_clean(rec: harness.Recorded, token: str | None, allowed: set[str] = frozenset(),
                 spoof: str = "spoofed-by-client") -> None:
    """No token, no Authorization, no spoofed value; identity headers only from ``allowed``, once."""
    assert rec.values("authorization") == [], "the Authorization header reached the upstream"
    if token:
        sig = token.rsplit(".", 1)[-1]
        assert token not in rec.path and (not sig or sig not in rec.path)
        for name, value in rec.headers:
            assert token not in value and (not sig or sig not in value), f"token in {name}"
    for name, value in rec.headers:
        assert spoof not in value, f"spoofed {name} reached the upstream"
        norm = name.lower().replace("_", "-")
        if norm.startswith("x-mpass-") or norm in CONTRACT_HEADERS or norm in {
                "x-forwarded-user", "x-userinfo", "x-id-token"} or norm.startswith("x-auth-request-"):
            assert name.lower() in allowed, f"identity header {name} reached the upstream"
            assert len(rec.values(name)) == 1, f"{name} arrived {len(rec.values(name))} times"


def released(rec: harness.Recorded) -> dict[str, str]:
    """The contracted provider's identity headers as the upstream received them."""
    return {n.lower(): v for n, v in rec.headers if n.lower() in CONTRACT_HEADERS}


def assert_contract_only(rec: harness.Recorded, token: str) -> None:
    """The contracted provider received uid and given name, nothing else."""
    assert_clean(rec, token, allowed=CONTRACT_HEADERS)
    got = released(rec)
    assert got["x-mpass-uid"] == UID
    assert got["x-shop-first-name"] == GIVEN
    payload = json.loads(b64url_decode(got["x-mpass-payload"]))
    assert payload == {"urn:mpass.id:uid": UID, "given_name": GIVEN}
    for name, value in rec.headers:
        assert "Withheld" not in value and "withheld@" not in value, f"withheld claim in {name}"


# --------------------------------------------------------------------------
# Algorithm attacks
# --------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["empty", "real"])
def test_alg_none_in_any_spelling_is_refused(g, upstream, alg, signature):
    """Attack: an unsigned token (``alg: none`` in any case), with or without a
    signature part copied from a real token.
    Client: 401 unsupported_algorithm. Upstream: nothing."""
    real = rs256()
    sig = real.rsplit(".", 1)[1] if signature == "real" else ""
    token = f"{b64url(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{real.split('.')[1]}.{sig}"
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "unsupported_algorithm")


@pytest.mark.parametrize("header", [
    {"typ": "JWT", "kid": "rsa-a"},
    {"alg": None, "kid": "rsa-a"},
    {"alg": "", "kid": "rsa-a"},
    {"alg": ["RS256"], "kid": "rsa-a"},
    {"alg": {"name": "RS256"}, "kid": "rsa-a"},
    {"alg": "rs256", "kid": "rsa-a"},
    {"alg": "RS256 ", "kid": "rsa-a"},
    {"alg": "HS1", "kid": "rsa-a"},
], ids=["missing", "null", "empty", "array", "object", "lowercase", "trailing-space", "unknown"])
def test_a_missing_or_unknown_alg_is_refused(g, upstream, header):
    """Attack: a token whose ``alg`` is missing, not a string, or a spelling
    that a lax parser might map to a real algorithm; signed with the real key.
    Client: 401 unsupported_algorithm. Upstream: nothing."""
    token = raw(header, body())
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "unsupported_algorithm")


def rsa_public_forms() -> dict[str, str]:
    """The issuer's public key written every way an attacker might use as an HMAC secret."""
    pem = public_pem(key_path("rsa-a.pem"))
    set_json = jwks((key_path("rsa-a.pem"), "rsa-a", "RS256"))
    key_json = json.loads(set_json)["keys"][0]
    der = subprocess.run(["openssl", "pkey", "-in", str(key_path("rsa-a.pem")), "-pubout",
                          "-outform", "DER"], check=True, capture_output=True).stdout
    return {
        "pem": pem,
        "pem-without-newline": pem.rstrip("\n"),
        "jwk-json": json.dumps(key_json),
        "jwk-json-compact": json.dumps(key_json, separators=(",", ":")),
        "jwks-json": set_json,
        "jwk-n": key_json["n"],
        "der-base64url": b64url(der),
    }


@pytest.mark.parametrize("form", list(rsa_public_forms()))
def test_hs256_with_the_issuers_public_key_as_secret_is_refused(g, upstream, form):
    """Attack: algorithm confusion. The attacker "signs" HS256 with the
    issuer's RSA public key (PEM, JWK JSON, JWKS JSON, modulus, DER) as the
    HMAC secret, hoping the verifier feeds its RSA key to HMAC.
    Client: 401 algorithm_not_allowed where the issuer allows only RS256;
    401 bad_signature where HS256 is allowed (checked with the provider's
    client secret only); 401 unknown_key at a provider without a secret.
    Upstream: nothing in every case."""
    secret = rsa_public_forms()[form]
    rs_only = mint(f"hmac:{secret}", "HS256", claims(ISS_RS_ONLY), kid="rsa-a")
    refused(g, upstream, g.send(SHOP, bearer(rs_only)), 401, "algorithm_not_allowed")
    main = mint(f"hmac:{secret}", "HS256", claims(ISS_MAIN), kid="rsa-a")
    refused(g, upstream, g.send(SHOP, bearer(main)), 401, "bad_signature")
    library = mint(f"hmac:{secret}", "HS256", claims(ISS_MAIN, AUD_LIBRARY), kid="rsa-a")
    refused(g, upstream, g.send(LIBRARY, bearer(library)), 401, "unknown_key")


@pytest.mark.parametrize("key,alg", [
    ("rsa-a.pem", "RS384"), ("rsa-a.pem", "RS512"), ("rsa-a.pem", "PS256"),
    ("rsa-a.pem", "PS512"), ("ec-p256.pem", "ES256"), ("ed25519.pem", "EdDSA"),
    ("hmac", "HS384"), ("hmac", "HS512"),
])
def test_a_correctly_signed_token_in_an_algorithm_off_the_allow_list_is_refused(g, upstream, key, alg):
    """Attack: a token validly signed, but with an algorithm the issuer does
    not allow (the main issuer allows RS256 and HS256 only).
    Client: 401 algorithm_not_allowed. Upstream: nothing."""
    k = f"hmac:{STUDEO_SECRET}" if key == "hmac" else key_path(key)
    token = mint(k, alg, claims(), kid="rsa-a")
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "algorithm_not_allowed")


def test_an_allowed_alg_the_key_did_not_declare_is_refused_as_unknown_key(g, upstream):
    """Attack: the issuer allows RS256 and PS256, its only key declares
    RS256; a PS256 token made with that very key (a key must not be used with
    an algorithm it was not published for).
    Client: 401 unknown_key. Upstream: nothing. Control: the RS256 token passes."""
    ps = mint(key_path("rsa-a.pem"), "PS256", claims(ISS_WIDE), kid="rsa-a")
    refused(g, upstream, g.send(SHOP, bearer(ps)), 401, "unknown_key")
    rs = rs256(claims(ISS_WIDE))
    assert g.send(SHOP, bearer(rs)).status == 200
    assert_clean(upstream.only(), rs)


@pytest.mark.parametrize("iss,key,kid,header_alg,sign_alg,reason", [
    (ISS_PS, "rsa-b.pem", "rsa-b", "PS256", "RS256", "bad_signature"),
    (ISS_MAIN, "rsa-a.pem", "rsa-a", "RS256", "PS256", "bad_signature"),
    (ISS_ES, "rsa-a.pem", "ec-p256", "ES256", "RS256", "bad_signature"),
    (ISS_WIDE, "rsa-a.pem", "rsa-a", "PS256", "RS256", "unknown_key"),
])
def test_a_header_alg_that_disagrees_with_the_signature_is_refused(g, upstream, iss, key, kid,
                                                                   header_alg, sign_alg, reason):
    """Attack: the header names one algorithm, the signature was made with
    another (a verifier that trusts the key's algorithm, or the header's,
    without checking both would accept it).
    Client: 401 bad_signature (or unknown_key when the key never declared
    the header's algorithm). Upstream: nothing."""
    token = mint(key_path(key), sign_alg, claims(iss), kid=kid, header={"alg": header_alg})
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, reason)


def es256_parts() -> tuple[str, str, bytes]:
    token = mint(key_path("ec-p256.pem"), "ES256", claims(ISS_ES), kid="ec-p256")
    h, p, s = token.split(".")
    return h, p, b64url_decode(s)


# The order n of P-256: r = s = n is as degenerate as r = s = 0.
P256_N = bytes.fromhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")


@pytest.mark.parametrize("variant", [
    "psychic-zero", "r-s-equal-n", "one-zero-byte", "63-bytes", "65-bytes-trailing",
    "valid-plus-trailing", "der-encoded", "all-ff",
])
def test_es256_psychic_and_degenerate_signatures_are_refused(g, upstream, variant):
    """Attack: ES256 signatures that broken verifiers accept: r = s = 0
    (CVE-2022-21449), r = s = n, wrong lengths, a valid signature with a
    trailing byte, the DER form instead of JWS's fixed r||s.
    Client: 401 bad_signature. Upstream: nothing."""
    h, p, sig = es256_parts()
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_path("ec-p256.pem"))],
                         input=f"{h}.{p}".encode(), check=True, capture_output=True).stdout
    sigs = {
        "psychic-zero": bytes(64),
        "r-s-equal-n": P256_N + P256_N,
        "one-zero-byte": b"\0",
        "63-bytes": sig[:63],
        "65-bytes-trailing": sig + b"\0",
        "valid-plus-trailing": sig + b"\x01",
        "der-encoded": der,
        "all-ff": b"\xff" * 64,
    }
    token = f"{h}.{p}.{b64url(sigs[variant])}"
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "bad_signature")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "HS256"])
def test_an_empty_signature_is_malformed(g, upstream, alg):
    """Attack: a signed algorithm with the signature part left empty.
    Client: 401 malformed. Upstream: nothing."""
    token = {"RS256": rs256, "ES256": lambda: ".".join(es256_parts()[:2]) + ".x",
             "HS256": lambda: mint(f"hmac:{STUDEO_SECRET}", "HS256", claims())}[alg]()
    h, p, _ = token.split(".")
    refused(g, upstream, g.send(SHOP, bearer(f"{h}.{p}.")), 401, "malformed")


def test_an_all_zero_rsa_signature_of_the_right_length_is_refused(g, upstream):
    """Attack: an RS256 signature of 256 zero bytes (and one of 0x01).
    Client: 401 bad_signature. Upstream: nothing."""
    h, p, _ = rs256().split(".")
    for sig in (bytes(256), b"\x01" + bytes(255)):
        refused(g, upstream, g.send(SHOP, bearer(f"{h}.{p}.{b64url(sig)}")), 401, "bad_signature")


# --------------------------------------------------------------------------
# Key selection attacks: jku, x5u, x5c, jwk, kid
# --------------------------------------------------------------------------


def test_jku_x5u_and_x5c_are_ignored_and_nothing_is_fetched(g, upstream):
    """Attack: header ``jku``/``x5u`` pointing at a server the attacker runs
    (here: the recording upstream itself), ``x5c`` carrying a certificate.
    A token really signed by the issuer is verified against the configured
    keys only and passes; nothing is fetched from the URLs.
    Client: 200. Upstream: exactly one request (the forwarded one, no key
    fetch), without the token."""
    url = f"http://127.0.0.1:{upstream.port}/attacker-jwks"
    token = rs256(header={"jku": url, "x5u": url + "/cert", "x5c": ["MIIBattackerCert"]})
    resp = g.send(SHOP, bearer(token))
    assert resp.status == 200, resp.body
    time.sleep(0.3)  # a fetch, if any, would arrive now
    rec = upstream.only()
    assert rec.path == SHOP
    assert_clean(rec, token)


def attacker_jwk(kid: str | None) -> dict[str, Any]:
    key = json.loads(jwks((key_path("rsa-b.pem"), kid or "attacker", "RS256")))["keys"][0]
    if kid is None:
        key.pop("kid", None)
    return key


@pytest.mark.parametrize("kid,reason", [("rsa-a", "bad_signature"), (None, "bad_signature"),
                                        ("attacker", "unknown_key")])
def test_a_token_signed_by_its_own_embedded_jwk_is_refused(g, upstream, kid, reason):
    """Attack: the token carries its own public key (``jwk``, plus ``jku`` to
    the attacker) and is signed with the matching private key, under the
    issuer's kid, no kid, or the embedded key's kid.
    Client: 401 (bad_signature against the configured key, or unknown_key).
    Upstream: nothing."""
    header = {"jwk": attacker_jwk(kid), "jku": "https://attacker.example/jwks"}
    token = mint(key_path("rsa-b.pem"), "RS256", claims(), kid=kid, header=header)
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, reason)


@pytest.mark.parametrize("kid", [
    "../../../../etc/passwd", "rsa-a/../rsa-a", "..\\..\\rsa-a", "rsa-a\u0000", "rsa-a ",
    "RSA-A", "%72sa-a", "k" * 10240, "",
], ids=["traversal", "traversal-to-self", "backslashes", "nul", "trailing-space", "case",
        "percent", "10kb", "empty"])
def test_a_hostile_kid_finds_no_key(g, upstream, kid):
    """Attack: a ``kid`` built to reach a file, a look-alike of the real kid,
    or 10 KB long. Keys are matched by exact kid in memory; no file is read.
    Client: 401 unknown_key. Upstream: nothing."""
    token = raw({"alg": "RS256", "kid": kid}, body())
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "unknown_key")


@pytest.mark.parametrize("kid", [7, None, ["rsa-a"], {"id": "rsa-a"}, True])
def test_a_kid_that_is_not_a_string_is_malformed(g, upstream, kid):
    """Attack: a non-string ``kid`` that a lax parser might coerce to "rsa-a".
    Client: 401 malformed. Upstream: nothing."""
    token = raw({"alg": "RS256", "kid": kid}, body())
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "malformed")


@pytest.mark.parametrize("header,reason", [
    ('{"alg":"RS256","kid":"rsa-a","crit":["exp"],"exp":1}', "unsupported_critical_header"),
    ('{"alg":"RS256","kid":"rsa-a","b64":false,"crit":["b64"]}', "unsupported_critical_header"),
    ('{"alg":"RS256","kid":"rsa-a","crit":["urn:attacker:ext"]}', "unsupported_critical_header"),
    ('{"alg":"RS256","kid":"rsa-a","crit":[]}', "malformed"),
    ('{"alg":"RS256","kid":"rsa-a","crit":"b64"}', "malformed"),
    ('{"alg":"RS256","kid":"rsa-a","crit":null}', "malformed"),
])
def test_a_critical_header_extension_is_refused(g, upstream, header, reason):
    """Attack: ``crit`` naming extensions the filter does not implement (RFC
    7515 4.1.11 requires refusing them), or a malformed ``crit``; the token is
    otherwise valid and signed by the issuer.
    Client: 401 unsupported_critical_header or malformed. Upstream: nothing."""
    refused(g, upstream, g.send(SHOP, bearer(raw(header, body()))), 401, reason)


# --------------------------------------------------------------------------
# Payload attacks: duplicates, types, numbers, shapes, encodings
# --------------------------------------------------------------------------

NOW = int(time.time())
TIMES = f'"iat":{NOW},"exp":{NOW + 600}'


@pytest.mark.parametrize("payload", [
    f'{{"iss":"{ISS_MAIN}","iss":"https://evil.example","aud":"{AUD_STUDEO}",{TIMES}}}',
    f'{{"iss":"https://evil.example","iss":"{ISS_MAIN}","aud":"{AUD_STUDEO}",{TIMES}}}',
    f'{{"iss":"{ISS_MAIN}","aud":"{AUD_LIBRARY}","aud":"{AUD_STUDEO}",{TIMES}}}',
    f'{{"iss":"{ISS_MAIN}","aud":"{AUD_STUDEO}","exp":1,{TIMES}}}',
    f'{{"iss":"{ISS_MAIN}","aud":"{AUD_STUDEO}",{TIMES},"urn:mpass.id:uid":"a","urn:mpass.id:uid":"b"}}',
    f'{{"iss":"{ISS_MAIN}","aud":"{AUD_STUDEO}",{TIMES},"x":{{"a":1,"a":2}}}}',
    f'{{"iss":"{ISS_MAIN}","aud":"{AUD_STUDEO}",{TIMES},"i\\u0073s":"https://evil.example"}}',
], ids=["iss-first-real", "iss-last-real", "aud", "exp", "uid", "nested", "escaped-name"])
def test_duplicate_json_members_are_refused(g, upstream, payload):
    """Attack: a parser differential. The payload names ``iss``, ``aud``,
    ``exp`` or a released claim twice (also as ``i\\u0073s``), hoping one
    parser keeps the first and another the last. Correctly signed.
    Client: 401 duplicate_claim. Upstream: nothing."""
    refused(g, upstream, g.send(SHOP, bearer(raw(RS_HEADER, payload))), 401, "duplicate_claim")


def test_a_duplicate_alg_in_the_header_is_malformed(g, upstream):
    """Attack: ``{"alg":"HS256","alg":"RS256"}``: one parser sees HMAC, another RSA.
    Client: 401 malformed. Upstream: nothing."""
    token = raw('{"alg":"HS256","alg":"RS256","kid":"rsa-a"}', body())
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "malformed")


def time_payload(claim: str, value: str) -> str:
    fields = {"iss": f'"{ISS_MAIN}"', "aud": f'"{AUD_STUDEO}"', "iat": str(NOW),
              "exp": str(NOW + 600), "urn:mpass.id:uid": json.dumps(UID)}
    fields[claim] = value
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [
    f'"{NOW + 600}"', "-1", "-0.5", "99999999999999999999", "253402300800", "1e300",
    "18446744073709551616", "true", "null", f"[{NOW}]", f'{{"t":{NOW}}}',
], ids=["string", "negative", "negative-fraction", "u64-overflow", "after-9999", "1e300", "2^64",
        "bool", "null", "array", "object"])
def test_time_claims_that_are_not_numeric_dates_in_range_are_refused(g, upstream, claim, value):
    """Attack: ``exp``/``nbf``/``iat`` as strings, huge or negative numbers or
    other JSON types, so that verifiers disagree on when a token is valid.
    Correctly signed. Client: 401 invalid_claim. Upstream: nothing."""
    token = raw(RS_HEADER, time_payload(claim, value))
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "invalid_claim")


@pytest.mark.parametrize("claim,value", [
    ("exp", f"{NOW + 600}.5"), ("exp", f"{NOW + 600}.0"), ("exp", f"{NOW + 600}e0"),
    ("iat", f"{NOW}.5"), ("nbf", f"{NOW - 10}.25"),
], ids=["exp-fraction", "exp-float", "exp-exponent", "iat-fraction", "nbf-fraction"])
def test_fractional_numeric_dates_are_accepted_as_rfc_7519_allows(g, upstream, claim, value):
    """RFC 7519 section 2: a NumericDate may be non-integer (jwt_authn accepts
    it too). Correctly signed, valid: the upstream receives the request, without the token."""
    token = raw(RS_HEADER, time_payload(claim, value))
    resp = g.send(SHOP, bearer(token))
    assert resp.status == 200, f"{resp.status} {resp.body!r}"
    [rec] = upstream.received()
    assert_clean(rec, token, allowed=CONTRACT_HEADERS)


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "logout+jwt", "secevent+jwt"])
def test_a_token_typed_as_something_other_than_an_id_token_is_refused(g, upstream, typ):
    """RFC 8725 section 3.11: an access token, logout token or security event
    token of the same issuer and key is not an ID token. Correctly signed.
    Client: 401 wrong_token_type. Upstream: nothing."""
    token = raw(json.dumps({"alg": "RS256", "kid": "rsa-a", "typ": typ}), body())
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "wrong_token_type")


@pytest.mark.parametrize("aud", [
    [AUD_STUDEO, 5], [AUD_STUDEO, None], [[AUD_STUDEO]], {AUD_STUDEO: True}, 5, True,
    [AUD_STUDEO, {"a": 1}],
], ids=["int-member", "null-member", "nested-array", "object", "int", "bool", "object-member"])
def test_an_audience_with_non_string_members_is_refused(g, upstream, aud):
    """Attack: ``aud`` holding non-strings next to the right audience (a lax
    verifier might match the string and ignore the rest, or stringify).
    Client: 401 invalid_claim. Upstream: nothing."""
    token = rs256(claims(aud=aud))
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "invalid_claim")


@pytest.mark.parametrize("aud", [[], [""], [AUD_STUDEO.upper()], [AUD_STUDEO + " "]])
def test_an_empty_or_look_alike_audience_is_forbidden(g, upstream, aud):
    """Attack: an empty audience list, or a look-alike of the right audience.
    Client: 403 audience_mismatch. Upstream: nothing."""
    refused(g, upstream, g.send(SHOP, bearer(rs256(claims(aud=aud)))), 403, "audience_mismatch")


def test_deeply_nested_json_is_refused(g, upstream):
    """Attack: a claim nested 1000 levels deep, to exhaust the parser's stack
    (a trap in the VM would take every request down).
    Client: 401 malformed. Upstream: nothing. Envoy keeps serving."""
    payload = body()[:-1] + ',"deep":' + "[" * 1000 + "]" * 1000 + "}"
    refused(g, upstream, g.send(SHOP, bearer(raw(RS_HEADER, payload))), 401, "malformed")
    payload = body()[:-1] + ',"deep":' + '{"a":' * 1000 + "1" + "}" * 1000 + "}"
    refused(g, upstream, g.send(SHOP, bearer(raw(RS_HEADER, payload))), 401, "malformed")
    token = rs256()
    assert g.send(SHOP, bearer(token)).status == 200
    assert_clean(upstream.only(), token)


def test_moderately_nested_claims_pass_but_are_never_released(g, upstream):
    """Attack: a 100-level nested claim the contract does not name.
    Client: 200. Upstream: only the contracted headers, nothing of the claim."""
    deep = json.loads("[" * 100 + '"nested-secret"' + "]" * 100)
    token = mint(key_path("rsa-a.pem"), "RS256", contract_claims(deep=deep), kid="rsa-a")
    resp = g.send(CONTRACT, bearer(token))
    assert resp.status == 200, resp.body
    rec = upstream.only()
    assert_contract_only(rec, token)
    assert all("nested-secret" not in v for _, v in rec.headers)


def test_very_many_claims_release_only_the_contract(g, upstream):
    """Attack: 700 extra claims, including look-alikes of released names
    (``uid``, ``x-mpass-uid``, ``given_name ``), next to the real ones.
    Client: 200. Upstream: uid and given name only, with the token's values."""
    extra = {f"c{i}": f"v{i}" for i in range(700)}
    extra.update({"uid": "spoofed-by-client", "x-mpass-uid": "spoofed-by-client",
                  "given_name ": "spoofed-by-client", "mpass_uid": "spoofed-by-client"})
    token = mint(key_path("rsa-a.pem"), "RS256", contract_claims(**extra), kid="rsa-a")
    assert len(token) < 16384
    resp = g.send(CONTRACT, bearer(token))
    assert resp.status == 200, resp.body
    assert_contract_only(upstream.only(), token)


def test_too_many_claims_for_the_size_limit_are_refused_before_parsing(g, upstream):
    """Attack: a token of many thousand claims (beyond max_token_bytes).
    Client: 401 too_large. Upstream: nothing."""
    payload = body()[:-1] + "".join(f',"c{i}":{i}' for i in range(3000)) + "}"
    refused(g, upstream, g.send(SHOP, bearer(raw(RS_HEADER, payload))), 401, "too_large")


@pytest.mark.parametrize("payload", [
    b'{"iss":"' + ISS_MAIN.encode() + b'","aud":"studeo-webshop","sub":"\xff\xfe",' + TIMES.encode() + b"}",
    b'{"iss":"' + ISS_MAIN.encode() + b'","aud":"studeo-webshop","sub":"\xc0\xaf",' + TIMES.encode() + b"}",
    b'{"iss":"' + ISS_MAIN.encode() + b'","aud":"studeo-webshop","sub":"\xed\xa0\x80",' + TIMES.encode() + b"}",
    b'{"iss":"' + ISS_MAIN.encode() + b'","aud":"studeo-webshop","sub":"\\ud800",' + TIMES.encode() + b"}",
    b"\xef\xbb\xbf" + body().encode(),
    body().encode() + b"\x00",
    body().encode() + b" {}",
], ids=["ff-fe", "overlong-slash", "utf8-surrogate", "escaped-lone-surrogate", "bom",
        "trailing-nul", "trailing-object"])
def test_invalid_utf8_or_trailing_bytes_in_the_payload_are_malformed(g, upstream, payload):
    """Attack: a correctly signed payload that is not valid UTF-8 JSON
    (invalid bytes, an overlong ``/``, an encoded surrogate, a byte-order
    mark, trailing data). Client: 401 malformed. Upstream: nothing."""
    refused(g, upstream, g.send(SHOP, bearer(raw(RS_HEADER, payload))), 401, "malformed")


def test_invalid_utf8_in_the_header_is_malformed(g, upstream):
    """Attack: a JOSE header with a non-UTF-8 ``kid``.
    Client: 401 malformed. Upstream: nothing."""
    token = raw(b'{"alg":"RS256","kid":"rsa-a\xff"}', body())
    refused(g, upstream, g.send(SHOP, bearer(token)), 401, "malformed")


def _signature_with_url_chars() -> str:
    for _ in range(20):
        token = rs256()
        if any(c in token.rsplit(".", 1)[1] for c in "-_"):
            return token
    raise AssertionError("no signature with - or _ in 20 tokens")


@pytest.mark.parametrize("variant", [
    "padded-header", "padded-payload", "padded-signature", "standard-alphabet",
    "non-canonical-last-char", "percent-encoded-dot", "trailing-dot", "leading-dot",
    "four-parts", "jwe-five-parts",
])
def test_non_canonical_base64url_is_malformed(g, upstream, variant):
    """Attack: a valid token re-encoded so that a lenient base64 decoder gets
    the same bytes but the signed text differs: ``=`` padding, ``+``/``/``,
    unused low bits set, extra or escaped dots, a JWE shape.
    Client: 401 malformed. Upstream: nothing."""
    token = _signature_with_url_chars()
    h, p, s = token.split(".")
    last = s[-1]
    canon = "AQgw"  # 256-byte signatures end in one of these
    assert last in canon
    variants = {
        "padded-header": f"{h}=.{p}.{s}" if len(h) % 4 else f"{h}====.{p}.{s}",
        "padded-payload": f"{h}.{p}{'=' * (-len(p) % 4) or '===='}.{s}",
        "padded-signature": f"{h}.{p}.{s}==",
        "standard-alphabet": f"{h}.{p}.{s.replace('-', '+').replace('_', '/')}",
        "non-canonical-last-char": f"{h}.{p}.{s[:-1]}{chr(ord(last) + 1)}",
        "percent-encoded-dot": f"{h}%2E{p}.{s}",
        "trailing-dot": f"{token}.",
        "leading-dot": f".{token}",
        "four-parts": f"{token}.{s}",
        "jwe-five-parts": f"{h}.{p}.{s}.{s}.{s}",
    }
    refused(g, upstream, g.send(SHOP, bearer(variants[variant])), 401, "malformed")


@pytest.mark.parametrize("sep", [" ", "\t"])
def test_whitespace_inside_a_token_is_refused(g, upstream, sep):
    """Attack: whitespace inside the token, which a lenient base64 decoder
    skips. Whitespace cannot be in a JWS: two credentials, or not a JWS.
    Client: 401 (ambiguous_token or malformed). Upstream: nothing."""
    h, p, s = rs256().split(".")
    resp = g.send(SHOP, bearer(f"{h}.{p[:10]}{sep}{p[10:]}.{s}"))
    refused(g, upstream, resp, 401, None)
    assert resp.json()["reason"] in {"ambiguous_token", "malformed"}, resp.body


# --------------------------------------------------------------------------
# Where the token comes from
# --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "Bearer {t}", "bearer {t}", "BEARER {t}", "bEaReR {t}", "Bearer   {t}", "Bearer {t}   ",
    "   Bearer {t}",
])
def test_bearer_scheme_case_and_extra_spaces_are_accepted_and_removed(g, upstream, value):
    """Attack surface: the auth scheme in any case (RFC 9110: case-insensitive)
    and extra spaces. The token is found, verified, and removed.
    Client: 200. Upstream: no Authorization header, no token."""
    token = rs256()
    resp = g.send(SHOP, [("Authorization", value.format(t=token))])
    assert resp.status == 200, resp.body
    assert_clean(upstream.only(), token)


@pytest.mark.parametrize("value", ["Bearer\t{t}", "Bearer{t}", "Token {t}", "Basic {t}",
                                   "{t}", "Bearer"])
def test_a_token_under_another_scheme_is_not_taken(g, upstream, value):
    """Attack: the token without the configured ``Bearer `` prefix (tab,
    no space, other scheme, bare). It is not a bearer credential.
    Client: 401 missing_token. Upstream: nothing."""
    resp = g.send(SHOP, [("Authorization", value.format(t=rs256()))])
    assert resp.status == 401, resp.body
    assert resp.json() == {"error": "missing_token"}
    assert upstream.received() == []


@pytest.mark.parametrize("values", [
    ["Bearer {a}", "Basic dXNlcjpwYXNz"],
    ["Basic dXNlcjpwYXNz", "Bearer {a}"],
    ["Bearer {a}, Bearer {b}"],
    ["Bearer {a},{b}"],
    ["Bearer {a}", "bearer {a}"],
])
def test_several_credentials_in_authorization_are_refused(g, upstream, values):
    """Attack: two Authorization headers or two credentials in one, where a
    different component picks another one than the filter.
    Client: 401 (ambiguous_token, or missing_token when Envoy's joined value
    does not start with ``Bearer``). Upstream: nothing."""
    a, b = rs256(), rs256(claims(sub="another-subject"))
    headers = [("Authorization", v.format(a=a, b=b)) for v in values]
    resp = g.send(SHOP, headers)
    assert resp.status == 401, resp.body
    assert resp.json().get("reason", resp.json()["error"]) in {"ambiguous_token", "missing_token"}
    assert upstream.received() == []


@pytest.mark.parametrize("where", [
    "header+cookie-same", "cookie-twice", "cookie-twice-two-headers", "cookie-quoted+plain",
    "query-twice", "query-twice-same", "query-encoded-name", "query-empty-second",
    "header+empty-query",
])
def test_the_same_token_in_several_places_is_ambiguous(g, upstream, where):
    """Attack: the token (or a second one) in several places at once: header
    and cookie, a cookie twice, a query parameter repeated or with an
    encoded name (``id%5Ftoken``). Removing one copy would leave the other.
    Client: 401 ambiguous_token. Upstream: nothing."""
    a = rs256()
    cases: dict[str, tuple[str, list[tuple[str, str]]]] = {
        "header+cookie-same": (SHOP, bearer(a) + [("Cookie", f"id_token={a}")]),
        "cookie-twice": (SHOP, [("Cookie", f"id_token={a}; x=1; id_token={a}")]),
        "cookie-twice-two-headers": (SHOP, [("Cookie", f"id_token={a}"), ("Cookie", f"id_token={a}")]),
        "cookie-quoted+plain": (SHOP, [("Cookie", f'id_token="{a}"; id_token={a}')]),
        "query-twice": (f"{SHOP}?id_token={a}&id_token={rs256(claims(sub='b'))}", []),
        "query-twice-same": (f"{SHOP}?id_token={a}&id_token={a}", []),
        "query-encoded-name": (f"{SHOP}?id_token={a}&id%5Ftoken={a}", []),
        "query-empty-second": (f"{SHOP}?id_token={a}&id_token=", []),
        "header+empty-query": (f"{SHOP}?id_token=", bearer(a)),
    }
    path, headers = cases[where]
    refused(g, upstream, g.send(path, headers), 401, "ambiguous_token")


def test_a_token_in_an_encoded_query_name_is_found_and_removed(g, upstream):
    """Attack: the token parameter name percent-encoded (``id%5Ftoken``) so
    that a naive remover leaves it in the query.
    Client: 200. Upstream: the rest of the query, no token."""
    token = rs256()
    assert g.send(f"{SHOP}?a=1&id%5Ftoken={token}&b=2").status == 200
    rec = upstream.only()
    assert rec.path == f"{SHOP}?a=1&b=2"
    assert_clean(rec, token)


# --------------------------------------------------------------------------
# Identity headers and header floods
# --------------------------------------------------------------------------


def variants(name: str) -> list[str]:
    """Every ``-``/``_`` spelling of ``name`` in lower, upper and title case."""
    parts = name.split("-")
    out = []
    for seps in itertools.product("-_", repeat=len(parts) - 1):
        joined = parts[0] + "".join(s + p for s, p in zip(seps, parts[1:]))
        out += [joined, joined.upper(), joined.title()]
    return out


IDENTITY_NAMES = ["x-mpass-uid", "x-shop-first-name", "x-mpass-payload", "x-mpass-role",
                  "x-forwarded-user", "x-auth-request-email"]


@pytest.mark.parametrize("path", [CONTRACT, OPEN, SHOP])
def test_identity_headers_in_every_case_and_underscore_variant_are_removed(g, upstream, path):
    """Attack: a client sends the filter's own headers (and the contract's
    custom header, the payload header, operator-listed names) in every
    case and ``-``/``_`` spelling, hoping one survives next to the real one.
    Client: 200. Upstream: on the contracted route exactly one of each
    released header with the token's value; elsewhere none at all."""
    spoofed = [(v, "spoofed-by-client") for n in IDENTITY_NAMES for v in variants(n)]
    token = {CONTRACT: lambda: rs256(contract_claims()), SHOP: rs256, OPEN: lambda: None}[path]()
    headers = (bearer(token) if token else []) + spoofed[:90]
    resp = g.send(path, headers)
    assert resp.status == 200, resp.body
    rec = upstream.only()
    if path == CONTRACT:
        assert_contract_only(rec, token)
    else:
        assert_clean(rec, token)
    rest = spoofed[90:]
    if rest:
        upstream.clear()
        assert g.send(path, (bearer(token) if token else []) + rest).status == 200
        rec = upstream.only()
        assert_contract_only(rec, token) if path == CONTRACT else assert_clean(rec, token)


def test_a_flood_of_headers_within_envoys_limit_is_sanitised(g, upstream):
    """Attack: 95 headers, all spoofed identity headers, next to a valid token.
    Client: 200. Upstream: none of them."""
    spoofed = [(f"x-mpass-h{i}", "spoofed-by-client") for i in range(95)]
    token = rs256()
    assert g.send(SHOP, bearer(token) + spoofed).status == 200
    assert_clean(upstream.only(), token)


def test_more_headers_than_envoy_allows_never_reach_the_upstream(g, upstream):
    """Attack: 150 headers (Envoy's default limit is 100), to push a spoofed
    header past a limit. Envoy refuses the request before any filter.
    Client: 431. Upstream: nothing."""
    headers = bearer(rs256()) + [(f"x-mpass-h{i}", "spoofed-by-client") for i in range(150)]
    resp = g.send(SHOP, headers)
    assert resp.status == 431, resp.status
    assert upstream.received() == []


def test_a_huge_spoofed_header_value_is_removed(g, upstream):
    """Attack: a 40 KB spoofed identity header on an open and a protected path.
    Client: 200. Upstream: not the header."""
    big = "spoofed-by-client" + "A" * 40000
    for path, token in ((OPEN, None), (SHOP, rs256())):
        upstream.clear()
        assert g.send(path, (bearer(token) if token else []) + [("X_Mpass_Uid", big)]).status == 200
        assert_clean(upstream.only(), token)


def test_headers_beyond_envoys_size_limit_never_reach_the_upstream(g, upstream):
    """Attack: 70 KB of headers (Envoy's default limit is 60 KiB).
    Client: 431. Upstream: nothing."""
    resp = g.send(SHOP, bearer(rs256()) + [("x-mpass-uid", "A" * 70000)])
    assert resp.status == 431, resp.status
    assert upstream.received() == []


def test_a_huge_bearer_value_is_too_large(g, upstream):
    """Attack: a 50 KB bearer token, to make the filter decode and parse it.
    The size limit is checked before any decoding.
    Client: 401 too_large. Upstream: nothing."""
    refused(g, upstream, g.send(SHOP, [("Authorization", "Bearer " + "A" * 50000)]), 401,
            "too_large")


def test_envoy_keeps_serving_after_the_corpus(g, upstream):
    """After every attack above the VM is alive: a valid request still passes
    and the upstream receives it without the token."""
    token = rs256(contract_claims())
    assert g.send(CONTRACT, bearer(token)).status == 200
    assert_contract_only(upstream.only(), token)
    assert g.serving()


# --------------------------------------------------------------------------
# Paths that a normalising upstream reads as a protected prefix
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "//shop/basket", "///shop//basket", "/public/../shop/basket", "/./shop/basket",
    "/public/%2e%2e/shop/basket", "/public%2F..%2Fshop/basket", "/shop/../public/info",
])
def test_a_path_that_normalises_to_a_protected_prefix_needs_a_token(g, upstream, path):
    """Attack: a provider bypass through path spelling, for an Envoy without
    ``normalize_path``/``merge_slashes`` (the test bootstrap has neither).
    The recording upstream (Python's http.server) turns ``//shop/basket``
    into ``/shop/basket``; other stacks resolve ``..`` and ``%2F``. The
    filter matches providers on the normalised path as well as the raw one.
    Client: 401 missing_token. Upstream: nothing."""
    resp = g.send(path)
    assert resp.status == 401, f"{path}: {resp.status}"
    assert resp.json() == {"error": "missing_token"}
    assert upstream.received() == []


def test_a_fragment_in_the_request_target_is_refused_by_envoy(g, upstream):
    """Attack: a token hidden after ``#`` (where a parser might or might not
    see a query). Envoy 1.40 refuses a request target with a fragment.
    Client: 400. Upstream: nothing."""
    token = rs256()
    for path in (f"{SHOP}#?id_token={token}", f"{OPEN}#?id_token={token}"):
        assert g.send(path).status == 400
    assert upstream.received() == []
