"""A logged-in session's cost (issue 12 item 7), next to today's warm cell.

    .venv/bin/python bench/session.py [--duration 10] [--rounds 3] [--sessions 40]

Two cells, each a fresh Envoy (`--concurrency 1`, direct 200 response), the
same ~8-attribute contract as bench/run.py, wrk -t1 -c16 with one request
repeated, rounds interleaved:

- `mpass-warm`: today's warm cell, the same ID token in `Authorization`;
- `mpass-session`: what Envoy's oauth2 filter sends after a login: the ID
  token in the `IdToken` cookie beside `BearerToken`, `OauthHMAC`,
  `OauthExpires`, `RefreshToken` and an app cookie; the issuer has
  `userinfo` (a loopback server, tests/e2e/userinfo_server.py) and the
  attributes come from it, cached after the session's first request.

The figure is Envoy's CPU time per completed request (as bench/run.py).
Then the first request of a session: for N fresh sessions, the wall time of
the first request (verification plus one userinfo round trip on loopback)
and of the second (cached), sequential, one connection each.
Results: build/bench/session.json and a printed summary.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
import run  # noqa: E402
from userinfo_server import UserinfoServer  # noqa: E402

OUT = REPO / "build" / "bench"
LUA = REPO / "bench" / "session.lua"
CLAIMS = json.loads((REPO / "tests" / "fixtures" / "claims" / "teacher-two-providers-1.4.json").read_text())
ISS, KEY, KID = run.ISSUERS["RS256"]


def id_token(sub: str, attributes: bool) -> str:
    claims = {k: v for k, v in CLAIMS.items() if not k.startswith("_")}
    claims.update({"iss": ISS, "aud": run.AUDIENCE, "sub": sub})
    if not attributes:
        claims = {k: claims[k] for k in ("iss", "aud", "sub")}
    return harness.mint(harness.key_path(KEY), "RS256", claims, kid=KID, exp_in=80_000)


def userinfo_answer(sub: str) -> dict[str, Any]:
    claims = {k: v for k, v in CLAIMS.items() if not k.startswith("_")}
    for k in ("iss", "aud", "nonce", "acr"):
        claims.pop(k, None)
    claims["sub"] = sub
    return claims


def warm_config() -> dict[str, Any]:
    """bench/run.py's default configuration. Its providers still carry
    `forward: false`, which the filter now refuses (contract.forward_token is
    the one setting): dropped here."""
    cfg = run.mpass_default()
    for p in cfg["providers"].values():
        p.pop("forward", None)
    return cfg


def session_config(op: UserinfoServer) -> dict[str, Any]:
    cfg = warm_config()
    for iss in cfg["issuers"]:
        if iss["issuer"] == ISS:
            iss["userinfo"] = {"endpoint": op.endpoint, "cluster": "op"}
    cfg.pop("from_headers", None)
    cfg["from_cookies"] = ["IdToken"]
    return cfg


class SessionEnvoy(run.BenchEnvoy):
    def __init__(self, *a: Any, clusters: list[dict], **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.extra_clusters = clusters

    def render(self) -> dict:
        return harness.bootstrap(self.upstream_port, self.port, self.admin_port, self.filters,
                                 run.routes(), self.extra_clusters)


def session_headers(tok: str, access: str) -> list[tuple[str, str]]:
    return [("Cookie", f"PHPSESSID=abc123; IdToken={tok}; BearerToken={access}; "
                       f"OauthHMAC=aGVsbG8gaG1hYw==; OauthExpires=1999999999; RefreshToken=rt-1")]


def wrk(port: int, seconds: int, headers_file: Path) -> str:
    r = subprocess.run(["wrk", "-t1", f"-c{run.CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(LUA),
                        f"http://{harness.LOOPBACK}:{port}", "--", str(headers_file), "/bench/"],
                       capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed: {r.stderr} {r.stdout[-300:]}")
    return r.stdout


def measure(env: harness.Envoy, headers: list[tuple[str, str]], duration: int, tag: str) -> dict[str, Any]:
    f = OUT / f"session-{tag}.headers"
    f.write_text("".join(f"{k}: {v}\n" for k, v in headers))
    wrk(env.port, 2, f)  # warm-up (and the session's one userinfo call)
    pid = env.proc.pid
    s0, c0 = run.rq_stats(env), run.proc_cpu(pid)
    out = wrk(env.port, duration, f)
    s1, c1 = run.rq_stats(env), run.proc_cpu(pid)
    w = run.parse_wrk(out)
    done = s1["completed"] - s0["completed"]
    ok = s1["2xx"] - s0["2xx"]
    cpu = c1["ticks_s"] - c0["ticks_s"]
    return {"completed": done, "ok": ok, "cpu_us_per_req": 1e6 * cpu / max(done, 1),
            "p50_us": w["p50_us"], "rps": w["rps"], "load": run.loadavg()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=40)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    op = UserinfoServer()
    upstream = harness.Upstream().start()
    warm_token = id_token("bench-warm-sub", attributes=True)
    sub = "bench-session-sub"
    sess_token, access = id_token(sub, attributes=False), "at-" + secrets.token_urlsafe(24)
    op.grant(access, userinfo_answer(sub))
    cluster = harness.static_cluster("op", op.port)
    results: list[dict[str, Any]] = []
    try:
        for rnd in range(args.rounds):
            order = ["mpass-warm", "mpass-session"]
            if rnd % 2:
                order.reverse()
            for name in order:
                session = name == "mpass-session"
                plugin = session_config(op) if session else warm_config()
                filters = [run.wasm_filter(plugin, harness.WASM, "mpass-guard")]
                env = SessionEnvoy(upstream.port, filters, OUT / "envoy" / f"{name}-r{rnd}", [],
                                   clusters=[cluster])
                env.start(timeout=120)
                try:
                    headers = (session_headers(sess_token, access) if session
                               else [("Authorization", f"Bearer {warm_token}")])
                    # Sanity through the recording upstream: released, sealed.
                    upstream.clear()
                    r = env.send("/bench/", headers + [(run.ECHO, "1")])
                    rec = upstream.only()
                    assert r.status == 200 and rec.value("x-mpass-uid"), (r.status, r.body)
                    assert all(access not in v and sess_token not in v for _, v in rec.headers)
                    res = measure(env, headers, args.duration, name)
                    assert res["ok"] == res["completed"], f"{name}: non-2xx responses"
                    res.update({"cell": name, "round": rnd})
                    results.append(res)
                    print(f"r{rnd} {name}: {res['cpu_us_per_req']:.1f} us CPU/req, "
                          f"p50 {res['p50_us']:.0f} us, load {res['load']:.1f}", flush=True)
                finally:
                    env.stop()
        calls_before = len(op.calls)
        # First request of a session: one userinfo round trip on loopback.
        env = SessionEnvoy(upstream.port, [run.wasm_filter(session_config(op), harness.WASM, "mpass-guard")],
                           OUT / "envoy" / "first-request", [], clusters=[cluster])
        env.start(timeout=120)
        first, second = [], []
        try:
            env.send("/bench/", session_headers(sess_token, access))  # VM warm
            for i in range(args.sessions):
                s = f"bench-first-{i}-{secrets.token_hex(4)}"
                tok, at = id_token(s, attributes=False), f"at-first-{i}-{secrets.token_hex(8)}"
                op.grant(at, userinfo_answer(s))
                for bucket in (first, second):
                    t0 = time.perf_counter()
                    r = env.send("/bench/", session_headers(tok, at))
                    bucket.append(1e6 * (time.perf_counter() - t0))
                    assert r.status == 200, (r.status, r.body)
        finally:
            env.stop()
        calls = len(op.calls) - calls_before
    finally:
        upstream.stop()
        op.stop()

    def med(cell: str) -> float:
        return statistics.median(r["cpu_us_per_req"] for r in results if r["cell"] == cell)

    summary = {
        "warm_cpu_us": med("mpass-warm"),
        "session_cpu_us": med("mpass-session"),
        "ratio": med("mpass-session") / med("mpass-warm"),
        "first_request_us_median": statistics.median(first),
        "second_request_us_median": statistics.median(second),
        "first_minus_second_us": statistics.median(a - b for a, b in zip(first, second)),
        "userinfo_calls_for_first_requests": calls,
        "sessions": args.sessions,
        "rounds": results,
    }
    (OUT / "session.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
