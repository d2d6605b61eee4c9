"""The cold path with and without a gateway-signed token (issue 13), in V8.

Runs the profile driver (bench/profile, built for wasm32-wasip1) in Node's
V8 through bench/wasm_profile.mjs: the same Rust code and ring build as the
filter, without Envoy. Every request carries a new EdDSA MPASSid token (a
pool larger than N is walked once, so every token is a cache miss); the
provider releases the ~8-attribute bench contract. Two configurations differ
only in `gateway` + `contract.signed_token` (default settings, one signing
key of the algorithm asked for). The runs alternate, best of ROUNDS each.

    (cd bench/profile && cargo build --release --target wasm32-wasip1)
    .venv/bin/python bench/signed_cold.py [--alg EdDSA] [--n 3000] [--rounds 5]

Prints one JSON object: ns per request per configuration, and the ratio.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from mint_pool import AUDIENCE, ISSUERS, load_key, mint  # noqa: E402
# The ~8-attribute contract of the bench cells, and the wasm32 profile driver.
from run import CONTRACT, WASM_PROFILER as DRIVER  # noqa: E402

RUNNER = REPO / "bench" / "wasm_profile.mjs"
GATEWAY_KEYS = {"EdDSA": "ed25519.pem", "ES256": "ec-p256.pem", "RS256": "rsa-a.pem"}


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ed_jwks() -> str:
    iss, keyfile, kid = ISSUERS["EdDSA"]
    raw = load_key(keyfile).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64u(raw), "kid": kid,
                                 "alg": "EdDSA"}]})


def config(signed_alg: str | None) -> dict:
    contract = dict(CONTRACT)
    cfg = {
        "issuers": [{"issuer": ISSUERS["EdDSA"][0], "allowed_algorithms": ["EdDSA"],
                     "local_jwks": {"inline_string": ed_jwks()}}],
        "token_cache": {"max_entries": 1000},
        "providers": {"bench": {"audiences": [AUDIENCE], "match": {"path_prefixes": ["/"]},
                                "contract": contract}},
    }
    if signed_alg:
        contract["signed_token"] = {}
        cfg["gateway"] = {
            "issuer": "https://gateway.bench.mpass-guard.test",
            "keys": [{"kid": "k", "alg": signed_alg, "private_key_env": "BENCH_GATEWAY_KEY",
                      "sign": True}],
            "pairwise_key_env": "BENCH_PAIRWISE_KEY",
        }
    return cfg


def run(cfg: Path, tokens: Path, n: int, env: dict) -> float:
    out = subprocess.run(["node", str(RUNNER), str(DRIVER), "decide", str(cfg), str(tokens), str(n)],
                         capture_output=True, text=True, check=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["allowed"] == n, (result, out.stderr)
    return result["ns_per_request"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alg", default="EdDSA", choices=sorted(GATEWAY_KEYS))
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not DRIVER.is_file():
        sys.exit(f"{DRIVER} is missing: (cd bench/profile && cargo build --release --target wasm32-wasip1)")
    work = Path(tempfile.mkdtemp(prefix="signed-cold-"))
    tokens = work / "EdDSA.txt"
    tokens.write_text("\n".join(mint("EdDSA", args.n, int(time.time()))) + "\n")
    plain, signed = work / "plain.json", work / "signed.json"
    plain.write_text(json.dumps(config(None)))
    signed.write_text(json.dumps(config(args.alg)))
    env = dict(os.environ,
               BENCH_GATEWAY_KEY=(REPO / "tests" / "keys" / GATEWAY_KEYS[args.alg]).read_text(),
               BENCH_PAIRWISE_KEY="bench-pairwise-key-0123456789abcdef")
    times: dict[str, list[float]] = {"plain": [], "signed": []}
    for _ in range(args.rounds):
        times["plain"].append(run(plain, tokens, args.n, env))
        times["signed"].append(run(signed, tokens, args.n, env))
    best = {k: min(v) for k, v in times.items()}
    print(json.dumps({"alg": args.alg, "n": args.n, "rounds": args.rounds,
                      "ns_per_request_best": best, "all": times,
                      "ratio_best": round(best["signed"] / best["plain"], 3),
                      "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
