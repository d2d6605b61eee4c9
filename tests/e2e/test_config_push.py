"""Configuration pushed at runtime, judged by what the UPSTREAM received.

Envoy gets the mpass-guard filter through extension config discovery (ECDS)
from a filesystem xDS path: the HTTP filter entry names only the discovery
source, and the Wasm filter's configuration (with the plugin configuration
inside) is a ``TypedExtensionConfig`` in a watched file, replaced atomically
(written next to it, then renamed over it) the way a platform team's
config pusher would.

- a new contract applies to the next request, Envoy is never restarted;
- a broken plugin configuration is refused by ``on_configure``: Envoy
  rejects the pushed resource (its ``config_fail`` counter grows), the log
  says why, and the previous configuration keeps serving.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

import harness
from conftest import ISS_MAIN, issuer
from harness import Envoy, jwks, key_path, mint

FIXTURES = harness.REPO / "tests" / "fixtures" / "claims"
MANSIKKALA = "1.2.246.562.10.00000000001"
FILTER = "mpass-guard"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def plugin_config(release: dict[str, Any]) -> dict[str, Any]:
    return {
        "issuers": [issuer(ISS_MAIN, jwks((key_path("rsa-a.pem"), "rsa-a", "RS256")), ["RS256"])],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "header_prefix": "x-mpass-",
        "providers": {
            "shop": {
                "audiences": ["studeo-webshop"],
                "match": {"path_prefixes": ["/"]},
                "contract": {"organisations": [MANSIKKALA], "release": release},
            },
        },
    }


class Pusher:
    """Writes the filter's ECDS resource into a watched directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "mpass-guard-ecds.json"
        self.version = 0

    def push(self, plugin: dict[str, Any] | str) -> None:
        self.version += 1
        typed_config = harness.wasm_filter(plugin)["typed_config"]
        response = {
            "version_info": str(self.version),
            "resources": [{
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": FILTER,
                "typed_config": typed_config,
            }],
        }
        tmp = self.directory / f".push-{self.version}.tmp"
        tmp.write_text(json.dumps(response))
        os.rename(tmp, self.path)  # atomic: Envoy never reads a half-written file


def bootstrap(envoy: Envoy, pusher: Pusher) -> dict:
    discovered = {
        "name": FILTER,
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": str(pusher.path),
                    "watched_directory": {"path": str(pusher.directory)},
                },
                "resource_api_version": "V3",
            },
            "type_urls": [WASM_TYPE],
        },
    }
    config = harness.bootstrap(envoy.upstream_port, envoy.port, envoy.admin_port, [discovered])
    # xDS subscriptions need a node identity.
    config["node"] = {"id": "mpass-guard-e2e", "cluster": "mpass-guard-e2e"}
    return config


def ecds_counter(envoy: Envoy, suffix: str) -> int:
    """The ECDS counter of this filter (``extension_config_discovery.*.mpass-guard.<suffix>``)."""
    found = [int(v) for k, v in envoy.stats().items()
             if k.startswith("extension_config_discovery.") and k.endswith(f"{FILTER}.{suffix}")]
    assert len(found) == 1, f"no single ECDS {suffix} counter for {FILTER}"
    return found[0]


def wait_for(condition, what: str, envoy: Envoy, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen\n{envoy.log_tail()}")


@pytest.fixture(scope="module")
def pushed(upstream, tmp_path_factory):
    harness.require_cli()
    workdir = tmp_path_factory.mktemp("config-push")
    watched = workdir / "xds"
    watched.mkdir()
    pusher = Pusher(watched)
    pusher.push(plugin_config({"uid": {}}))
    envoy = Envoy(upstream.port, {}, workdir=workdir)
    envoy._config = bootstrap(envoy, pusher)
    envoy.start()
    yield envoy, pusher
    envoy.stop()


def learner_token() -> str:
    claims = json.loads((FIXTURES / "learner-1.4.json").read_text())
    claims = {k: v for k, v in claims.items() if not k.startswith("_")}
    return mint(key_path("rsa-a.pem"), "RS256", claims, kid="rsa-a")


def released(envoy: Envoy, upstream, token: str) -> set[str]:
    upstream.clear()
    r = envoy.send("/checkout", [("Authorization", f"Bearer {token}")])
    assert r.status == 200, r.body
    rec = upstream.only()
    assert token not in json.dumps(rec.headers), "the token reached the upstream"
    return {n for n in rec.names_normalised() if n.startswith("x-mpass-")}


def push_and_wait(envoy: Envoy, pusher: Pusher, plugin: dict[str, Any] | str, counter: str) -> None:
    before = ecds_counter(envoy, counter)
    pid = envoy.proc.pid if envoy.proc else None
    pusher.push(plugin)
    wait_for(lambda: ecds_counter(envoy, counter) > before, f"ECDS {counter}", envoy)
    assert envoy.proc is not None and envoy.proc.pid == pid and envoy.serving(), \
        "Envoy was restarted or stopped"


def test_a_pushed_contract_applies_to_the_next_request_without_restarting_envoy(pushed, upstream):
    envoy, pusher = pushed
    token = learner_token()
    assert released(envoy, upstream, token) == {"x-mpass-uid"}

    push_and_wait(envoy, pusher, plugin_config({"uid": {}, "given_name": {}}), "config_reload")
    assert released(envoy, upstream, token) == {"x-mpass-uid", "x-mpass-given-name"}

    push_and_wait(envoy, pusher, plugin_config({"given_name": {}}), "config_reload")
    assert released(envoy, upstream, token) == {"x-mpass-given-name"}


@pytest.mark.parametrize("broken, why", [
    (plugin_config({"uid": {}, "no_such_attribute": {}}), "no_such_attribute"),
    ("{not json", "key must be a string"),
])
def test_a_broken_push_is_refused_and_the_previous_configuration_keeps_serving(
        pushed, upstream, broken, why):
    envoy, pusher = pushed
    token = learner_token()
    push_and_wait(envoy, pusher, plugin_config({"uid": {}, "family_name": {}}), "config_reload")
    good = released(envoy, upstream, token)
    assert good == {"x-mpass-uid", "x-mpass-family-name"}
    rejected_lines = envoy.log().count("mpass-guard: configuration rejected")

    push_and_wait(envoy, pusher, broken, "config_fail")
    log = envoy.log()
    assert log.count("mpass-guard: configuration rejected") > rejected_lines, envoy.log_tail()
    refusal = log.split("mpass-guard: configuration rejected", rejected_lines + 1)[-1]
    assert why in refusal, refusal
    assert "config update rejected" in refusal, refusal  # Envoy's own ECDS log line
    # The previous contract still decides, on every following request.
    for _ in range(3):
        assert released(envoy, upstream, token) == good
