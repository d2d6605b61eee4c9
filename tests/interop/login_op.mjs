// The login OP of the legacy-app tests and `make run DEMO=login`: the
// certified `oidc-provider` shaped like MPASSid's authorization-code flow.
//
//   node login_op.mjs --port PORT [--host localhost] --client-id ID --client-secret S
//                     --redirect-uri URI [--post-logout-uri URI] [--id-token-ttl SECONDS]
//
// (or LOGIN_OP_PORT, LOGIN_OP_HOST, LOGIN_OP_CLIENT_ID, LOGIN_OP_CLIENT_SECRET,
// LOGIN_OP_REDIRECT_URI, LOGIN_OP_POST_LOGOUT_URI, LOGIN_OP_ID_TOKEN_TTL).
//
// As in MPASSid: code flow with PKCE (S256, required), a confidential client
// (client_secret_basic), an opaque access token, and the ID token carrying
// only `sub` and the registered claims; every `urn:mpass.id:*` attribute and
// the names come from the userinfo endpoint only, so a relying party that
// skips userinfo sees nothing. The demo users (log in with the name, any
// password): `learner`, `teacher` (two municipalities) and `outsider` (a
// learner of a municipality the demo contract does not permit).
// Prints one JSON line {"issuer": ...} when it listens. Test-only: in-memory
// storage, no TLS, the stock development login and consent pages.

import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

function arg(name, env, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (process.env[env]) return process.env[env];
  if (fallback === undefined) {
    process.stderr.write(`missing --${name} (or ${env})\n`);
    process.exit(2);
  }
  return fallback;
}

const port = Number(arg('port', 'LOGIN_OP_PORT'));
const host = arg('host', 'LOGIN_OP_HOST', 'localhost');
const issuer = `http://${host}:${port}`;
const idTokenTtl = Number(arg('id-token-ttl', 'LOGIN_OP_ID_TOKEN_TTL', '3600'));
const postLogout = arg('post-logout-uri', 'LOGIN_OP_POST_LOGOUT_URI', '');

// MPASSid-shaped attributes (see /work/shared/mpassid/claims): user-facing
// test data only, no real person.
const USERS = {
  learner: {
    given_name: 'Aino',
    family_name: 'Sävynen',
    'urn:mpass.id:uid': 'MPASSOID.391ea8eb34f1e27024ab1342603537bdbd494900',
    'urn:oid:1.3.6.1.4.1.16161.1.1.27': '1.2.246.562.24.20000000018',
    'urn:mpass.id:schoolInfo': [
      '30076;Mansikkalan testi peruskoulu',
      '1.2.246.562.10.00000000002;Mansikkalan testi peruskoulu',
    ],
    'urn:mpass.id:classLevel': '9',
    'urn:mpass.id:role': ['1.2.246.562.10.00000000001;30076;9F;Oppilas;1;1.2.246.562.10.00000000002;'],
    'urn:mpass.id:educationProviderInfo': ['1.2.246.562.10.00000000001;Mansikkalan testi kunta'],
    'urn:mpass.id:originalIssuer': '1.2.246.562.10.00000000001',
    legacyCryptId: 'LEGACY-CRYPT-0001',
  },
  teacher: {
    given_name: 'Pekka-Äijö',
    family_name: 'Öhman',
    'urn:mpass.id:uid': 'MPASSOID.8d0c1a9f7e6b5a4c3d2e1f0a9b8c7d6e5f4a3b2c',
    'urn:oid:1.3.6.1.4.1.16161.1.1.27': '1.2.246.562.24.33445566778',
    'urn:mpass.id:schoolInfo': [
      '30076;Mansikkalan testi peruskoulu',
      '1.2.246.562.10.00000000002;Mansikkalan testi peruskoulu',
      '04647;Äänekosken testilukio',
      '1.2.246.562.10.00000000005;Äänekosken testilukio',
    ],
    'urn:mpass.id:role': [
      '1.2.246.562.10.00000000001;30076;7A;Opettaja;2;1.2.246.562.10.00000000002;',
      '1.2.246.562.10.00000000004;04647;;Rehtori;6;1.2.246.562.10.00000000005;1.2.246.562.10.00000000006',
    ],
    'urn:mpass.id:educationProviderInfo': [
      '1.2.246.562.10.00000000001;Mansikkalan testi kunta',
      '1.2.246.562.10.00000000004;Äänekosken testikaupunki',
    ],
    'urn:mpass.id:originalIssuer': '1.2.246.562.10.00000000001',
    legacyCryptId: 'LEGACY-CRYPT-0002',
  },
  outsider: {
    given_name: 'Ulla',
    family_name: 'Ulkopuolinen',
    'urn:mpass.id:uid': 'MPASSOID.00aa11bb22cc33dd44ee55ff66aa77bb88cc99dd',
    'urn:mpass.id:schoolInfo': ['99999;Muun kunnan koulu', '1.2.246.562.10.00000000099;Muun kunnan koulu'],
    'urn:mpass.id:classLevel': '5',
    'urn:mpass.id:role': ['1.2.246.562.10.00000000098;99999;5B;Oppilas;1;1.2.246.562.10.00000000099;'],
    'urn:mpass.id:educationProviderInfo': ['1.2.246.562.10.00000000098;Muu testikunta'],
    'urn:mpass.id:originalIssuer': '1.2.246.562.10.00000000098',
    legacyCryptId: 'LEGACY-CRYPT-0003',
  },
};
const ATTRIBUTES = [...new Set(Object.values(USERS).flatMap((u) => Object.keys(u)))]
  .filter((k) => k !== 'sub');


const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'login-op-1', alg: 'RS256', use: 'sig' };

const client = {
  client_id: arg('client-id', 'LOGIN_OP_CLIENT_ID'),
  client_secret: arg('client-secret', 'LOGIN_OP_CLIENT_SECRET'),
  redirect_uris: [arg('redirect-uri', 'LOGIN_OP_REDIRECT_URI')],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
};
if (postLogout) client.post_logout_redirect_uris = [postLogout];

const provider = new Provider(issuer, {
  clients: [client],
  jwks: { keys: [jwk] },
  cookies: { keys: ['login-op-test-only-cookie-key'] },
  pkce: { required: () => true },
  // The attributes are released for the `profile` scope, at userinfo only.
  claims: { openid: ['sub'], profile: ATTRIBUTES },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  ttl: { IdToken: idTokenTtl, AccessToken: 3600, Session: 3600, Grant: 3600, Interaction: 600 },
  // The stock login form makes the typed name the account id, and
  // oidc-provider makes the account id the `sub`: the demo users' subs are
  // their names (MPASSid's are opaque; nothing here depends on the shape).
  findAccount: async (_ctx, login) => {
    const user = USERS[login];
    if (!user) return undefined;
    return {
      accountId: login,
      claims: async (use) => (use === 'userinfo' ? { ...user, sub: login } : { sub: login }),
    };
  },
});

provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err}\n`));

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ issuer, id_token_ttl: idTokenTtl })}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
