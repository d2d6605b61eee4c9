// An independent verifier of mpass-guard's gateway-signed token (issue 13),
// built on `jose` (npm), which nobody here wrote. It does what a service
// developer would: fetch the discovery document, take its `jwks_uri`, fetch
// the JWKS, and verify signature, `iss`, `aud` and `exp` (no clock leeway).
//
//   node verify_jose.mjs DISCOVERY_URL ISSUER AUDIENCE TOKEN
//
// Prints the verified claims as one JSON line, or the reason on stderr and
// exits 1. The algorithms accepted are the discovery document's
// `id_token_signing_alg_values_supported`, so an `alg` the gateway does not
// publish is refused.
import { createRemoteJWKSet, jwtVerify } from 'jose';

async function main() {
  const [discoveryUrl, issuer, audience, token] = process.argv.slice(2);
  if (!token) {
    process.stderr.write('usage: verify_jose.mjs DISCOVERY_URL ISSUER AUDIENCE TOKEN\n');
    return 2;
  }
  const response = await fetch(discoveryUrl);
  if (!response.ok) throw new Error(`discovery: HTTP ${response.status}`);
  const discovery = await response.json();
  // OpenID Connect Discovery 1.0, section 4.3: the document's issuer must be
  // the one the verifier expects.
  if (discovery.issuer !== issuer) throw new Error(`discovery names issuer ${discovery.issuer}`);
  if (typeof discovery.jwks_uri !== 'string') throw new Error('discovery has no jwks_uri');
  const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    algorithms: discovery.id_token_signing_alg_values_supported,
    requiredClaims: ['exp', 'iat', 'sub'],
  });
  process.stdout.write(`${JSON.stringify({ header: protectedHeader, claims: payload })}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`refused: ${err.code ?? ''} ${err.message}\n`);
    process.exit(1);
  },
);
