// RFC 8693 token exchange for the test authorization server: registered on oidc-provider with
// `registerGrantType`, so client authentication, the client's allowed grant types, duplicate
// parameter checks and error replies are oidc-provider's own.
//
// Enabled by a `token_exchange` block in the server's JSON config:
//   "token_exchange": {
//     "issuer": "https://cluster.test",          // the subject token's `iss` (a "cluster issuer")
//     "public_key": "/keys/cluster.pub.pem",     // verifies the subject token (RS256 or ES256)
//     "subject_audience": "sts.test",            // optional: the subject token's required `aud`
//     "audience": "crm-api"                      // optional: the only `audience` a request may name
//   }
// and a client whose `grant_types` lists urn:ietf:params:oauth:grant-type:token-exchange.
//
// The subject token is verified with `jose` (signature, `iss`, `exp`/`nbf`, optional `aud`);
// it must be of type urn:ietf:params:oauth:token-type:jwt. The reply is an opaque access
// token of the authenticated client (a ClientCredentials token, so `/__introspect` knows it):
//   {"access_token", "issued_token_type": "...:access_token", "token_type": "Bearer",
//    "expires_in", "scope"?}
// One stderr line per exchange names the client and the subject's `sub` (never a token).
import { readFileSync } from 'node:fs';
import * as crypto from 'node:crypto';
import { jwtVerify } from 'jose';
import { errors } from 'oidc-provider';

export const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const PARAMETERS = [
  'subject_token', 'subject_token_type', 'audience', 'resource', 'scope',
  'requested_token_type', 'actor_token', 'actor_token_type',
];

// The server's hooks (see server.mjs): no clients of its own (a client opts in with
// `grant_types`), and `register`.
export function clients() {
  return [];
}

export function register(provider, cfg) {
  const te = cfg.token_exchange;
  if (te === undefined) return;
  if (typeof te.issuer !== 'string' || typeof te.public_key !== 'string') {
    throw new Error('config: token_exchange needs `issuer` and `public_key`');
  }
  let key;
  try {
    key = crypto.createPublicKey(readFileSync(te.public_key));
  } catch (e) {
    throw new Error(`config: token_exchange.public_key ${te.public_key}: ${e.message}`);
  }

  async function handler(ctx) {
    const { params, client } = ctx.oidc;
    if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter subject_token');
    if (params.subject_token_type !== JWT_TYPE) {
      throw new errors.InvalidRequest(`unsupported subject_token_type (this server takes ${JWT_TYPE})`);
    }
    if (params.actor_token) throw new errors.InvalidRequest('actor_token is not supported');
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('only access tokens are issued');
    }
    if (te.audience !== undefined && params.audience !== undefined && params.audience !== te.audience) {
      throw new errors.InvalidTarget(`unknown audience ${JSON.stringify(params.audience)}`);
    }
    let claims;
    try {
      ({ payload: claims } = await jwtVerify(params.subject_token, key, {
        issuer: te.issuer,
        ...(te.subject_audience ? { audience: te.subject_audience } : {}),
        algorithms: ['RS256', 'ES256'],
        requiredClaims: ['sub', 'exp'],
      }));
    } catch (e) {
      throw new errors.InvalidGrant(`subject_token rejected (${e.code ?? 'invalid'})`);
    }
    const allowed = new Set((client.scope ?? '').split(' ').filter(Boolean));
    const requested = (params.scope ?? '').split(' ').filter(Boolean);
    const denied = requested.filter((s) => !allowed.has(s));
    if (denied.length > 0) throw new errors.InvalidScope('requested scope is not allowed', denied.join(' '));

    const token = new provider.ClientCredentials({ client, scope: requested.join(' ') || undefined });
    ctx.oidc.entity('ClientCredentials', token);
    const value = await token.save();
    process.stderr.write(
      `token-exchange: issued client=${client.clientId} sub=${claims.sub}`
        + ` audience=${params.audience ?? '-'} resource=${params.resource ?? '-'}\n`,
    );
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      ...(token.scope ? { scope: token.scope } : {}),
    };
  }

  provider.registerGrantType(GRANT_TYPE, handler, PARAMETERS, ['resource', 'audience']);
}
