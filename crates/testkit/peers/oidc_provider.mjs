// An OpenID provider for the tests: panva's certified `oidc-provider`, over HTTPS on a loopback port.
//
// Usage: node oidc_provider.mjs --module DIR --port N --cert FILE --key FILE --clients FILE
//          [--short-lived CLIENT_ID]... [--expired-refresh CLIENT_ID]...
// --module is the folder holding node_modules/oidc-provider (installed by `cargo xtask test`).
// --clients is a JSON array of client metadata (client_id, redirect_uris, grant_types, ...).
// --short-lived: that client's ID and access tokens live 30 s (always within the one-minute refresh margin).
// --expired-refresh: that client's refresh tokens live 1 s.
// Logs one line per request: `request <method> <path> ua=<user agent>`; prints `listening <issuer>` when ready.
// Accounts: any login name; claims sub=<login>, email=<login>@example.com (verified), groups=[kubeauth-users].
import https from 'node:https';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const args = { shortLived: [], expiredRefresh: [] };
for (let i = 2; i < process.argv.length; i += 2) {
  const [flag, value] = [process.argv[i], process.argv[i + 1]];
  switch (flag) {
    case '--module': args.module = value; break;
    case '--port': args.port = Number(value); break;
    case '--cert': args.cert = value; break;
    case '--key': args.key = value; break;
    case '--clients': args.clients = value; break;
    case '--short-lived': args.shortLived.push(value); break;
    case '--expired-refresh': args.expiredRefresh.push(value); break;
    default: throw new Error(`unknown flag ${flag}`);
  }
}

const entry = path.join(args.module, 'node_modules', 'oidc-provider', 'lib', 'index.js');
const { default: Provider } = await import(pathToFileURL(entry).href);

const issuer = `https://127.0.0.1:${args.port}`;
const shortLived = (client) => client && args.shortLived.includes(client.clientId);

const provider = new Provider(issuer, {
  clients: JSON.parse(fs.readFileSync(args.clients, 'utf8')),
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', 'https://www.googleapis.com/auth/cloud-platform'],
  claims: { email: ['email', 'email_verified'], groups: ['groups'], profile: ['name'] },
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
  },
  // A refresh token for every client allowed the grant, whatever the scopes (as Google and Entra do).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    IdToken: (_ctx, _token, client) => (shortLived(client) ? 30 : 3600),
    AccessToken: (_ctx, token, client) => (shortLived(client ?? token.client) ? 30 : 3600),
    RefreshToken: (_ctx, token, client) => ((client ?? token.client) && args.expiredRefresh.includes((client ?? token.client).clientId) ? 1 : 86400),
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
    AuthorizationCode: 60,
    DeviceCode: 600,
  },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@example.com`,
      email_verified: true,
      name: id,
      groups: ['kubeauth-users'],
    }),
  }),
  cookies: { keys: ['kubeauth-test-cookie-key'] },
});
provider.proxy = false;
// One line per token granted: `grant <client id> <grant type>`.
provider.on('grant.success', (ctx) => console.log(`grant ${ctx.oidc.client?.clientId} ${ctx.oidc.params?.grant_type}`));

const callback = provider.callback();
const server = https.createServer(
  { cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) },
  (req, res) => {
    console.log(`request ${req.method} ${req.url.split('?')[0]} ua=${req.headers['user-agent'] ?? ''}`);
    callback(req, res);
  },
);
server.listen(args.port, '127.0.0.1', () => console.log(`listening ${issuer}`));
