"""The shipped stats_tags turn `.key=value` segments into labels a real Prometheus can sum.

The probe needs no filter: an HTTP connection manager's stat_prefix is free
text, so listeners named `probe.stat_prefix=main.provider=P.outcome=deny.reason=R`
make Envoy emit `http.probe.stat_prefix=main.provider=P...downstream_rq_total`,
which the tag extractors of deploy/envoy/stats-tags.yaml must turn into
`envoy_http_mpass_guard_downstream_rq_total{stat_prefix="main",provider="P",...}`. Debian's
prometheus scrapes Envoy's /stats/prometheus and answers `sum by (provider, reason)`.

The last test runs the real filter with the shipped stats_tags and queries its own
`mpass_guard_decisions` by provider and reason.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

import conftest
from harness import LOOPBACK, REPO, Envoy, Upstream, bootstrap, send, wasm_filter

STATS_TAGS = REPO / "deploy" / "envoy" / "stats-tags.yaml"
VERSION = re.search(r'^version = "([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
ISTIO_BOOTSTRAP = REPO / "deploy" / "istio" / "stats-tags-bootstrap.yaml"

# (provider, reason) -> requests sent to that probe listener
PROBES = {("studeo", "expired"): 3, ("legacy-lms", "expired"): 2, ("legacy_lms", "bad_signature"): 1}


def stats_config() -> dict:
    return yaml.safe_load(STATS_TAGS.read_text())["stats_config"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def probe_prefix(provider: str, reason: str) -> str:
    return f"probe.mpass_guard.stat_prefix=main.provider={provider}.outcome=deny.reason={reason}"


def probe_listener(name: str, port: int, stat_prefix: str) -> dict:
    return {
        "name": name,
        "address": {"socket_address": {"address": LOOPBACK, "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                         "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": stat_prefix,
                "route_config": {"virtual_hosts": [{
                    "name": "probe", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 403}}],
                }]},
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }],
            },
        }]}],
    }


class ProbeEnvoy(Envoy):
    """Envoy with one direct-response listener per probe and the shipped stats_tags."""

    def __init__(self) -> None:
        super().__init__(upstream_port=0, plugin_config=None)
        self.probe_ports = {key: (self.port if i == 0 else free_port()) for i, key in enumerate(PROBES)}

    def render(self) -> dict:
        return {
            "admin": {"address": {"socket_address": {"address": LOOPBACK, "port_value": self.admin_port}}},
            "stats_config": stats_config(),
            "static_resources": {"listeners": [
                probe_listener(f"probe{i}", port, probe_prefix(*key))
                for i, (key, port) in enumerate(self.probe_ports.items())
            ]},
        }


class Prometheus:
    """Debian's prometheus on a free loopback port, with a temp config and data dir."""

    def __init__(self, targets: dict[str, int], scrape_interval: str = "1s") -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: run `make setup` (Debian's prometheus package)"
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="mpass-guard-prometheus-"))
        self.port = free_port()
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [
                {"job_name": job, "metrics_path": "/stats/prometheus",
                 "static_configs": [{"targets": [f"{LOOPBACK}:{port}"]}]}
                for job, port in targets.items()
            ],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Prometheus":
        log = (self.dir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address={LOOPBACK}:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait(lambda: self.get("/-/ready") is not None, "ready")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.port}{path}", timeout=2) as r:
                return r.read()
        except OSError:
            return None

    def query(self, expr: str) -> list[dict]:
        body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body is not None, f"query failed: {expr}\n{self.log()}"
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def wait(self, ready, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc is not None and self.proc.poll() is None, f"prometheus exited\n{self.log()}"
            assert time.monotonic() < deadline, f"prometheus not {what} after {timeout}s\n{self.log()}"
            time.sleep(0.2)

    def scraped(self, job: str) -> None:
        """Waits until `job` was scraped successfully (every probe request was sent before start)."""
        def up() -> bool:
            result = self.query(f'up{{job="{job}"}}') if self.get("/-/ready") else []
            return any(r["value"][1] == "1" for r in result)
        self.wait(up, f"scraping {job}")


@pytest.fixture(scope="module")
def probe_envoy():
    with ProbeEnvoy() as envoy:
        for key, count in PROBES.items():
            for _ in range(count):
                assert send(envoy.probe_ports[key], "/").status == 403
        yield envoy


def prometheus_text(envoy: Envoy) -> str:
    _, body = envoy._admin_get("/stats/prometheus")
    return body


def test_envoy_turns_each_key_value_segment_into_a_label_and_drops_it_from_the_name(probe_envoy):
    lines = [line for line in prometheus_text(probe_envoy).splitlines()
             if line.startswith("envoy_http_mpass_guard_downstream_rq_total{")]
    for (provider, reason), count in PROBES.items():
        wanted = [line for line in lines
                  if f'provider="{provider}"' in line and f'reason="{reason}"' in line]
        assert len(wanted) == 1, lines
        line = wanted[0]
        assert 'stat_prefix="main"' in line and 'outcome="deny"' in line
        assert 'envoy_http_conn_manager_prefix="probe"' in line
        assert line.rsplit(" ", 1)[1] == str(count)
    assert not any("provider=" in line.split("{")[0] for line in prometheus_text(probe_envoy).splitlines())


def test_ids_that_differ_only_by_dash_or_underscore_stay_separate_series(probe_envoy):
    text = prometheus_text(probe_envoy)
    assert 'provider="legacy-lms"' in text and 'provider="legacy_lms"' in text


def test_the_istio_bootstrap_override_carries_the_same_tags_as_the_envoy_snippet():
    docs = [d for d in yaml.safe_load_all(ISTIO_BOOTSTRAP.read_text()) if d]
    config_maps = [d for d in docs if d.get("kind") == "ConfigMap"]
    assert len(config_maps) == 1
    override = json.loads(config_maps[0]["data"]["custom_bootstrap.json"])
    assert override == {"stats_config": {"stats_tags": stats_config()["stats_tags"]}}


@pytest.fixture(scope="module")
def prom(probe_envoy):
    with Prometheus({"envoy": probe_envoy.admin_port}) as prom:
        prom.scraped("envoy")
        yield prom


def test_prometheus_sums_the_probe_requests_by_provider_and_reason(prom):
    result = prom.query('sum by (provider, reason)(envoy_http_mpass_guard_downstream_rq_total{stat_prefix="main"})')
    got = {(r["metric"]["provider"], r["metric"]["reason"]): int(float(r["value"][1])) for r in result}
    assert got == PROBES
    by_provider = prom.query('sum by (provider)(envoy_http_mpass_guard_downstream_rq_total{outcome="deny"})')
    assert {r["metric"]["provider"]: int(float(r["value"][1])) for r in by_provider} == {
        "studeo": 3, "legacy-lms": 2, "legacy_lms": 1}


# The filter's metrics as Prometheus names them (Envoy drops the `wasmcustom.` namespace of
# Wasm-defined metrics and adds no `envoy_` prefix), and Envoy's Wasm VM stats.
FILTER_METRICS = {f"mpass_guard_{n}" for n in (
    "decisions", "released", "withheld", "released_by_controller", "unmatched", "tokens_stripped",
    "spoofed_headers_removed", "token_cache", "key_fetch", "keys_in_use", "key_set_age_seconds",
    "decision_time_us_bucket", "config_rejected", "build_info", "userinfo", "shadow")}
ENVOY_WASM_METRICS = {"envoy_wasm_envoy_wasm_runtime_v8_active", "envoy_wasm_envoy_wasm_runtime_v8_created"}


def dashboard_queries() -> list[str]:
    dash = json.loads((REPO / "deploy" / "grafana" / "mpass-guard.json").read_text())
    queries = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    queries += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return queries


def test_every_dashboard_query_parses_in_prometheus_and_names_only_known_metrics(prom):
    queries = dashboard_queries()
    assert len(queries) > 20
    for query in queries:
        named = set(re.findall(r"\b(?:envoy|mpass_guard)_[a-z0-9_]+", query))
        assert named and named <= FILTER_METRICS | ENVOY_WASM_METRICS, query
        if query.startswith("label_values("):
            continue
        expr = query.replace("$__rate_interval", "1m").replace("$stat_prefix", ".*").replace("$provider", ".*")
        prom.query(expr)


def test_prometheus_sums_the_filters_decisions_by_provider_and_reason(upstream: Upstream):
    config = bootstrap(upstream.port, free_port(), free_port(), [
        wasm_filter(conftest.plugin_config(), {conftest.STUDEO_SECRET_ENV: conftest.STUDEO_SECRET})])
    config["stats_config"] = stats_config()

    class TaggedEnvoy(Envoy):
        def render(self) -> dict:
            config["admin"]["address"]["socket_address"]["port_value"] = self.admin_port
            config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = self.port
            return config

    with TaggedEnvoy(upstream.port, conftest.plugin_config()) as envoy:
        for _ in range(2):
            assert envoy.send("/shop/item").status == 401
        with Prometheus({"envoy": envoy.admin_port}) as prom:
            prom.scraped("envoy")
            result = prom.query("sum by (provider, reason)(mpass_guard_decisions)")
            got = {(r["metric"].get("provider"), r["metric"].get("reason")): float(r["value"][1]) for r in result}
            assert got.get(("studeo", "missing_token"), 0) >= 2, got
            build = prom.query("count by (version)(mpass_guard_build_info)")
            assert [r["metric"].get("version") for r in build] == [VERSION.replace(".", "_")], build
