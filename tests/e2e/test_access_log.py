"""The audit trail in Envoy's JSON access log, at the production log level.

Envoy runs at ``--log-level warn`` with the access log format shipped in
envoy/envoy.yaml (written to a file here). Each decision must give exactly
one access-log record whose ``mpass_guard`` field is the decision record the
filter wrote to filter state (provider, decision, reason, released names,
contract version), next to Envoy's request id and a millisecond timestamp;
and neither the access log nor Envoy's own log may hold a token or a claim
value.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

import harness
from conftest import ISS_MAIN, issuer
from harness import REPO, Envoy, bootstrap, jwks, key_path, mint, wasm_filter

FIXTURES = REPO / "tests" / "fixtures" / "claims"
SHOP_HOST = "shop.example.fi"
MANSIKKALA = "1.2.246.562.10.00000000001"
PSEUDONYM_ENV = "MPASS_GUARD_AUDIT_KEY"
PSEUDONYM_KEY = "e2e-access-log-pseudonym-key-0123456789"


def plugin_config() -> dict:
    return {
        "issuers": [issuer(ISS_MAIN, jwks((key_path("rsa-a.pem"), "rsa-a", "RS256")), ["RS256"])],
        "audit": {"pseudonym_key_env": PSEUDONYM_ENV},
        "providers": {
            "shop": {
                "audiences": ["studeo-webshop"],
                "match": {"authorities": [SHOP_HOST]},
                "contract": {
                    "organisations": [MANSIKKALA],
                    "required": ["uid"],
                    "release": {
                        "uid": {},
                        "given_name": {},
                        "email": {"purpose": "payment receipts", "only_roles": [2, 3, 4, 5, 6]},
                    },
                },
            },
        },
    }


def shipped_json_format() -> dict:
    """The json_format of the access log in envoy/envoy.yaml."""
    doc = yaml.safe_load((REPO / "envoy" / "envoy.yaml").read_text())
    for listener in doc["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                for log in f["typed_config"].get("access_log", []):
                    return log["typed_config"]["log_format"]["json_format"]
    raise AssertionError("envoy/envoy.yaml has no access log")


class AccessLogEnvoy(Envoy):
    """Envoy at warn level with the shipped JSON access log written to a file."""

    def __init__(self, upstream_port: int, workdir: Path) -> None:
        super().__init__(upstream_port, plugin_config(), env={PSEUDONYM_ENV: PSEUDONYM_KEY},
                         workdir=workdir, log_level="warn")
        self.access_log = self.workdir / "access.log"

    def render(self) -> dict:
        config = bootstrap(self.upstream_port, self.port, self.admin_port,
                           [wasm_filter(self.plugin_config, self.env)])
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["access_log"] = [{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": str(self.access_log),
                "log_format": {"json_format": shipped_json_format()},
            },
        }]
        return config

    def records(self, count: int, timeout: float = 10.0) -> list[dict]:
        """The access log's records once there are at least ``count`` (Envoy flushes every second)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.access_log.read_text() if self.access_log.exists() else ""
            lines = [json.loads(line) for line in text.splitlines() if line.strip()]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.1)


@pytest.fixture(scope="module")
def logged(upstream, tmp_path_factory):
    harness.require_cli()
    with AccessLogEnvoy(upstream.port, tmp_path_factory.mktemp("access-log")) as envoy:
        yield envoy


def fixture(name: str) -> dict:
    claims = json.loads((FIXTURES / name).read_text())
    return {k: v for k, v in claims.items() if not k.startswith("_")}


def token(claims: dict) -> str:
    return mint(key_path("rsa-a.pem"), "RS256", claims, kid="rsa-a")


def claim_strings(claims: dict) -> set[str]:
    """Every string value in the claims long enough to be recognisable."""
    out: set[str] = set()

    def walk(v):
        if isinstance(v, str) and len(v) >= 5:
            out.add(v)
            out.update(p for p in v.split(";") if len(p) >= 5)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk({k: v for k, v in claims.items() if k not in ("iss", "aud", "azp")})
    return out


MS_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_each_decision_is_one_complete_access_log_record_at_warn_level(logged, upstream):
    staff_claims = fixture("staff-with-email-proposed.json")
    learner_claims = fixture("learner-1.4.json")
    staff, learner = token(staff_claims), token(learner_claims)
    sent = [
        ("staff", [("Authorization", f"Bearer {staff}"), ("x-request-id", "rid-staff")], 200),
        ("learner", [("Authorization", f"Bearer {learner}"), ("x-request-id", "rid-learner")], 200),
        ("missing", [("x-request-id", "rid-missing")], 401),
        ("expired", [("Authorization", "Bearer " + mint(key_path("rsa-a.pem"), "RS256", learner_claims,
                                                          kid="rsa-a", exp_in=-3600)),
                     ("x-request-id", "rid-expired")], 401),
    ]
    for _, headers, status in sent:
        assert logged.send("/checkout", headers, host=SHOP_HOST).status == status
    assert logged.send("/elsewhere", [("x-request-id", "rid-unmatched")], host="other.example").status == 200

    records = logged.records(len(sent) + 1)
    by_id = {r["request_id"]: r for r in records}
    assert len(records) == len(by_id) == len(sent) + 1, records
    for r in records:
        assert MS_TIME.match(r["time"]), r["time"]
        assert r["mpass_guard"]["@type"] == "type.googleapis.com/google.protobuf.Struct", r

    staff_rec = by_id["rid-staff"]["mpass_guard"]["value"]
    assert staff_rec["provider"] == "shop"
    assert staff_rec["decision"] == "allow" and staff_rec["reason"] == "ok"
    assert staff_rec["released"] == ["given_name", "urn:mpass.id:uid", "email"]
    assert re.fullmatch(r"[0-9a-f]{16}", staff_rec["contract_version"]), staff_rec
    assert re.fullmatch(r"[0-9a-f]{32}", staff_rec["subject"]), staff_rec
    assert staff_rec["issuer"] == ISS_MAIN
    assert staff_rec["kid"] == "rsa-a" and staff_rec["alg"] == "RS256"

    learner_rec = by_id["rid-learner"]["mpass_guard"]["value"]
    assert learner_rec["decision"] == "allow"
    assert "email" not in learner_rec["released"]
    assert learner_rec["contract_version"] == staff_rec["contract_version"]
    assert learner_rec["subject"] != staff_rec["subject"]

    missing = by_id["rid-missing"]["mpass_guard"]["value"]
    assert (missing["provider"], missing["decision"], missing["reason"], missing["status"]) == (
        "shop", "deny", "missing_token", 401)
    assert missing["released"] == []
    expired = by_id["rid-expired"]["mpass_guard"]["value"]
    assert (expired["decision"], expired["reason"], expired["status"]) == ("deny", "expired", 401)
    assert expired["contract_version"] == staff_rec["contract_version"]

    unmatched = by_id["rid-unmatched"]["mpass_guard"]["value"]
    assert unmatched["decision"] == "unmatched" and unmatched["provider"] is None

    # No token and no claim value anywhere: not in the access log, not in Envoy's log.
    secrets = claim_strings(staff_claims) | claim_strings(learner_claims)
    secrets |= {staff, learner} | {part for t in (staff, learner) for part in t.split(".")}
    texts = {"access log": logged.access_log.read_text(), "envoy log": logged.log()}
    for where, text in texts.items():
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, f"{where} holds claim values or tokens: {leaked[:5]}"
    # At warn level and without audit.log, the application log has no audit lines.
    assert '"type":"mpass_guard.audit"' not in logged.log()
