"""Contracts through the real Envoy, judged by what the UPSTREAM received.

One Envoy runs mpass-guard with several provider contracts:

- ``shop``: host ``shop.example.fi``; a web shop that gets ``uid``, the given
  name under its own header, and e-mail for staff only (``only_roles``
  2-6, with a purpose), plus a payload header.
- ``materials``: host ``materials.example.fi``; another education provider's
  service that gets names, roles and school data for its own organisation.
- ``lms``: path ``/lms/``; a legacy LMS written for the 2019 claim names.
- ``pilot``: Envoy route ``pilot-route``; accepts test learner numbers.

Header decoding is the documented one (docs/contracts.md): percent-decode a
single value, JSON-parse a multi value, base64url-decode then JSON-parse the
payload header.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.parse
from pathlib import Path

import pytest

import harness
from conftest import ISS_MAIN, issuer
from harness import Envoy, jwks, key_path, mint

FIXTURES = harness.REPO / "tests" / "fixtures" / "claims"
PSEUDONYM_ENV = "MPASS_GUARD_AUDIT_KEY"
PSEUDONYM_KEY = "e2e-audit-pseudonym-key-0123456789"

SHOP_HOST = "shop.example.fi"
MATERIALS_HOST = "materials.example.fi"
MANSIKKALA = "1.2.246.562.10.00000000001"
AANEKOSKI = "1.2.246.562.10.00000000004"

OWNED = re.compile(r"^(x-mpass-|x-shop-)")


def contracts_config() -> dict:
    return {
        "issuers": [issuer(ISS_MAIN, jwks((key_path("rsa-a.pem"), "rsa-a", "RS256")), ["RS256"])],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "header_prefix": "x-mpass-",
        # The audit line tests read Envoy's application log: turn it on.
        "audit": {"pseudonym_key_env": PSEUDONYM_ENV, "log": True},
        "providers": {
            "shop": {
                "audiences": ["studeo-webshop"],
                "match": {"authorities": [SHOP_HOST]},
                "contract": {
                    "organisations": [MANSIKKALA],
                    "required": ["uid"],
                    "release": {
                        "uid": {},
                        "given_name": {"header": "x-shop-first-name"},
                        "email": {"purpose": "payment receipts", "only_roles": [2, 3, 4, 5, 6]},
                    },
                    "payload_header": "x-shop-claims",
                },
            },
            "materials": {
                "audiences": ["studeo-webshop"],
                "match": {"authorities": [MATERIALS_HOST]},
                "contract": {
                    "organisations": [AANEKOSKI],
                    "identifier_form": "both",
                    "release": {
                        "family_name": {},
                        "role": {},
                        "school_info": {},
                        "education_provider_info": {},
                        "learning_materials_charge": {"purpose": "invoicing learning materials"},
                    },
                },
            },
            "lms": {
                "audiences": ["legacy-lms"],
                "match": {"path_prefixes": ["/lms/"]},
                "contract": {
                    "organisations": ["00000"],
                    "identifier_form": "tk",
                    "release": {
                        "urn:mpass.id:uid": {},
                        "urn:oid:1.3.6.1.4.1.16161.1.1.27": {"purpose": "linking course results"},
                        "urn:mpass.id:role": {},
                        "urn:mpass.id:school": {},
                        "urn:mpass.id:class": {},
                    },
                },
            },
            "pilot": {
                "audiences": ["studeo-webshop"],
                "match": {"route_names": ["pilot-route"]},
                "contract": {
                    "organisations": [MANSIKKALA],
                    "allow_test_learner_id": True,
                    "release": {"uid": {}, "given_name": {}},
                },
            },
        },
    }


def routes() -> list[dict]:
    return [
        {"name": "pilot-route", "match": {"prefix": "/pilot/"}, "route": {"cluster": "upstream"}},
        {"name": "default-route", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}},
    ]


@pytest.fixture(scope="module")
def guard(upstream, tmp_path_factory):
    harness.require_cli()
    envoy = Envoy(upstream.port, contracts_config(), env={PSEUDONYM_ENV: PSEUDONYM_KEY},
                  routes=routes(), workdir=tmp_path_factory.mktemp("contracts"))
    envoy.start()
    yield envoy
    envoy.stop()


def fixture(name: str) -> dict:
    claims = json.loads((FIXTURES / name).read_text())
    return {k: v for k, v in claims.items() if not k.startswith("_")}


def token(claims: dict) -> str:
    return mint(key_path("rsa-a.pem"), "RS256", claims, kid="rsa-a")


def bearer(t: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {t}")]


def owned(rec: harness.Recorded) -> dict[str, str]:
    """The identity headers the upstream received, each exactly once."""
    out: dict[str, str] = {}
    for name, value in rec.headers:
        n = name.lower()
        if OWNED.match(n.replace("_", "-")):
            assert n not in out, f"{n} received twice"
            out[n] = value
    return out


def single(value: str) -> str:
    return urllib.parse.unquote(value, errors="strict")


def multi(value: str) -> list[str]:
    return json.loads(value)


def payload(value: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def claim_strings(claims: dict) -> list[str]:
    """Every user-attribute string of a claim set, and its ``;`` parts."""
    out: list[str] = []
    protocol = {"iss", "aud", "exp", "iat", "nbf", "nonce", "acr", "azp", "jti"}
    for k, v in claims.items():
        if k in protocol:
            continue
        for s in v if isinstance(v, list) else [v]:
            if isinstance(s, str):
                out.append(s)
                out.extend(p for p in s.split(";") if p)
    return out


def assert_clean(rec: harness.Recorded, t: str) -> None:
    """No token, no control character, only printable ASCII in what we set."""
    assert rec.values("authorization") == []
    for name, value in rec.headers:
        assert t not in value
        assert not any(c in value for c in "\r\n\0"), f"{name}: {value!r}"
        if OWNED.match(name.lower()):
            assert all(0x20 <= ord(c) < 0x7F for c in value), f"{name}: {value!r}"


# --------------------------------------------------------------------------
# Two providers, one token, different releases
# --------------------------------------------------------------------------


def test_two_providers_on_different_hosts_get_different_releases_from_one_token(guard, upstream):
    t = token(fixture("teacher-two-providers-1.4.json"))
    assert guard.send("/checkout", bearer(t), host=SHOP_HOST).status == 200
    shop = upstream.only()
    upstream.clear()
    assert guard.send("/books", bearer(t), host=MATERIALS_HOST).status == 200
    materials = upstream.only()
    for rec in (shop, materials):
        assert_clean(rec, t)

    assert set(owned(shop)) == {"x-mpass-uid", "x-shop-first-name", "x-shop-claims"}
    assert set(owned(materials)) == {"x-mpass-family-name", "x-mpass-role", "x-mpass-school-info",
                                     "x-mpass-education-provider-info",
                                     "x-mpass-learning-materials-charge"}
    # The materials service sees only its own organisation (Äänekoski).
    roles = multi(owned(materials)["x-mpass-role"])
    assert [r.split(";")[0] for r in roles] == [AANEKOSKI]
    assert multi(owned(materials)["x-mpass-school-info"]) == [
        "04647;Äänekosken testilukio", "1.2.246.562.10.00000000005;Äänekosken testilukio"]


# --------------------------------------------------------------------------
# E-mail only for staff
# --------------------------------------------------------------------------


def test_the_web_shop_gets_e_mail_for_a_staff_member_but_never_for_a_learner(guard, upstream):
    learner = fixture("learner-1.4.json")
    learner["email"] = "aino.savynen@oppilas.example.fi"
    assert guard.send("/checkout", bearer(token(learner)), host=SHOP_HOST).status == 200
    got = owned(upstream.only())
    assert "x-mpass-email" not in got
    assert "email" not in payload(got["x-shop-claims"])
    assert all(learner["email"] not in v for v in got.values())

    upstream.clear()
    staff = fixture("staff-with-email-proposed.json")
    assert guard.send("/checkout", bearer(token(staff)), host=SHOP_HOST).status == 200
    got = owned(upstream.only())
    assert single(got["x-mpass-email"]) == "maarit.nieminen@testikunta.example.fi"
    assert single(got["x-shop-first-name"]) == "Maarit"


def test_the_payload_header_carries_only_the_released_claims(guard, upstream):
    staff = fixture("staff-with-email-proposed.json")
    assert guard.send("/checkout", bearer(token(staff)), host=SHOP_HOST).status == 200
    got = owned(upstream.only())
    assert payload(got["x-shop-claims"]) == {
        "given_name": "Maarit",
        "urn:mpass.id:uid": staff["urn:mpass.id:uid"],
        "email": staff["email"],
    }


# --------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------


def test_a_user_from_a_non_permitted_organisation_is_refused(guard, upstream):
    learner = fixture("learner-1.4.json")
    learner["urn:mpass.id:role"] = [
        "1.2.246.562.10.00000000009;12345;9F;Oppilas;1;1.2.246.562.10.00000000008;"]
    resp = guard.send("/checkout", bearer(token(learner)), host=SHOP_HOST)
    assert resp.status == 403
    assert resp.json() == {"error": "contract_violation", "reason": "organisation_not_permitted"}
    assert upstream.received() == []


def test_a_test_learner_number_is_refused_unless_the_contract_allows_it(guard, upstream):
    t = token(fixture("test-learner-number.json"))
    resp = guard.send("/checkout", bearer(t), host=SHOP_HOST)
    assert resp.status == 403
    assert resp.json() == {"error": "contract_violation", "reason": "test_identity_not_allowed"}
    assert upstream.received() == []

    resp = guard.send("/pilot/start", bearer(t))
    assert resp.status == 200, resp.body
    got = owned(upstream.only())
    assert single(got["x-mpass-given-name"]) == "Testi1"


# --------------------------------------------------------------------------
# Legacy 2019 names
# --------------------------------------------------------------------------


def test_a_legacy_token_is_released_under_current_names_and_mpass_cid_never_arrives(guard, upstream):
    legacy = fixture("legacy-2019-names.json")
    t = token(legacy)
    resp = guard.send("/lms/course/7", bearer(t))
    assert resp.status == 200, resp.body
    rec = upstream.only()
    assert_clean(rec, t)
    got = owned(rec)
    assert set(got) == {"x-mpass-uid", "x-mpass-learner-id", "x-mpass-role", "x-mpass-school",
                        "x-mpass-group"}
    assert single(got["x-mpass-uid"]) == legacy["mpass_uid"]
    assert single(got["x-mpass-learner-id"]) == legacy["learnerId"]
    assert multi(got["x-mpass-role"]) == ["Demojärvi;00000;9A;Oppilas"]
    assert single(got["x-mpass-school"]) == "Demojärven testikoulu"
    cid = legacy["mpass_cid"]
    for name, value in rec.headers:
        assert cid not in value and cid.split("@")[0] not in value, f"mpass_cid reached {name}"
        assert "cid" not in name.lower(), name
    assert cid not in rec.path


# --------------------------------------------------------------------------
# Encoding: exact round trip, no control characters
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Äänekoski", "Öhman", "Pekka-Äijö"])
def test_finnish_names_read_back_exactly_from_single_and_multi_valued_headers(guard, upstream, name):
    claims = fixture("teacher-two-providers-1.4.json")
    claims["family_name"] = name
    claims["urn:mpass.id:schoolInfo"] = [f"04647;{name}", f"1.2.246.562.10.00000000005;{name}"]
    assert guard.send("/books", bearer(token(claims)), host=MATERIALS_HOST).status == 200
    got = owned(upstream.only())
    assert single(got["x-mpass-family-name"]) == name
    assert multi(got["x-mpass-school-info"]) == claims["urn:mpass.id:schoolInfo"]


def test_cr_lf_and_nul_in_a_claim_never_reach_the_upstream(guard, upstream):
    claims = fixture("staff-with-email-proposed.json")
    evil = "Maarit\r\nX-Injected: yes\0\r\n\r\nGET / HTTP/1.1"
    claims["given_name"] = evil
    t = token(claims)
    assert guard.send("/checkout", bearer(t), host=SHOP_HOST).status == 200
    rec = upstream.only()
    assert_clean(rec, t)
    assert rec.values("x-injected") == []
    got = owned(rec)
    assert single(got["x-shop-first-name"]) == evil
    assert payload(got["x-shop-claims"])["given_name"] == evil


def test_spoofed_contract_headers_are_replaced_not_appended(guard, upstream):
    staff = fixture("staff-with-email-proposed.json")
    spoof = [("x-mpass-email", "boss@evil.example"), ("X_Shop_First_Name", "Eve"),
             ("x-shop-claims", "e30"), ("x-mpass-learner-id", "1.2.246.562.24.00000000000")]
    assert guard.send("/checkout", bearer(token(staff)) + spoof, host=SHOP_HOST).status == 200
    rec = upstream.only()
    got = owned(rec)
    assert set(got) == {"x-mpass-uid", "x-shop-first-name", "x-mpass-email", "x-shop-claims"}
    assert single(got["x-mpass-email"]) == staff["email"]
    assert single(got["x-shop-first-name"]) == "Maarit"
    assert not any("evil" in v or v == "Eve" for _, v in rec.headers)


# --------------------------------------------------------------------------
# Audit line and counters
# --------------------------------------------------------------------------


AUDIT_START = '{"type":"mpass_guard.audit"'
SHOP_STATS = "wasmcustom.mpass_guard."


def audit_lines(envoy: Envoy) -> list[dict]:
    """Every audit record in Envoy's log. A batch is one log message whose
    first record follows Envoy's prefix and whose others are lines of their own."""
    out = []
    for line in envoy.log().splitlines():
        i = line.find(AUDIT_START)
        if i >= 0:
            assert i == 0 or "wasm log" in line[:i], f"audit record inside another line: {line!r}"
            out.append(json.loads(line[i:]))
    return out


def wait_for_audit(envoy: Envoy, count: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = audit_lines(envoy)
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_each_decision_is_one_audit_line_with_names_only_and_a_subject_pseudonym(guard, upstream):
    before = len(audit_lines(guard))
    staff = fixture("staff-with-email-proposed.json")
    learner = fixture("learner-1.4.json")
    learner["urn:mpass.id:role"] = ["1.2.246.562.10.00000000009;12345;9F;Oppilas;1;x;"]
    assert guard.send("/checkout", bearer(token(staff)), host=SHOP_HOST).status == 200
    assert guard.send("/checkout", bearer(token(learner)), host=SHOP_HOST).status == 403
    lines = wait_for_audit(guard, before + 2)[before:]
    assert len(lines) == 2, guard.log_tail()
    allow, deny = lines

    for line in lines:
        assert {"provider", "decision", "reason", "released", "withheld",
                "contract_version", "subject", "status"} <= set(line)
        assert line["provider"] == "shop"
        assert re.fullmatch(r"[0-9a-f]{16}", line["contract_version"])
        assert re.fullmatch(r"[0-9a-f]{32}", line["subject"] or ""), line
    assert allow["decision"] == "allow" and allow["reason"] == "ok" and allow["status"] == 200
    assert allow["released"] == ["given_name", "urn:mpass.id:uid", "email"]
    assert "urn:mpass.id:role" in allow["withheld"] and "email_verified" in allow["withheld"]
    assert allow["purposes"] == {"email": "payment receipts"}
    assert deny["decision"] == "deny" and deny["status"] == 403
    assert deny["reason"] == "organisation_not_permitted"
    assert deny["released"] == []
    assert allow["subject"] != deny["subject"]

    raw = [l for l in guard.log().splitlines() if "mpass_guard.audit" in l][before:]
    for line, claims in zip(raw, (staff, learner)):
        for value in claim_strings(claims):
            if len(value) >= 4:
                assert value not in line, f"audit line carries {value!r}"


def test_a_burst_of_requests_gives_one_complete_audit_record_per_decision(guard, upstream):
    before = len(audit_lines(guard))
    staff = token(fixture("staff-with-email-proposed.json"))
    statuses = [guard.send("/checkout", bearer(staff), host=SHOP_HOST).status for _ in range(25)]
    statuses += [guard.send("/checkout", [], host=SHOP_HOST).status for _ in range(5)]
    assert statuses == [200] * 25 + [401] * 5
    lines = wait_for_audit(guard, before + 30)[before:]
    assert [(l["decision"], l["status"]) for l in lines] == [("allow", 200)] * 25 + [("deny", 401)] * 5
    assert all(l["provider"] == "shop" for l in lines), lines[0]


def test_batched_audit_lines_and_counters_arrive_complete_and_in_fewer_log_writes(upstream, tmp_path):
    """`audit.flush_interval` gathers lines and counts in the VM: every
    record still arrives, each as one JSON object on a line of its own, and
    the counters add up."""
    config = contracts_config()
    config["audit"]["flush_interval"] = "1s"
    with Envoy(upstream.port, config, env={PSEUDONYM_ENV: PSEUDONYM_KEY},
               routes=routes(), workdir=tmp_path) as envoy:
        staff = token(fixture("staff-with-email-proposed.json"))
        for _ in range(10):
            assert envoy.send("/checkout", bearer(staff), host=SHOP_HOST).status == 200
        lines = wait_for_audit(envoy, 10)
        assert len(lines) == 10
        assert all(l["decision"] == "allow" and l["provider"] == "shop" for l in lines)
        # Ten requests well inside one interval: fewer log messages than records.
        messages = [l for l in envoy.log().splitlines() if "wasm log" in l and AUDIT_START in l]
        assert 1 <= len(messages) < 10, messages
        # The counters arrive on the VMs' ticks (several workers' VMs each flush their own).
        name = SHOP_STATS + "decisions.stat_prefix=main.provider=shop.outcome=allow.reason=ok"
        deadline = time.monotonic() + 10
        while envoy.counter(name) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert envoy.counter(name) == 10
        assert envoy.counter(SHOP_STATS + "released.stat_prefix=main.provider=shop.attribute=email") == 10


def test_the_counters_appear_in_stats_and_prometheus(guard, upstream):
    staff = fixture("staff-with-email-proposed.json")
    learner = fixture("learner-1.4.json")
    assert guard.send("/checkout", bearer(token(staff)), host=SHOP_HOST).status == 200
    assert guard.send("/checkout", bearer(token(learner)), host=SHOP_HOST).status == 200
    bad = dict(learner, **{"urn:mpass.id:role": ["1.2.246.562.10.00000000009;12345;9F;Oppilas;1;x;"]})
    assert guard.send("/checkout", bearer(token(bad)), host=SHOP_HOST).status == 403

    dims = "stat_prefix=main.provider=shop"
    expected = {f"{SHOP_STATS}decisions.{dims}.outcome=allow.reason=ok": 2,
                f"{SHOP_STATS}released.{dims}.attribute=email": 1,
                f"{SHOP_STATS}withheld.{dims}.attribute=class_level": 1,
                f"{SHOP_STATS}decisions.{dims}.outcome=deny.reason=organisation_not_permitted": 1}
    # The VMs hand their counters to Envoy on their tick: wait for them.
    deadline = time.monotonic() + 10
    stats = guard.stats()
    while any(int(stats.get(n, "0")) < v for n, v in expected.items()) and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = guard.stats()
    for name, least in expected.items():
        assert int(stats.get(name, "0")) >= least, name

    # Without stats_tags Envoy's Prometheus output keeps the dimensions in the
    # name (test_prometheus.py checks the labelled form with the shipped tags).
    _, prom = guard._admin_get("/stats/prometheus")
    for name in ("decisions_stat_prefix_main_provider_shop_outcome_allow_reason_ok",
                 "released_stat_prefix_main_provider_shop_attribute_email",
                 "decisions_stat_prefix_main_provider_shop_outcome_deny_reason_organisation_not_permitted"):
        pattern = rf"^mpass_guard_{name}(\{{\}})?\s+[1-9]\d*$"
        assert re.search(pattern, prom, re.M), f"{name} not in /stats/prometheus"
