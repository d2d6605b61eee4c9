"""Token pools for the benchmark, minted with the `cryptography` package.

One process signs thousands of tokens in seconds (the CLI would need one
process per token). The keys are the test-only keys under tests/keys; the
claims are tests/fixtures/claims/teacher-two-providers-1.4.json with a
distinct `sub`, `urn:mpass.id:uid` and learner number per token, so every
token is a different user and a different signature. bench/run.py checks a
few tokens of every pool through the real filter (and through jwt_authn)
before it measures anything.

    python bench/mint_pool.py OUT_DIR --count 20000
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, utils

REPO = Path(__file__).resolve().parents[1]
KEYS = REPO / "tests" / "keys"
CLAIMS = REPO / "tests" / "fixtures" / "claims" / "teacher-two-providers-1.4.json"

# One issuer per algorithm, as in tests/e2e/conftest.py; one audience.
ISSUERS = {
    "RS256": ("https://rs.bench.mpass-guard.test", "rsa-a.pem", "rsa-a"),
    "ES256": ("https://es.bench.mpass-guard.test", "ec-p256.pem", "ec-p256"),
    "EdDSA": ("https://ed.bench.mpass-guard.test", "ed25519.pem", "ed25519"),
}
AUDIENCE = "bench-sp"
# Tokens live just under the filter's one-day maximum lifetime, so a pool
# minted in the morning still verifies in the evening.
LIFETIME = 86_000


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_key(name: str):
    return serialization.load_pem_private_key((KEYS / name).read_bytes(), password=None)


def signer(alg: str):
    _, keyfile, _ = ISSUERS[alg]
    key = load_key(keyfile)
    if alg == "RS256":
        return lambda msg: key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    if alg == "ES256":
        def es256(msg: bytes) -> bytes:
            r, s = utils.decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return es256
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.sign


def claims_for(user: int, alg: str, now: int) -> dict:
    c = json.loads(CLAIMS.read_text())
    iss, _, _ = ISSUERS[alg]
    c.update({
        "iss": iss,
        "aud": AUDIENCE,
        "sub": f"BENCHUSER{user:08d}",
        "urn:mpass.id:uid": f"MPASSOID.bench{user:08d}",
        "urn:oid:1.3.6.1.4.1.16161.1.1.27": f"1.2.246.562.24.{10_000_000_000 + user}",
        "iat": now,
        "exp": now + LIFETIME,
    })
    return c


def mint(alg: str, count: int, now: int) -> list[str]:
    sign = signer(alg)
    _, _, kid = ISSUERS[alg]
    header = b64u(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}, separators=(",", ":")).encode())
    out = []
    for user in range(count):
        payload = b64u(json.dumps(claims_for(user, alg, now), separators=(",", ":"),
                                  ensure_ascii=False).encode())
        signing_input = f"{header}.{payload}"
        out.append(f"{signing_input}.{b64u(sign(signing_input.encode()))}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=20_000, help="RS256 pool size")
    ap.add_argument("--other-count", type=int, default=None,
                    help="ES256 and EdDSA pool size (default: --count)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    now = int(time.time())
    counts = {"RS256": args.count, "ES256": args.other_count or args.count,
              "EdDSA": args.other_count or args.count}
    meta = {"minted_at": now, "expires_at": now + LIFETIME, "audience": AUDIENCE, "pools": {}}
    for alg, n in counts.items():
        t0 = time.monotonic()
        tokens = mint(alg, n, now)
        (args.out / f"{alg}.txt").write_text("\n".join(tokens) + "\n")
        meta["pools"][alg] = {"count": n, "issuer": ISSUERS[alg][0], "kid": ISSUERS[alg][2],
                              "mint_seconds": round(time.monotonic() - t0, 2)}
    (args.out / "pools.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
