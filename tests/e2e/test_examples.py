"""The shipped deployment examples, checked the way an operator would use them.

- every Envoy YAML in envoy/ passes the pinned Envoy's ``--mode validate`` with
  no secret in the environment, and envoy/envoy.yaml, run for real at
  ``--log-level warn``, writes one JSON access-log line per request;
- the Istio files are validated against Istio's published CRD schemas (and
  core Kubernetes kinds against Kubernetes' schemas) by
  tests/istio-schemas/validate.mjs, a deliberately wrong document fails, and
  what the schemas cannot see (they prune unknown fields rather than refuse
  them) is checked here: traffic selection, fail-closed settings, digest
  pinning, the Secret-to-environment chain, route names and the issuer
  cluster.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

import harness

ENVOY_DIR = harness.ENVOY_DIR
SCHEMA_CHECK = harness.REPO / "tests" / "istio-schemas"
ISTIO_FILES = sorted(ENVOY_DIR.glob("istio-*.yaml"))
ENVOY_FILES = sorted(p for p in ENVOY_DIR.glob("*.yaml") if p not in ISTIO_FILES)
SECRET_ENV = "STUDEO_CLIENT_SECRET"
DIGEST_URL = re.compile(r"^oci://[^@\s]+@sha256:(\.\.\.|[0-9a-f]{64})$")
MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# WasmPlugin spec fields in Istio's API reference (extensions.istio.io/v1alpha1).
WASMPLUGIN_FIELDS = {
    "selector", "targetRef", "targetRefs", "url", "sha256", "imagePullPolicy", "imagePullSecret",
    "verificationKey", "pluginConfig", "pluginName", "phase", "priority", "failStrategy", "vmConfig",
    "match", "type",
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def the_one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def wasm_config(bootstrap: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in hcm(bootstrap)["http_filters"]
                if f["name"] == "envoy.filters.http.wasm")["typed_config"]["config"]


def hcm(bootstrap: dict[str, Any]) -> dict[str, Any]:
    return bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def env_without_secrets() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != SECRET_ENV}


# --------------------------------------------------------------------------
# Envoy
# --------------------------------------------------------------------------


def test_there_are_envoy_and_istio_examples_to_check():
    assert ENVOY_DIR / "envoy.yaml" in ENVOY_FILES
    assert {p.name for p in ISTIO_FILES} >= {"istio-wasmplugin.yaml", "istio-gateway.yaml",
                                             "istio-legacy-app.yaml"}
    assert "legacy-app.yaml" in {p.name for p in ENVOY_FILES}


@pytest.mark.parametrize("config", ENVOY_FILES, ids=lambda p: p.name)
def test_every_envoy_example_validates_as_shipped_with_no_secret_exported(config: Path):
    harness.require_envoy()
    harness.require_wasm()
    r = subprocess.run(
        [str(harness.ENVOY_BIN), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        cwd=harness.REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        env=env_without_secrets(),
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


def test_envoy_yaml_fails_closed_and_reloads_a_failed_vm():
    config = wasm_config(yaml.safe_load((ENVOY_DIR / "envoy.yaml").read_text()))
    assert config["failure_policy"] == "FAIL_RELOAD"
    assert "fail_open" not in config
    assert config["reload_config"]["backoff"]["base_interval"]


def test_envoy_yaml_has_the_connection_manager_settings_security_md_requires():
    manager = hcm(yaml.safe_load((ENVOY_DIR / "envoy.yaml").read_text()))
    assert manager["normalize_path"] is True
    assert manager["merge_slashes"] is True
    assert manager["path_with_escaped_slashes_action"] in ("UNESCAPE_AND_REDIRECT", "REJECT_REQUEST")
    assert manager["common_http_protocol_options"]["headers_with_underscores_action"] in (
        "DROP_HEADER", "REJECT_REQUEST")


def test_the_only_inline_secret_in_envoy_yaml_is_the_marked_demo_value():
    text = (ENVOY_DIR / "envoy.yaml").read_text()
    env = wasm_config(yaml.safe_load(text))["vm_config"]["environment_variables"]
    assert set(env.get("key_values", {})) == {SECRET_ENV}
    assert env["key_values"][SECRET_ENV].startswith("demo-only-")
    assert re.search(rf"^\s*{SECRET_ENV}:.*#\s*DEMO_SECRET\s*$", text, re.M), \
        "scripts/demo.py swaps the line marked DEMO_SECRET"
    assert re.search(rf"^\s*#\s*host_env_keys:\s*\[\"{SECRET_ENV}\"\]", text, re.M), \
        "the production form is shown next to it"


class ShippedEnvoy:
    """envoy/envoy.yaml as shipped, on ephemeral loopback ports, stdout (the
    access log) and stderr (the application log) kept apart."""

    def __init__(self, tmp: Path, upstream_port: int, log_level: str) -> None:
        bootstrap = yaml.safe_load((ENVOY_DIR / "envoy.yaml").read_text())
        self.port = harness._ephemeral_port()
        self.admin = harness._ephemeral_port()
        bootstrap["admin"]["address"]["socket_address"]["port_value"] = self.admin
        bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = self.port
        upstream = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "upstream")
        upstream["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"]["port_value"] = upstream_port
        self.config = tmp / "envoy.yaml"
        self.config.write_text(yaml.safe_dump(bootstrap))
        self.stdout = tmp / "access.log"
        self.stderr = tmp / "envoy.log"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [str(harness.ENVOY_BIN), "-c", str(self.config), "--concurrency", "1",
                 "--disable-hot-restart", "--log-level", log_level],
                cwd=harness.REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=env_without_secrets(), start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"Envoy did not start:\n{self.stderr.read_text()[-3000:]}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/ready", timeout=1) as r:
                return r.read().strip() == b"LIVE"
        except OSError:
            return False

    def records(self, count: int) -> list[dict[str, Any]]:
        """The access log's JSON lines, waiting until `count` are written."""
        deadline = time.monotonic() + 15
        while True:
            lines = [l for l in self.stdout.read_text().splitlines() if l.strip()]
            if len(lines) >= count or time.monotonic() > deadline:
                return [json.loads(l) for l in lines]
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)


def test_envoy_yaml_writes_one_json_access_log_line_per_request_at_log_level_warn(tmp_path):
    harness.require_envoy()
    harness.require_wasm()
    harness.require_cli()
    # A real RS256 token, refused by the shipped placeholder key set: it must
    # not reach the log even though it rides in the query string.
    token = harness.mint(harness.key_path("rsa-a.pem"), "RS256",
                         {"iss": "https://mpass-proxy-test.csc.fi", "aud": "studeo-webshop",
                          "sub": "example"}, kid="rsa-a")
    with harness.Upstream() as upstream:
        envoy = ShippedEnvoy(tmp_path, upstream.port, "warn")
        try:
            sent = [
                ("/public/info?page=2", [("x-request-id", "req-public-1")], 200),
                ("/shop/basket", [("x-request-id", "req-shop-no-token")], 401),
                (f"/shop/basket?id_token={token}", [("x-request-id", "req-shop-query")], 401),
            ]
            for path, headers, status in sent:
                assert harness.send(envoy.port, path, headers).status == status
            records = envoy.records(len(sent))
        finally:
            envoy.stop()
        forwarded = upstream.only()
    assert len(records) == len(sent), records
    for (path, headers, status), record in zip(sent, records):
        assert record["request_id"] == dict(headers)["x-request-id"]
        assert MS_UTC.match(record["time"]), record["time"]
        assert record["method"] == "GET"
        assert record["path"] == path.split("?")[0]
        assert record["status"] == status
        # The decision record, once the filter writes it, is the declared
        # Struct (a BytesValue here means the declare_property step is missing).
        assert "mpass_guard" in record
        assert record["mpass_guard"] is None or \
            record["mpass_guard"]["@type"] == "type.googleapis.com/google.protobuf.Struct"
    assert forwarded.value("x-request-id") == "req-public-1"
    logged = envoy.stdout.read_text()
    assert token not in logged and token.split(".")[2] not in logged
    assert "id_token" not in logged


# --------------------------------------------------------------------------
# Istio: schemas
# --------------------------------------------------------------------------


def schema_check(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (SCHEMA_CHECK / "node_modules" / "@kubernetes-models" / "istio").is_dir():
        raise harness.Missing("node and tests/istio-schemas/node_modules are needed: run `make setup`")
    r = subprocess.run([node, str(SCHEMA_CHECK / "validate.mjs")], input=json.dumps(docs),
                       capture_output=True, text=True, timeout=60, cwd=SCHEMA_CHECK)
    assert r.returncode in (0, 1), r.stderr
    results = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    assert len(results) == len(docs), r.stdout + r.stderr
    assert (r.returncode == 0) == all(x["ok"] for x in results)
    return results


@pytest.mark.parametrize("path", ISTIO_FILES, ids=lambda p: p.name)
def test_every_istio_document_passes_the_published_schemas(path: Path):
    docs = documents(path)
    bad = [x for x in schema_check(docs) if not x["ok"]]
    assert not bad, json.dumps(bad, indent=2)


def test_a_deliberately_wrong_istio_document_fails_the_schema_check():
    docs = documents(ENVOY_DIR / "istio-wasmplugin.yaml")
    plugin = copy.deepcopy(the_one(docs, "WasmPlugin"))
    plugin["spec"]["failStrategy"] = "FAIL_CLOSED"  # Envoy's spelling, not Istio's
    plugin["spec"]["match"] = [{"mode": "SERVERS"}]
    entry = copy.deepcopy(the_one(docs, "ServiceEntry"))
    entry["spec"]["ports"][0]["number"] = "eighty"
    deployment = copy.deepcopy(the_one(docs, "Deployment"))
    del deployment["spec"]["selector"]
    unknown = {"apiVersion": "extensions.istio.io/v1", "kind": "WasmPlugin", "metadata": {"name": "x"}}
    results = schema_check([plugin, entry, deployment, unknown, the_one(docs, "DestinationRule")])
    assert [x["ok"] for x in results] == [False, False, False, False, True]
    errors = [" ".join(x["errors"]) for x in results]
    assert "/spec/failStrategy" in errors[0] and "/spec/match/0/mode" in errors[0]
    assert "/spec/ports/0/number" in errors[1]
    assert "selector" in errors[2]
    assert "no schema" in errors[3]


# --------------------------------------------------------------------------
# Istio: what the schemas do not check
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ISTIO_FILES, ids=lambda p: p.name)
def test_every_wasmplugin_fails_closed_runs_first_and_is_pinned_by_digest(path: Path):
    for plugin in of_kind(documents(path), "WasmPlugin"):
        spec = plugin["spec"]
        assert set(spec) <= WASMPLUGIN_FIELDS, set(spec) - WASMPLUGIN_FIELDS
        assert spec["failStrategy"] == "FAIL_CLOSE"
        assert spec["phase"] == "AUTHN"
        assert spec["imagePullPolicy"] in ("IfNotPresent", "Always")
        assert DIGEST_URL.match(spec["url"]), spec["url"]
        assert spec.get("selector") or spec.get("targetRefs") or spec.get("targetRef")


def test_the_sidecar_plugin_runs_on_inbound_traffic_only():
    spec = the_one(documents(ENVOY_DIR / "istio-wasmplugin.yaml"), "WasmPlugin")["spec"]
    assert spec["match"] == [{"mode": "SERVER"}]
    assert spec["selector"]["matchLabels"]


def test_the_gateway_plugin_selects_the_ingress_gateway():
    docs = documents(ENVOY_DIR / "istio-gateway.yaml")
    spec = the_one(docs, "WasmPlugin")["spec"]
    labels = spec["selector"]["matchLabels"]
    assert labels == {"istio": "ingressgateway"}
    assert the_one(docs, "Gateway")["spec"]["selector"] == labels
    pod_labels = the_one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels.items() <= pod_labels.items()


@pytest.mark.parametrize("path", [p for p in ISTIO_FILES if p.name != "istio-legacy-app.yaml"],
                         ids=lambda p: p.name)
def test_every_host_env_variable_comes_from_a_secret_into_the_proxy_container(path: Path):
    docs = documents(path)
    plugin = the_one(docs, "WasmPlugin")
    wanted = {e["name"] for e in plugin["spec"]["vmConfig"]["env"] if e.get("valueFrom") == "HOST"}
    assert SECRET_ENV in wanted
    provider_envs = {p["hs_secret_env"] for p in plugin["spec"]["pluginConfig"]["providers"].values()
                     if "hs_secret_env" in p}
    assert provider_envs <= wanted
    deployment = the_one(docs, "Deployment")
    assert deployment["metadata"]["namespace"] == plugin["metadata"]["namespace"]
    proxy = next(c for c in deployment["spec"]["template"]["spec"]["containers"]
                 if c["name"] == "istio-proxy")
    from_secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in proxy["env"]
                    if "secretKeyRef" in e.get("valueFrom", {})}
    assert wanted <= set(from_secrets)
    secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in of_kind(docs, "Secret")}
    for name in wanted:
        ref = from_secrets[name]
        secret = secrets[(deployment["metadata"]["namespace"], ref["name"])]
        assert ref["key"] in secret.get("stringData", {}) or ref["key"] in secret.get("data", {})


def test_every_route_name_a_gateway_provider_matches_is_a_virtualservice_route():
    docs = documents(ENVOY_DIR / "istio-gateway.yaml")
    config = the_one(docs, "WasmPlugin")["spec"]["pluginConfig"]
    wanted = {n for p in config["providers"].values() for n in p.get("match", {}).get("route_names", [])}
    assert wanted, "the gateway example shows a route_names provider"
    gateway = the_one(docs, "Gateway")["metadata"]["name"]
    named = {route["name"] for vs in of_kind(docs, "VirtualService") if gateway in vs["spec"]["gateways"]
             for route in vs["spec"]["http"]
             if "name" in route and not any("name" in m for m in route.get("match", []))}
    assert wanted <= named, wanted - named


def test_no_sidecar_provider_matches_by_route_name():
    """On a sidecar the inbound route is Istio's own, so a route_names
    provider would silently never match."""
    config = the_one(documents(ENVOY_DIR / "istio-wasmplugin.yaml"), "WasmPlugin")["spec"]["pluginConfig"]
    assert not [pid for pid, p in config["providers"].items() if "route_names" in p.get("match", {})]


@pytest.mark.parametrize("path", ISTIO_FILES, ids=lambda p: p.name)
def test_every_issuer_cluster_is_a_service_entry_port_with_tls_originated(path: Path):
    docs = documents(path)
    config = the_one(docs, "WasmPlugin")["spec"]["pluginConfig"]
    clusters = [i[src]["cluster"] for i in config["issuers"] for src in ("discovery",) if src in i]
    clusters += [i["remote_jwks"]["http_uri"]["cluster"] for i in config["issuers"] if "remote_jwks" in i]
    assert clusters
    for cluster in clusters:
        m = re.fullmatch(r"outbound\|(\d+)\|\|([a-z0-9.-]+)", cluster)
        assert m, cluster
        port, host = int(m.group(1)), m.group(2)
        entry = next(e for e in of_kind(docs, "ServiceEntry") if host in e["spec"]["hosts"])
        ports = {p["number"]: p for p in entry["spec"]["ports"]}
        assert ports[port]["protocol"] == "HTTP" and ports[port]["targetPort"] == 443
        rule = next(r for r in of_kind(docs, "DestinationRule") if r["spec"]["host"] == host)
        tls = next(s["tls"] for s in rule["spec"]["trafficPolicy"]["portLevelSettings"]
                   if s["port"]["number"] == port)
        assert tls["mode"] == "SIMPLE" and tls["sni"] == host


def test_the_readme_names_the_issuer_cluster_the_istio_examples_create():
    readme = (harness.REPO / "README.md").read_text()
    for path in ISTIO_FILES:
        config = the_one(documents(path), "WasmPlugin")["spec"]["pluginConfig"]
        for issuer in config["issuers"]:
            assert f"`{issuer['discovery']['cluster']}`" in readme


@pytest.mark.parametrize("path", ISTIO_FILES, ids=lambda p: p.name)
def test_every_istio_plugin_config_passes_the_filters_own_check(path: Path, tmp_path):
    for n, plugin in enumerate(of_kind(documents(path), "WasmPlugin")):
        config = tmp_path / f"plugin-{n}.json"
        config.write_text(json.dumps(plugin["spec"]["pluginConfig"]))
        r = harness.check(config)
        assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------
# The legacy app (issue 12): oauth2 filter, then mpass-guard
# --------------------------------------------------------------------------


def oauth2_of_envoy() -> dict[str, Any]:
    filters = hcm(yaml.safe_load((ENVOY_DIR / "legacy-app.yaml").read_text()))["http_filters"]
    return filters


def test_the_legacy_app_runs_the_oauth2_filter_then_mpass_guard_then_the_router():
    filters = oauth2_of_envoy()
    assert [f["name"] for f in filters] == [
        "envoy.filters.http.oauth2", "envoy.filters.http.wasm", "envoy.filters.http.router"]
    oauth2 = filters[0]["typed_config"]["config"]
    # Secrets only through SDS files, never inline in the bootstrap.
    for key in ("token_secret", "hmac_secret"):
        source = oauth2["credentials"][key]["sds_config"]["path_config_source"]
        path = harness.REPO / source["path"]
        assert path.is_file() and path.parent.name == "legacy-app-secrets", source
        assert "placeholder" in path.read_text()
    assert "openid" in oauth2["auth_scopes"] and "profile" in oauth2["auth_scopes"]
    assert oauth2["signout_path"]["path"]["exact"] == "/signout"
    assert oauth2["redirect_path_matcher"]["path"]["exact"] in oauth2["redirect_uri"]
    assert all(c["same_site"] == "LAX" for c in oauth2["cookie_configs"].values())
    plugin = json.loads(filters[1]["typed_config"]["config"]["configuration"]["value"])
    assert plugin["from_cookies"] == ["IdToken"]
    assert plugin["issuers"][0]["userinfo"]["access_token"] == {"cookie": "BearerToken"}
    assert all("login" in p for p in plugin["providers"].values())


def test_the_istio_legacy_app_inserts_the_oauth2_filter_first_before_the_authn_wasmplugin():
    docs = documents(ENVOY_DIR / "istio-legacy-app.yaml")
    patch = the_one(docs, "EnvoyFilter")["spec"]["configPatches"]
    assert len(patch) == 1 and patch[0]["applyTo"] == "HTTP_FILTER"
    assert patch[0]["patch"]["operation"] == "INSERT_FIRST"
    plugin = the_one(docs, "WasmPlugin")
    assert plugin["spec"]["phase"] == "AUTHN"
    assert patch[0]["match"]["context"] == "SIDECAR_INBOUND"
    assert plugin["spec"]["match"] == [{"mode": "SERVER"}]
    selector = the_one(docs, "EnvoyFilter")["spec"]["workloadSelector"]["labels"]
    assert selector == plugin["spec"]["selector"]["matchLabels"]
    # The same login settings as the plain-Envoy file, apart from where things live.
    istio = patch[0]["patch"]["value"]["typed_config"]["config"]
    envoy = oauth2_of_envoy()[0]["typed_config"]["config"]
    same = ("auth_type", "auth_scopes", "forward_bearer_token", "use_refresh_token",
            "cookie_configs", "signout_path", "redirect_path_matcher", "authorization_endpoint")
    assert {k: istio[k] for k in same} == {k: envoy[k] for k in same}
    # The SDS files are the mounted Secret's keys.
    deployment = the_one(docs, "Deployment")
    mount = json.loads(deployment["spec"]["template"]["metadata"]["annotations"][
        "sidecar.istio.io/userVolumeMount"])
    secret = the_one(docs, "Secret")
    (volume, where), = mount.items()
    for key in ("token_secret", "hmac_secret"):
        path = Path(istio["credentials"][key]["sds_config"]["path_config_source"]["path"])
        assert str(path.parent) == where["mountPath"]
        assert path.name in secret["stringData"]
    assert istio["token_endpoint"]["cluster"] == plugin["spec"]["pluginConfig"]["issuers"][0][
        "discovery"]["cluster"]
