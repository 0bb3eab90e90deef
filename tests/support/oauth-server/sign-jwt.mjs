// Signs one JWT with `jose` (the JOSE library oidc-provider itself uses), independent of the
// proxy's own JWT code: the end-to-end tests' caller tokens.
//
//   node sign-jwt.mjs '{"alg":"RS256","key_file":"/k/rs.key","kid":"k1","claims":{...}}'
//   node sign-jwt.mjs '{"alg":"HS256","secret":"...","claims":{...}}'
//
// Prints the compact token on stdout. `key_file` is a PKCS#8 PEM private key.
import { readFileSync } from 'node:fs';
import { SignJWT, importPKCS8 } from 'jose';

const spec = JSON.parse(process.argv[2] ?? '{}');
const key = spec.secret !== undefined
  ? new TextEncoder().encode(spec.secret)
  : await importPKCS8(readFileSync(spec.key_file, 'utf8'), spec.alg);
const header = { alg: spec.alg, typ: 'JWT', ...(spec.kid ? { kid: spec.kid } : {}) };
const token = await new SignJWT(spec.claims).setProtectedHeader(header).sign(key);
process.stdout.write(token);
