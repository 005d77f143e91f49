// Upstream OpenID providers for tests/tests/federated_login.rs: one
// certified `oidc-provider` (node-oidc-provider) per entry of
// FERRY_IDP_SPEC, each its own issuer on 127.0.0.1 with a free port,
// with one confidential client for the hub (client_secret_basic, the
// hub's callback as its only redirect URI) and its development login
// pages (any login and password; the login is the account, and its
// verified email address).
//
// Prints `ISSUER NAME URL` per provider, then `READY`; exits when stdin
// closes (the test ended), or after 15 minutes whatever happens.

import http from 'node:http';
import Provider from 'oidc-provider';

const spec = JSON.parse(process.env.FERRY_IDP_SPEC ?? '[]');
if (spec.length === 0) {
  console.error('FERRY_IDP_SPEC names no provider');
  process.exit(2);
}

const listen = () =>
  new Promise((resolve, reject) => {
    const server = http.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });

for (const [index, idp] of spec.entries()) {
  const server = await listen();
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: idp.client_id,
        client_secret: idp.client_secret,
        redirect_uris: [idp.redirect_uri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username'],
    },
    // The hub reads the identity off the ID token, as most providers put
    // the scopes' claims there.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => ({
        sub: id,
        email: id,
        email_verified: true,
        preferred_username: id,
      }),
    }),
    features: { devInteractions: { enabled: true } },
    // Both providers share the host, as a browser's cookie jar sees it.
    cookies: {
      keys: [`ferry-test-idp-${index}`],
      names: {
        session: `_session_${index}`,
        interaction: `_interaction_${index}`,
        resume: `_interaction_resume_${index}`,
      },
    },
  });
  server.on('request', provider.callback());
  console.log(`ISSUER ${idp.name} ${issuer}`);
}
console.log('READY');

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
setTimeout(() => process.exit(0), 15 * 60 * 1000).unref();
