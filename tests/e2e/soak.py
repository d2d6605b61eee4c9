#!/usr/bin/env python3
"""Load with faults: valid, invalid and malicious traffic for three providers
while the key server flaps and rotates, and an upstream that checks the
invariant on every request it receives.

The invariant, per request the upstream receives:
- it was allowed to arrive (never a request sent with an invalid token, no
  token, or two tokens on a protected path);
- no token anywhere in it, no client-spoofed value (every spoofed header value
  carries the marker ``SPOOF``), no ``authorization`` header;
- on a protected path, only the headers that provider's contract can emit,
  and each released value made only of pieces of that token's own claims;
  e-mail only for a staff member; nothing identity-shaped on the open path.

Key ``b`` stays in every key set the server ever serves, so a valid token
signed with it must always get 200: a flapping key server must never turn
into 401s (the last good key set carries on).

Run alone: ``.venv/bin/python tests/e2e/soak.py --seconds 180`` (``make soak``).
A short run is part of ``make test`` (tests/e2e/test_soak.py).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import random
import re
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import harness  # noqa: E402
from jwks_server import KeyServer  # noqa: E402

ISS = "https://mpass-proxy-test.csc.fi"
FIXTURES = harness.REPO / "tests" / "fixtures" / "claims"
PERSONS = {
    "learner": ("learner-1.4.json", False),
    "staff": ("staff-with-email-proposed.json", True),
    "teacher": ("teacher-two-providers-1.4.json", True),
}
KEYS = {"a": "rsa-a.pem", "b": "rsa-b.pem", "c": "ec-p256.pem"}
ALGS = {"a": "RS256", "b": "RS256", "c": "ES256"}
# What each provider's contract can emit (header names).
ALLOWED = {
    "p1": {"x-mpass-uid", "x-mpass-given-name", "x-mpass-family-name"},
    "p2": {"x-mpass-role", "x-mpass-school-info", "x-mpass-email"},
    "p3": {"x-legacy-user", "x-mpass-learner-id"},
}
SPOOF_NAMES = ["X-Mpass-Uid", "x_mpass_email", "X-MPASS-ROLE", "x-legacy-user", "X_Legacy_User",
               "x-forwarded-user", "X-Userinfo", "x-auth-request-email", "X_ID_TOKEN"]


def plugin_config(jwks_uri: str) -> dict[str, Any]:
    return {
        "issuers": [{
            "issuer": ISS,
            "allowed_algorithms": ["RS256", "ES256"],
            "remote_jwks": {"http_uri": {"uri": jwks_uri, "cluster": "jwks", "timeout": "0.5s"},
                            "cache_duration": "1s"},
            "key_fetch": {"initial_wait": "1s", "refetch_interval": "1s",
                          "backoff_initial": "0.2s", "backoff_max": "1s", "max_stale": "3600s"},
        }],
        "strip_headers": ["x-forwarded-user", "x-userinfo", "x-id-token", "x-auth-request-*"],
        "token_cache": {"max_entries": 64},
        "providers": {
            "p1": {"audiences": ["p1"], "match": {"path_prefixes": ["/p1/"]},
                   "contract": {"organisations": ["*"],
                                "release": {"uid": {}, "given_name": {}, "family_name": {}}}},
            "p2": {"audiences": ["p2"], "match": {"path_prefixes": ["/p2/"]},
                   "contract": {"organisations": ["1.2.246.562.10.00000000001"],
                                "release": {"role": {}, "school_info": {},
                                            "email": {"purpose": "receipts",
                                                      "only_roles": [2, 3, 4, 5, 6]}}}},
            "p3": {"audiences": ["p3"], "match": {"path_prefixes": ["/p3/"]},
                   "contract": {"organisations": ["*"], "identifier_form": "tk",
                                "release": {"uid": {"header": "x-legacy-user"},
                                            "learner_id": {"purpose": "results"}}}},
        },
    }


def jwks_of(*names: str) -> str:
    return harness.jwks(*[(harness.key_path(KEYS[n]), n, ALGS[n]) for n in names])


def pieces(claims: dict[str, Any]) -> set[str]:
    """Every `;`-field of every string value in the claims."""
    out: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.update(p for p in v.split(";") if p)
            out.add(v)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for v in claims.values():
        walk(v)
    return out


class Checker:
    """Expectations by request id, and the violations the upstream saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.expect: dict[str, dict[str, Any]] = {}
        self.violations: list[str] = []
        self.arrived = 0

    def register(self, rid: str, exp: dict[str, Any]) -> None:
        with self.lock:
            self.expect[rid] = exp

    def violation(self, msg: str) -> None:
        with self.lock:
            if len(self.violations) < 50:
                self.violations.append(msg)
            else:
                self.violations.append("...")

    def check(self, path: str, headers: list[tuple[str, str]]) -> None:
        rid = next((v for k, v in headers if k.lower() == "x-soak-id"), None)
        with self.lock:
            self.arrived += 1
            exp = self.expect.get(rid or "")
        if exp is None:
            self.violation(f"unknown request reached the upstream: {path}")
            return
        if not exp["may_arrive"]:
            self.violation(f"{rid} ({exp['kind']}) reached the upstream")
        token = exp.get("token")
        for name, value in headers:
            low = name.lower()
            if "SPOOF" in value:
                self.violation(f"{rid}: spoofed {name} reached the upstream")
            if token and token in value:
                self.violation(f"{rid}: the token reached the upstream in {name}")
            if low == "authorization":
                self.violation(f"{rid}: authorization reached the upstream")
            identity = low.startswith("x-mpass") or low.startswith("x_mpass") or low == "x-legacy-user"
            if not identity:
                continue
            provider = exp.get("provider")
            if provider is None or low not in ALLOWED[provider]:
                self.violation(f"{rid}: {name} is outside the contract of {provider}")
                continue
            decoded = json.loads(value) if value.startswith("[") else [urllib.parse.unquote(value)]
            for item in decoded:
                if any(p not in exp["pieces"] for p in item.split(";") if p):
                    self.violation(f"{rid}: {name} carries a value not from the token")
            if low == "x-mpass-email" and not exp["staff"]:
                self.violation(f"{rid}: a learner's e-mail reached {provider}")


def make_upstream(checker: Checker) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            checker.check(self.path, list(self.headers.items()))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a: Any) -> None:
            pass

    server = ThreadingHTTPServer((harness.LOOPBACK, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def mint_tokens() -> dict[tuple[str, str, str], tuple[str, dict[str, Any]]]:
    """(person, key, provider) -> (token, claims)."""
    out = {}
    for person, (fixture, _) in PERSONS.items():
        claims = json.loads((FIXTURES / fixture).read_text())
        claims = {k: v for k, v in claims.items() if not k.startswith("_")}
        for key in KEYS:
            for provider in ALLOWED:
                c = dict(claims, iss=ISS, aud=provider)
                tok = harness.mint(harness.key_path(KEYS[key]), ALGS[key], c, kid=key)
                out[(person, key, provider)] = (tok, c)
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(seconds: float, threads: int = 4, seed: int = 7) -> dict[str, Any]:
    harness.require_envoy()
    harness.require_wasm()
    harness.require_cli()
    rng = random.Random(seed)
    checker = Checker()
    upstream = make_upstream(checker)
    keys = KeyServer(jwks_of("a", "b"))
    tokens = mint_tokens()
    envoy = harness.Envoy(
        upstream.server_address[1], plugin_config(keys.jwks_uri),
        workdir=Path(tempfile.mkdtemp(prefix="mpass-guard-soak-")),
        clusters=[harness.static_cluster("jwks", keys.port)], log_level="warning")
    envoy.start()
    outcomes: collections.Counter[str] = collections.Counter()
    stable_failures: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    counter = iter(range(10**9))
    stop = time.monotonic() + seconds

    def request() -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
        r = rng.random()
        spoofs = [(n, f"SPOOF-{i}") for i, n in enumerate(rng.sample(SPOOF_NAMES, 3))]
        person, key, provider = (rng.choice(list(PERSONS)), rng.choice(list(KEYS)),
                                 rng.choice(list(ALLOWED)))
        tok, claims = tokens[(person, key, provider)]
        base = {"provider": provider, "pieces": pieces(claims), "staff": PERSONS[person][1],
                "token": tok}
        path = f"/{provider}/x"
        if r < 0.5:
            return path, [("Authorization", f"Bearer {tok}")] + spoofs, dict(
                base, kind=f"valid-{key}", may_arrive=True, stable=(key == "b"))
        if r < 0.6:
            head, body, sig = tok.split(".")
            bad = f"{head}.{body}.{sig[:-4]}AAAA"
            return path, [("Authorization", f"Bearer {bad}")] + spoofs, dict(
                base, kind="bad-signature", may_arrive=False, token=bad)
        if r < 0.65:
            other = next(p for p in ALLOWED if p != provider)
            return f"/{other}/x", [("Authorization", f"Bearer {tok}")], dict(
                base, kind="wrong-audience", may_arrive=False)
        if r < 0.7:
            none = harness.unsigned_token(claims)
            return path, [("Authorization", f"Bearer {none}")], dict(
                base, kind="alg-none", may_arrive=False, token=none)
        if r < 0.75:
            return path, [("Authorization", f"Bearer {tok}"), ("Authorization", f"Bearer {tok}")], \
                dict(base, kind="two-tokens", may_arrive=False)
        if r < 0.8:
            return path, spoofs, dict(base, kind="no-token", may_arrive=False)
        if r < 0.85:
            junk = "".join(rng.choice("abc.-_=+/ ") for _ in range(rng.randint(1, 300)))
            return path, [("Authorization", f"Bearer {junk}")], dict(
                base, kind="garbage", may_arrive=False, token=None)
        return "/open/x", spoofs, {"provider": None, "kind": "open", "may_arrive": True,
                                   "token": None, "pieces": set(), "staff": False}

    def worker() -> None:
        conn = http.client.HTTPConnection(harness.LOOPBACK, envoy.port, timeout=10)
        while time.monotonic() < stop:
            with lock:
                path, headers, exp = request()
                rid = f"r{next(counter)}"
            checker.register(rid, exp)
            try:
                conn.putrequest("GET", path, skip_accept_encoding=True)
                conn.putheader("x-soak-id", rid)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders()
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(harness.LOOPBACK, envoy.port, timeout=10)
                status, body = 0, b""
            reason = ""
            if status >= 400:
                try:
                    reason = json.loads(body).get("reason", "")
                except ValueError:
                    reason = "?"
            with lock:
                outcomes[f"{exp['kind']} {status} {reason}".strip()] += 1
                if exp.get("stable") and status != 200:
                    stable_failures[f"{status} {reason}"] += 1
        conn.close()

    def flapper() -> None:
        phases = [lambda: keys.serve(jwks_of("a", "b")), keys.down,
                  lambda: keys.serve(jwks_of("b", "c")), lambda: keys.status(500),
                  lambda: keys.serve(jwks_of("a", "b", "c")), keys.garbage,
                  lambda: keys.slow(1.0), lambda: keys.serve(jwks_of("b"))]
        i = 0
        while time.monotonic() < stop:
            phases[i % len(phases)]()
            i += 1
            time.sleep(min(1.5, max(0.0, stop - time.monotonic())))
        keys.serve(jwks_of("a", "b"))

    # Warm-up: the first key set is fetched before load starts.
    warm_tok, warm_claims = tokens[("learner", "b", "p1")]
    checker.register("warmup", {"provider": "p1", "pieces": pieces(warm_claims), "staff": False,
                                "token": warm_tok, "kind": "warmup", "may_arrive": True})
    deadline = time.monotonic() + 10
    while harness.send(envoy.port, "/p1/x", [("Authorization", f"Bearer {warm_tok}"),
                                              ("x-soak-id", "warmup")]).status != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the filter never got its first key set")
        time.sleep(0.1)
    memory_before = {"rss_kib": rss_kib(envoy.proc.pid), "admin": json.loads(envoy._admin_get("/memory")[1])}
    stop = time.monotonic() + seconds
    pool = [threading.Thread(target=worker) for _ in range(threads)] + [threading.Thread(target=flapper)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    memory_after = {"rss_kib": rss_kib(envoy.proc.pid), "admin": json.loads(envoy._admin_get("/memory")[1])}
    stats = envoy.stats()
    # wasmcustom.mpass_guard.key_fetch.stat_prefix=main.issuer=<host>.result=<ok|failed>
    fetch = {"fetch_" + k.rsplit(".result=", 1)[1]: v for k, v in stats.items()
             if k.startswith("wasmcustom.mpass_guard.key_fetch.") and ".result=" in k}
    envoy.stop()
    keys.stop()
    upstream.shutdown()
    sent = sum(outcomes.values())
    return {
        "seconds": seconds,
        "requests_sent": sent,
        "requests_per_second": round(sent / seconds, 1),
        "reached_upstream": checker.arrived,
        "outcomes": dict(sorted(outcomes.items())),
        "invariant_violations": len(checker.violations),
        "violation_samples": checker.violations[:10],
        "stable_key_non_200": dict(stable_failures),
        "other_5xx": sum(n for k, n in outcomes.items()
                         if re.search(r" 5\d\d", k) and "keys_unavailable" not in k),
        "key_fetches": fetch,
        "envoy_memory_before": memory_before,
        "envoy_memory_after": memory_after,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    report = run(args.seconds, args.threads)
    print(json.dumps(report, indent=2, default=str))
    ok = (report["invariant_violations"] == 0 and not report["stable_key_non_200"]
          and report["other_5xx"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
