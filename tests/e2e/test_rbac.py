"""Envoy's native RBAC filter, placed after mpass-guard, authorises on the decision record.

The contract of ``admin-app`` permits two education providers (Mansikkala and
Äänekoski) and releases ``uid`` and ``role``. The RBAC policy, a CEL condition
on ``filter_state['wasm.mpass_guard'].attributes.org_roles`` as in
docs/deploying.md, lets ``/admin`` through only for role code 2 (teacher) or
6 (principal) *in Mansikkala*; every other path is open to whoever
mpass-guard let through. The tests assert what the upstream received.
"""

from __future__ import annotations

import json

import pytest

import harness
from conftest import ISS_MAIN, issuer
from harness import REPO, Envoy, bootstrap, jwks, key_path, mint, wasm_filter

MANSIKKALA = "1.2.246.562.10.00000000001"
AANEKOSKI = "1.2.246.562.10.00000000004"
HOST = "admin.example.fi"
ADMIN_PAIRS = [f"{MANSIKKALA}:2", f"{MANSIKKALA}:6"]


def plugin_config() -> dict:
    return {
        "issuers": [issuer(ISS_MAIN, jwks((key_path("rsa-a.pem"), "rsa-a", "RS256")), ["RS256"])],
        "providers": {
            "admin-app": {
                "audiences": ["admin-app"],
                "match": {"authorities": [HOST]},
                "contract": {
                    "organisations": [MANSIKKALA, AANEKOSKI],
                    "release": {"uid": {}, "role": {}},
                },
            },
        },
    }


def record_field(*fields: str) -> dict:
    """``filter_state['wasm.mpass_guard'].<fields...>`` as a parsed CEL expression."""
    expr: dict = {"call_expr": {"function": "_[_]", "args": [
        {"ident_expr": {"name": "filter_state"}},
        {"const_expr": {"string_value": "wasm.mpass_guard"}},
    ]}}
    for field in fields:
        expr = {"select_expr": {"operand": expr, "field": field}}
    return expr


def org_role_in(pairs: list[str]) -> dict:
    """``p1 in org_roles || p2 in org_roles || ...``"""
    tests = [{"call_expr": {"function": "@in", "args": [
        {"const_expr": {"string_value": pair}}, record_field("attributes", "org_roles")]}}
        for pair in pairs]
    expr = tests[0]
    for t in tests[1:]:
        expr = {"call_expr": {"function": "_||_", "args": [expr, t]}}
    return expr


def rbac_filter() -> dict:
    admin = {"url_path": {"path": {"prefix": "/admin"}}}
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {
                "action": "ALLOW",
                "policies": {
                    "admin-teacher-or-principal-of-mansikkala": {
                        "permissions": [admin],
                        "principals": [{"any": True}],
                        "condition": org_role_in(ADMIN_PAIRS),
                    },
                    "everything-else": {
                        "permissions": [{"not_rule": admin}],
                        "principals": [{"any": True}],
                    },
                },
            },
        },
    }


class RbacEnvoy(Envoy):
    def render(self) -> dict:
        return bootstrap(self.upstream_port, self.port, self.admin_port,
                         [wasm_filter(self.plugin_config, self.env), rbac_filter()])


@pytest.fixture(scope="module")
def gate(upstream, tmp_path_factory):
    harness.require_cli()
    with RbacEnvoy(upstream.port, plugin_config(), workdir=tmp_path_factory.mktemp("rbac")) as envoy:
        yield envoy


def claims(*roles: str) -> dict:
    teacher = json.loads((REPO / "tests" / "fixtures" / "claims" / "teacher-two-providers-1.4.json").read_text())
    return {"iss": ISS_MAIN, "aud": "admin-app", "sub": teacher["sub"],
            "urn:mpass.id:uid": teacher["urn:mpass.id:uid"], "urn:mpass.id:role": list(roles)}


def role(org: str, title: str, code: int) -> str:
    return f"{org};30076;7A;{title};{code};1.2.246.562.10.00000000002;"


def as_released(role_value: str) -> str:
    """The role as the upstream receives it: the contract's default `oid` form blanks the TK code."""
    parts = role_value.split(";")
    parts[1] = ""
    return ";".join(parts)


def bearer(c: dict) -> list[tuple[str, str]]:
    return [("Authorization", "Bearer " + mint(key_path("rsa-a.pem"), "RS256", c, kid="rsa-a"))]


def roles_received(rec: harness.Recorded) -> list[str]:
    return json.loads(rec.value("x-mpass-role"))


@pytest.mark.parametrize("title,code", [("Opettaja", 2), ("Rehtori", 6)])
def test_a_teacher_or_principal_of_the_permitted_organisation_reaches_admin(gate, upstream, title, code):
    c = claims(role(MANSIKKALA, title, code))
    r = gate.send("/admin/users", bearer(c), host=HOST)
    assert r.status == 200, r.body
    rec = upstream.only()
    assert rec.path == "/admin/users"
    assert rec.value("x-mpass-uid") == c["urn:mpass.id:uid"]
    assert roles_received(rec) == [as_released(role(MANSIKKALA, title, code))]
    assert rec.value("authorization") is None


def test_a_learner_is_let_through_by_mpass_guard_but_refused_admin_by_rbac(gate, upstream):
    c = claims(role(MANSIKKALA, "Oppilas", 1))
    r = gate.send("/admin/users", bearer(c), host=HOST)
    assert r.status == 403
    assert b"RBAC" in r.body
    assert upstream.received() == []
    # Elsewhere the same learner passes, with the released role.
    assert gate.send("/lessons", bearer(c), host=HOST).status == 200
    assert roles_received(upstream.only()) == [as_released(role(MANSIKKALA, "Oppilas", 1))]


def test_a_teacher_of_another_permitted_organisation_is_refused_admin(gate, upstream):
    c = claims(role(AANEKOSKI, "Opettaja", 2), role(MANSIKKALA, "Oppilas", 1))
    assert gate.send("/admin/users", bearer(c), host=HOST).status == 403
    assert upstream.received() == []


def test_without_a_token_mpass_guard_answers_and_nothing_reaches_the_upstream(gate, upstream):
    r = gate.send("/admin/users", host=HOST)
    assert r.status == 401
    assert r.json()["error"] == "missing_token"
    assert upstream.received() == []


def test_a_request_no_provider_claims_has_no_roles_and_is_refused_admin(gate, upstream):
    # Unmatched requests pass mpass-guard stripped; the record has no roles.
    assert gate.send("/admin/users", host="other.example").status == 403
    assert upstream.received() == []
