#!/usr/bin/env node
// A real OAuth2 authorization server for the end-to-end tests: panva's certified
// `oidc-provider` (see package.json for the pinned version), configured for the
// client-credentials grant, the grants of grants/ (jwt-bearer.mjs: RFC 7523, configured by
// the `jwt_bearer` key; token-exchange.mjs: RFC 8693, the `token_exchange` key; see there),
// plus a few test-control endpoints.
//
//   node server.mjs --port P --config FILE.json [--host 127.0.0.1] [--control-port C]
//                   [--fail MODE:N]   (as POST /__fail, in force from the first request)
//
// FILE.json (every key but `clients` optional):
//   {
//     "issuer": "https://127.0.0.1:P",     // default http(s)://127.0.0.1:<port>
//     "cert": "/pki/server.crt",           // both given: serve HTTPS (node's https module)
//     "key": "/pki/server.key",
//     "ttl_seconds": 5,                    // client-credentials access token lifetime (default 600)
//     "token_path": "/token",              // token endpoint path (default /token)
//     "jwt_audience": "https://api.example", // optional: JWT access tokens with this `aud`
//     "strict_auth_method": true,          // default true: a secret client must use exactly its
//                                          // registered method (basic vs post), else 401
//     "clients": [
//       {"client_id": "a", "client_secret": "s", "token_endpoint_auth_method": "client_secret_basic",
//        "scopes": ["api", "refresh_token"]},
//       {"client_id": "b", "client_secret": "s", "token_endpoint_auth_method": "client_secret_post"},
//       {"client_id": "c", "token_endpoint_auth_method": "private_key_jwt",
//        "public_keys": [{"pem": "/keys/c.pub.pem", "kid": "k1", "alg": "RS256"}]},
//       {"client_id": "d", "token_endpoint_auth_method": "private_key_jwt",
//        "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "...", "y": "...", "kid": "k2"}]}},
//       {"client_id": "e", "client_secret": "s",
//        "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"]}
//     ],
//     "token_exchange": {...}               // see grants/token-exchange.mjs
//   }
//
// `grant_types` (default ["client_credentials"]) lists a client's grants; grants beyond
// oidc-provider's own are registered by the modules in grants/ (listed in `extraGrants`), each
// enabled by its config block.
//
// The token endpoint is <origin><token_path> (default `/token`). A client assertion
// (private_key_jwt) must carry iss = sub = client_id, a jti, an exp, and an `aud` equal to
// the issuer, or to the token endpoint URL as seen by this server (scheme + the request's
// Host header + token_path), or an array containing one of them. Each jti is accepted once.
//
// Test-control endpoints (not OAuth2), on the same origin and, with --control-port, also on
// plain http://<host>:C (handy when the main port speaks TLS and the test client does not):
//   GET  /__stats  -> {"token_requests": N, "token_successes": M, "successes_by_client": {...},
//                      "fail_mode": "500"|null, "fail_remaining": K}
//                     token_requests counts every POST to the token endpoint (injected
//                     failures included); token_successes counts 200 token responses.
//   POST /__reset  -> zeroes the counters and cancels injected failures.
//   GET  /__introspect?token=T
//                  -> {"active": A, "client_id": ..., "scope": ..., "exp": <unix s>} when T is an
//                     access token this server issued (opaque tokens; A false once expired),
//                     else {"active": false}. Forgotten on restart (in-memory store).
//   POST /__fail?mode=500|garbage|hang|delay&count=N[&ms=M]
//                  -> the next N (default 1) token requests fail: `500` answers 500 with a JSON
//                     OAuth error, `garbage` answers 200 with a body that is not JSON, `hang`
//                     never answers (the connection stays open until the server stops), `delay`
//                     answers normally but only after M ms (default 1000).
//
// Prints `READY <port>` on stdout once listening; exits 0 on SIGTERM/SIGINT. Logs one line per
// token request to stderr.

import { readFileSync } from 'node:fs';
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import { parseArgs } from 'node:util';

// oidc-provider 9 is documented for Node 22+ (it prints an "Unsupported runtime" warning on
// Node 20) but only needs APIs Node 20.18 has; fail clearly on anything older.
if (typeof URL.parse !== 'function' || typeof crypto.hash !== 'function') {
  process.stderr.write(`oauth-server: node ${process.version} is too old, need >= 20.18\n`);
  process.exit(2);
}

const { default: Provider, errors } = await import('oidc-provider');
// Extra grants, one module each in grants/: `clients(cfg)` to register, `register(provider, ...)`.
const extraGrants = [await import('./grants/jwt-bearer.mjs'), await import('./grants/token-exchange.mjs')];

function die(msg) {
  process.stderr.write(`oauth-server: ${msg}\n`);
  process.exit(2);
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    config: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    'control-port': { type: 'string' },
    fail: { type: 'string' },
  },
});
if (args.port === undefined || args.config === undefined) {
  die('usage: node server.mjs --port P --config FILE.json [--host 127.0.0.1] [--control-port C]');
}
function parsePort(text, flag) {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n > 65535) die(`bad ${flag} ${text}`);
  return n;
}
const port = parsePort(args.port, '--port');
const controlPort = args['control-port'] === undefined ? null : parsePort(args['control-port'], '--control-port');

let cfg;
try {
  cfg = JSON.parse(readFileSync(args.config, 'utf8'));
} catch (e) {
  die(`reading --config ${args.config}: ${e.message}`);
}

const tls = Boolean(cfg.cert && cfg.key);
if (Boolean(cfg.cert) !== Boolean(cfg.key)) die('config: give both `cert` and `key`, or neither');
const ttlSeconds = cfg.ttl_seconds ?? 600;
if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) die('config: ttl_seconds must be a positive integer');
const tokenPath = cfg.token_path ?? '/token';
if (!tokenPath.startsWith('/')) die('config: token_path must start with /');
const jwtAudience = cfg.jwt_audience ?? null;
if (jwtAudience !== null && !URL.canParse(jwtAudience)) {
  die('config: jwt_audience must be an absolute URI (it is used as the resource indicator)');
}
if (!Array.isArray(cfg.clients) || cfg.clients.length === 0) die('config: `clients` must be a non-empty list');

const AUTH_METHODS = new Set(['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt']);
const allScopes = new Set(['openid', 'offline_access']);

function publicJwk({ pem, kid, alg }) {
  let jwk;
  try {
    jwk = crypto.createPublicKey(readFileSync(pem)).export({ format: 'jwk' });
  } catch (e) {
    die(`config: public key ${pem}: ${e.message}`);
  }
  return { ...jwk, use: 'sig', ...(kid ? { kid } : {}), ...(alg ? { alg } : {}) };
}

const clients = cfg.clients.map((c, i) => {
  if (typeof c.client_id !== 'string' || !c.client_id) die(`config: clients[${i}].client_id missing`);
  const method = c.token_endpoint_auth_method ?? 'client_secret_basic';
  if (!AUTH_METHODS.has(method)) die(`config: clients[${i}]: unsupported token_endpoint_auth_method ${method}`);
  const scopes = c.scopes ?? ['api', 'refresh_token'];
  scopes.forEach((s) => allScopes.add(s));
  const meta = {
    client_id: c.client_id,
    grant_types: c.grant_types ?? ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: method,
    scope: scopes.join(' '),
  };
  if (method.startsWith('client_secret')) {
    if (typeof c.client_secret !== 'string' || !c.client_secret) {
      die(`config: clients[${i}] (${method}) needs a client_secret`);
    }
    meta.client_secret = c.client_secret;
  } else {
    const keys = [...(c.jwks?.keys ?? []), ...(c.public_keys ?? []).map(publicJwk)];
    if (keys.length === 0) die(`config: clients[${i}] (private_key_jwt) needs public_keys or jwks`);
    meta.jwks = { keys };
  }
  return meta;
});

// The provider's own signing keys (JWT access tokens), fresh on every start, with a `kid`
// unique to the start: a restart is a key rotation (a verifier sees an unknown kid).
const startId = crypto.randomBytes(4).toString('hex');
const signingKeys = [
  crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }),
].map((jwk, i) => ({ ...jwk, use: 'sig', kid: `provider-${i}-${startId}` }));

const issuer = cfg.issuer ?? `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [...clients, ...extraGrants.flatMap((g) => g.clients(cfg))],
  jwks: { keys: signingKeys },
  scopes: [...allScopes],
  routes: { token: tokenPath },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  clockTolerance: 5,
  ttl: {
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? ttlSeconds,
  },
  enabledJWA: {
    clientAuthSigningAlgValues: [
      'HS256', 'HS384', 'HS512',
      'RS256', 'RS384', 'RS512',
      'PS256', 'PS384', 'PS512',
      'ES256', 'ES384', 'ES512',
      'Ed25519', 'EdDSA',
    ],
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Without jwt_audience no resource is defaulted and tokens are opaque.
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? jwtAudience ?? undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (jwtAudience === null || resourceIndicator !== jwtAudience) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: [...allScopes].join(' '),
          audience: jwtAudience,
          accessTokenFormat: 'jwt',
          accessTokenTTL: ttlSeconds,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

extraGrants.forEach((g) => g.register(provider, cfg, tokenPath));

// ---------------------------------------------------------------------------
// Counters, failure injection, logging
// ---------------------------------------------------------------------------

const stats = { token_requests: 0, token_successes: 0, successes_by_client: {} };
let fail = { mode: null, remaining: 0 };
const FAIL_MODES = ['500', 'garbage', 'hang', 'delay'];
if (args.fail !== undefined) {
  // --fail MODE:N: the first N token requests fail as MODE (a restarted server that must never
  // answer normally, without the window a later POST /__fail would leave).
  const m = /^([a-z0-9]+):([0-9]+)$/.exec(args.fail);
  if (!m || !FAIL_MODES.includes(m[1])) die(`bad --fail ${args.fail} (want MODE:N, MODE one of ${FAIL_MODES.join('|')})`);
  const count = Number(m[2]);
  fail = { mode: count > 0 ? m[1] : null, remaining: count, delayMs: 1000 };
}
const hanging = new Set();

// oidc-provider accepts client_secret_basic and client_secret_post interchangeably for a
// secret-based client. Tests want to see that the proxy uses the registered method, so unless
// the config says `"strict_auth_method": false`, a token response is replaced by 401
// invalid_client when the method used differs from the registered one. Also counts successes.
const strictAuthMethod = cfg.strict_auth_method ?? true;
provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route !== 'token' || ctx.status !== 200) return;
  const id = ctx.oidc.client?.clientId ?? '?';
  const registered = ctx.oidc.client?.clientAuthMethod;
  const usedBasic = /^basic /i.test(ctx.get('authorization'));
  const used = usedBasic ? 'client_secret_basic' : 'client_secret_post';
  if (strictAuthMethod && registered?.startsWith('client_secret_') && registered !== 'client_secret_jwt'
      && used !== registered) {
    process.stderr.write(`token: 401 invalid_client client=${id} used ${used}, registered ${registered}\n`);
    ctx.status = 401;
    ctx.set('cache-control', 'no-store');
    ctx.body = {
      error: 'invalid_client',
      error_description: `client authentication failed: ${used} used, client registered for ${registered}`,
    };
    return;
  }
  stats.token_successes += 1;
  stats.successes_by_client[id] = (stats.successes_by_client[id] ?? 0) + 1;
  process.stderr.write(`token: 200 client=${id}\n`);
});
provider.on('grant.error', (ctx, err) => {
  const id = ctx.oidc?.client?.clientId ?? '?';
  const detail = err.error_detail ?? err.cause?.message ?? '';
  process.stderr.write(`token: ${err.statusCode ?? err.status ?? '?'} ${err.message} client=${id} ${detail}\n`);
});
provider.on('server_error', (_ctx, err) => {
  process.stderr.write(`server_error: ${err.stack ?? err}\n`);
});

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const oidc = provider.callback();

// Answers the test-control endpoints; false when `req` is not one of them.
function control(req, res) {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/__stats' && req.method === 'GET') {
    return sendJson(res, 200, { ...stats, fail_mode: fail.mode, fail_remaining: fail.remaining });
  }
  if (url.pathname === '/__reset' && req.method === 'POST') {
    stats.token_requests = 0;
    stats.token_successes = 0;
    stats.successes_by_client = {};
    fail = { mode: null, remaining: 0 };
    return sendJson(res, 200, { ok: true });
  }
  if (url.pathname === '/__fail' && req.method === 'POST') {
    const mode = url.searchParams.get('mode');
    const count = Number.parseInt(url.searchParams.get('count') ?? '1', 10);
    const delayMs = Number.parseInt(url.searchParams.get('ms') ?? '1000', 10);
    if (!FAIL_MODES.includes(mode) || !Number.isInteger(count) || count < 0
        || !Number.isInteger(delayMs) || delayMs < 0) {
      return sendJson(res, 400, { error: 'want mode=500|garbage|hang|delay, count=N (N >= 0), ms=M' });
    }
    fail = { mode: count > 0 ? mode : null, remaining: count, delayMs };
    return sendJson(res, 200, { ok: true, mode, count });
  }
  if (url.pathname === '/__introspect' && req.method === 'GET') {
    // Whether the server issued this access token and it has not expired (the provider's own
    // token store and validity check, as its introspection endpoint uses; no client auth here;
    // `find` alone would still return a token within the 5s clock tolerance).
    const value = url.searchParams.get('token') ?? '';
    provider.ClientCredentials.find(value).then(
      (t) => sendJson(res, 200, t
        ? { active: t.isValid, client_id: t.clientId, scope: t.scope ?? null, exp: t.exp }
        : { active: false }),
      (e) => sendJson(res, 500, { error: String(e) }),
    );
    return undefined;
  }
  return false;
}

function handle(req, res) {
  if (control(req, res) !== false) return undefined;
  const url = new URL(req.url, 'http://x');
  if (url.pathname === tokenPath && req.method === 'POST') {
    stats.token_requests += 1;
    if (fail.remaining > 0) {
      const { mode, delayMs } = fail;
      fail.remaining -= 1;
      if (fail.remaining === 0) fail.mode = null;
      process.stderr.write(`token: injected failure ${mode}\n`);
      if (mode === 'delay') {
        // Answered normally, only late (the body waits, paused, in the request stream).
        setTimeout(() => oidc(req, res), delayMs ?? 1000);
        return undefined;
      }
      req.resume();
      switch (mode) {
        case '500':
          return sendJson(res, 500, { error: 'server_error', error_description: 'injected failure' });
        case 'garbage':
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end('<html>this is not a token response</html>');
        default: // hang
          hanging.add(res);
          res.on('close', () => hanging.delete(res));
          return undefined;
      }
    }
  }
  return oidc(req, res);
}

const server = tls
  ? https.createServer({ cert: readFileSync(cfg.cert), key: readFileSync(cfg.key) }, handle)
  : http.createServer(handle);

const controlServer = controlPort === null
  ? null
  : http.createServer((req, res) => {
    if (control(req, res) === false) sendJson(res, 404, { error: 'control port: /__stats, /__reset, /__fail, /__introspect only' });
  });

function listen(srv, p, what) {
  return new Promise((resolve) => {
    srv.on('error', (e) => die(`${what}: listening on ${args.host}:${p}: ${e.message}`));
    srv.listen(p, args.host, () => resolve(srv.address().port));
  });
}

const actual = await listen(server, port, 'server');
const actualControl = controlServer ? await listen(controlServer, controlPort, 'control server') : null;
process.stderr.write(
  `oidc-provider ${issuer} listening on ${tls ? 'https' : 'http'}://${args.host}:${actual}, `
    + `token endpoint ${tokenPath}, ttl ${ttlSeconds}s, ${clients.length} client(s)`
    + `${actualControl ? `, control on http://${args.host}:${actualControl}` : ''}\n`,
);
process.stdout.write(`READY ${actual}\n`);

function shutdown() {
  const servers = [server, controlServer].filter(Boolean);
  let open = servers.length;
  for (const srv of servers) {
    srv.close(() => { open -= 1; if (open === 0) process.exit(0); });
    srv.closeAllConnections();
  }
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
