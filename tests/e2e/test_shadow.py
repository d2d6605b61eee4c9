"""A shadow contract in the real Envoy: never enforced, always reported.

The provider ``shop`` enforces a contract releasing ``uid`` and the given
name to one organisation; its ``shadow_contract`` would release the family
name instead of the given name and permit a second organisation. The
upstream must receive exactly what the enforced contract releases (and a
user of the second organisation must still be refused), while the access
log's decision record and the counters name what the shadow would change:
attribute names and decisions only, never a claim value.
"""

from __future__ import annotations

import json
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
AANEKOSKI = "1.2.246.562.10.00000000004"


def plugin_config() -> dict:
    return {
        "issuers": [issuer(ISS_MAIN, jwks((key_path("rsa-a.pem"), "rsa-a", "RS256")), ["RS256"])],
        "header_prefix": "x-mpass-",
        "providers": {
            "shop": {
                "audiences": ["studeo-webshop"],
                "match": {"authorities": [SHOP_HOST]},
                "contract": {
                    "organisations": [MANSIKKALA],
                    "release": {"uid": {}, "given_name": {}},
                },
                "shadow_contract": {
                    "organisations": [MANSIKKALA, AANEKOSKI],
                    "release": {"uid": {}, "family_name": {}},
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


class ShadowEnvoy(Envoy):
    """Envoy with the shipped JSON access log written to a file."""

    def __init__(self, upstream_port: int, workdir: Path) -> None:
        super().__init__(upstream_port, plugin_config(), workdir=workdir, log_level="warn")
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
def shadowed(upstream, tmp_path_factory):
    harness.require_cli()
    with ShadowEnvoy(upstream.port, tmp_path_factory.mktemp("shadow")) as envoy:
        yield envoy


def fixture(name: str) -> dict:
    claims = json.loads((FIXTURES / name).read_text())
    return {k: v for k, v in claims.items() if not k.startswith("_")}


def token(claims: dict) -> str:
    return mint(key_path("rsa-a.pem"), "RS256", claims, kid="rsa-a")


def test_the_upstream_receives_only_the_enforced_release_while_the_log_shows_the_shadow(shadowed, upstream):
    learner = fixture("learner-1.4.json")
    # A user of the second organisation only: the shadow would permit them.
    other = dict(learner)
    other["urn:mpass.id:role"] = [f"{AANEKOSKI};04647;9A;Oppilas;1;1.2.246.562.10.00000000005;"]
    other["urn:mpass.id:educationProviderInfo"] = [f"{AANEKOSKI};Äänekosken testikaupunki"]
    other["urn:mpass.id:originalIssuer"] = AANEKOSKI
    t_learner, t_other = token(learner), token(other)

    # The same token twice: the second answer comes from the token cache and
    # must carry the same shadow comparison.
    for rid in ("rid-1", "rid-2"):
        r = shadowed.send("/cart", [("Authorization", f"Bearer {t_learner}"), ("x-request-id", rid)],
                          host=SHOP_HOST)
        assert r.status == 200
    r = shadowed.send("/cart", [("Authorization", f"Bearer {t_other}"), ("x-request-id", "rid-other")],
                      host=SHOP_HOST)
    assert r.status == 403

    # The upstream: the enforced release, nothing of the shadow's.
    got = upstream.received()
    assert len(got) == 2, [g.names() for g in got]
    for rec in got:
        owned = sorted(n for n in rec.names() if n.startswith("x-mpass-"))
        assert owned == ["x-mpass-given-name", "x-mpass-uid"], owned
        assert rec.value("x-mpass-given-name") == "Aino"
        assert rec.value("x-mpass-family-name") is None

    records = {r["request_id"]: r["mpass_guard"]["value"] for r in shadowed.records(3)}
    for rid in ("rid-1", "rid-2"):
        rec = records[rid]
        assert (rec["decision"], rec["reason"]) == ("allow", "ok")
        assert sorted(rec["released"]) == ["given_name", "urn:mpass.id:uid"]
        s = rec["shadow"]
        assert (s["decision"], s["reason"]) == ("allow", "ok"), s
        assert s["added"] == ["family_name"] and s["removed"] == ["given_name"], s
        assert s["changes"] == ["added", "removed"], s
        assert s["contract_version"] != rec["contract_version"]
    denied = records["rid-other"]
    assert (denied["decision"], denied["reason"], denied["status"]) == (
        "deny", "organisation_not_permitted", 403)
    assert denied["shadow"]["decision"] == "allow"
    assert denied["shadow"]["changes"][0] == "would_allow"

    stats = shadowed.stats()
    prefix = "wasmcustom.mpass_guard."
    assert int(stats[prefix + "shadow_evaluations.stat_prefix=main.provider=shop"]) == 3
    assert int(stats[prefix + "shadow_differences.stat_prefix=main.provider=shop.change=added"]) == 3
    assert int(stats[prefix + "shadow_differences.stat_prefix=main.provider=shop.change=removed"]) == 2
    assert int(stats[prefix + "shadow_differences.stat_prefix=main.provider=shop.change=would_allow"]) == 1
    assert int(stats[prefix + "token_cache.stat_prefix=main.result=hit"]) >= 1

    # Names only: no claim value in the access log or Envoy's log.
    text = shadowed.access_log.read_text() + shadowed.log()
    for value in ("Aino", "Sävynen", learner["urn:mpass.id:uid"], t_learner):
        assert value not in text
