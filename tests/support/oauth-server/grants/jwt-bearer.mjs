// The RFC 7523 section 2.1 grant (`urn:ietf:params:oauth:grant-type:jwt-bearer`) for the test
// authorization server, registered with oidc-provider's `registerGrantType`. The assertion is
// verified with `jose` (independent of the proxy's JWT code) against the public key registered
// for its issuer, then an access token is issued like a client-credentials token.
//
// Config (the server's FILE.json), optional:
//   "jwt_bearer": {
//     "client_id": "jwt-bearer",          // the public client (auth method none) the grant is
//                                         // registered for; the proxy sends it as client_id
//     "issuers": [
//       {"iss": "egress@proj.iam.gserviceaccount.com", "public_key": "/keys/sa.pub.pem",
//        "kid": "abc123", "alg": "RS256", "subjects": ["svc-a"], "scopes": ["read", "write"]}
//     ]
//   }
// An assertion must: be signed by its issuer's key (`alg`, and `kid` in the header when
// registered), carry `aud` equal to the issuer of this server or the token endpoint URL as seen
// by it, `iat`, `exp` at most one hour after `iat` (Google's rule), a `jti` never seen before,
// and a `sub` in `subjects` when they are listed (no `sub`: the issuer acts as itself). The
// scopes asked for (form `scope`, else the assertion's `scope` claim, as Google reads it) must
// be within `scopes`.
//
// The server's hooks: `clients(cfg)` (the public client to register) and
// `register(provider, cfg, tokenPath)`.

import { readFileSync } from 'node:fs';
import * as crypto from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { errors } from 'oidc-provider';

export const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const MAX_LIFETIME_S = 3600;

function section(cfg) {
  return cfg.jwt_bearer ?? null;
}

// The public client the grant is registered for (none when the config has no `jwt_bearer`).
export function clients(cfg) {
  const jb = section(cfg);
  if (jb === null) return [];
  return [{
    client_id: jb.client_id ?? 'jwt-bearer',
    grant_types: [GRANT_TYPE],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'none',
  }];
}

function loadIssuers(jb) {
  return (jb.issuers ?? []).map((i, n) => {
    if (typeof i.iss !== 'string' || !i.iss) throw new Error(`jwt_bearer.issuers[${n}].iss missing`);
    return {
      iss: i.iss,
      key: crypto.createPublicKey(readFileSync(i.public_key)),
      kid: i.kid ?? null,
      alg: i.alg ?? 'RS256',
      subjects: i.subjects ?? null,
      scopes: new Set(i.scopes ?? []),
    };
  });
}

export function register(provider, cfg, tokenPath) {
  const jb = section(cfg);
  if (jb === null) return;
  const issuers = loadIssuers(jb);
  const seenJti = new Set();

  async function handler(ctx) {
    const bad = (why) => {
      process.stderr.write(`jwt-bearer: refused: ${why}\n`);
      return new errors.InvalidGrant(why);
    };
    const { assertion } = ctx.oidc.params;
    if (!assertion) throw bad('no assertion');
    let claims;
    let header;
    try {
      claims = decodeJwt(assertion);
      header = decodeProtectedHeader(assertion);
    } catch {
      throw bad('the assertion is not a JWT');
    }
    const reg = issuers.find((i) => i.iss === claims.iss);
    if (!reg) throw bad(`unknown issuer ${JSON.stringify(claims.iss)}`);
    if (reg.kid !== null && header.kid !== reg.kid) throw bad(`kid ${JSON.stringify(header.kid)} is not the registered one`);
    const tokenUrl = `${ctx.secure ? 'https' : 'http'}://${ctx.get('host')}${tokenPath}`;
    let verified;
    try {
      verified = await jwtVerify(assertion, reg.key, {
        issuer: reg.iss,
        audience: [tokenUrl, provider.issuer],
        algorithms: [reg.alg],
        requiredClaims: ['iat', 'exp', 'jti'],
        clockTolerance: 5,
      });
    } catch (e) {
      throw bad(`assertion: ${e.code ?? ''} ${e.message}`);
    }
    const p = verified.payload;
    if (p.exp - p.iat > MAX_LIFETIME_S) throw bad('exp is more than an hour after iat');
    const jtiKey = `${p.iss}\u0000${p.jti}`;
    if (seenJti.has(jtiKey)) throw bad(`jti ${p.jti} replayed`);
    seenJti.add(jtiKey);
    if (reg.subjects !== null && !reg.subjects.includes(p.sub)) throw bad(`subject ${JSON.stringify(p.sub)} not allowed`);
    const scope = ctx.oidc.params.scope ?? (typeof p.scope === 'string' ? p.scope : '');
    const scopes = scope.split(' ').filter(Boolean);
    const denied = scopes.filter((s) => !reg.scopes.has(s));
    if (denied.length) throw bad(`scope ${denied.join(' ')} not granted to ${p.iss}`);

    const token = new provider.ClientCredentials({
      client: ctx.oidc.client,
      scope: scopes.join(' ') || undefined,
    });
    const value = await token.save();
    process.stderr.write(`jwt-bearer: 200 iss=${p.iss} sub=${p.sub ?? '-'} scope=${scopes.join(' ') || '-'}\n`);
    ctx.body = {
      access_token: value,
      token_type: 'Bearer',
      expires_in: token.expiration,
      ...(token.scope ? { scope: token.scope } : {}),
    };
  }

  provider.registerGrantType(GRANT_TYPE, handler, ['assertion', 'scope']);
}
