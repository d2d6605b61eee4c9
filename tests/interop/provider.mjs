// A real, independent OpenID Provider for mpass-guard's interop test:
// the certified `oidc-provider` package, on 127.0.0.1, with one confidential
// client and its stock development interactions (login + consent forms).
//
//   node provider.mjs --port PORT --kid KID --client-id ID --client-secret S --redirect-uri URI
//
// Every start generates a fresh RSA signing key (kid = --kid): restarting the
// provider on the same port with another kid is a key rotation at the same
// issuer URL. Prints one JSON line {"issuer": ..., "kid": ...} when it listens.
// Test-only: in-memory storage, no TLS, dev interactions.

import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback === undefined) {
    process.stderr.write(`missing --${name}\n`);
    process.exit(2);
  }
  return fallback;
}

const port = Number(arg('port'));
const kid = arg('kid', 'interop-key-1');
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: arg('client-id'),
    client_secret: arg('client-secret'),
    redirect_uris: [arg('redirect-uri')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: ['interop-test-only-cookie-key'] },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub }),
  }),
});

// Quiet: the test reads only the ready line and the HTTP answers.
provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err}\n`));

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ issuer, kid })}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
