"""An independent verifier of mpass-guard's gateway-signed token (issue 13),
built on PyJWT with `cryptography` (PyPI), which nobody here wrote.

It does what a service developer would: fetch the discovery document, take
its `jwks_uri`, fetch the JWKS with PyJWT's `PyJWKClient`, and verify the
signature, `iss`, `aud` and `exp` (no clock leeway).

    python verify_pyjwt.py DISCOVERY_URL ISSUER AUDIENCE TOKEN

Prints the verified claims as one JSON line, or the reason on stderr and
exits 1. The algorithms accepted are the discovery document's
`id_token_signing_alg_values_supported`.
"""

import json
import sys
import urllib.request

import jwt


def verify(discovery_url: str, issuer: str, audience: str, token: str) -> dict:
    with urllib.request.urlopen(discovery_url, timeout=10) as r:
        discovery = json.load(r)
    # OpenID Connect Discovery 1.0, section 4.3.
    if discovery.get("issuer") != issuer:
        raise ValueError(f"discovery names issuer {discovery.get('issuer')!r}")
    algorithms = discovery.get("id_token_signing_alg_values_supported") or []
    client = jwt.PyJWKClient(discovery["jwks_uri"], cache_jwk_set=False, cache_keys=False)
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key=key,
        algorithms=algorithms,
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )


def main(argv: list) -> int:
    if len(argv) != 5:
        print("usage: verify_pyjwt.py DISCOVERY_URL ISSUER AUDIENCE TOKEN", file=sys.stderr)
        return 2
    try:
        claims = verify(*argv[1:])
    except Exception as e:  # every failure is a refusal, with its reason
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
