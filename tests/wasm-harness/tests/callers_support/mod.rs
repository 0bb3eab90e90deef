//! What the caller-identity harness tests share (`callers.rs`, `callers_jwks.rs`,
//! `routed_role.rs`): the `auth-service` issuer's HS256 secret, caller JWTs with the claims the
//! filter checks, and the expectations on a refusal and on the caller the filter records.

#![allow(dead_code)]

use jwt_simple::prelude::*;
use proxy_wasm_harness::{Host, LocalResponse, Stream};

/// The HS256 secret of the `auth-service` issuer (`${JWT_SECRET}` in the configs).
pub const SECRET: &str = "gateway-secret-0123456789-abcdefghij";

/// The configs' environment: `JWT_SECRET` only.
pub fn secret_env(name: &str) -> Option<String> {
    (name == "JWT_SECRET").then(|| SECRET.to_string())
}

/// Claims of a caller token from `issuer` for the audience `egress-proxy`, issued now by the
/// host's clock, valid for `ttl_secs`, with `roles`.
pub fn caller_claims(
    host: &Host,
    issuer: &str,
    sub: &str,
    roles: &[&str],
    ttl_secs: u64,
) -> JWTClaims<serde_json::Map<String, serde_json::Value>> {
    let now = host
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut custom = serde_json::Map::new();
    custom.insert("roles".into(), serde_json::json!(roles));
    let mut c = Claims::with_custom_claims(custom, Duration::from_secs(ttl_secs))
        .with_issuer(issuer)
        .with_subject(sub)
        .with_audience("egress-proxy");
    c.issued_at = Some(UnixTimeStamp::from_secs(now));
    c.invalid_before = Some(UnixTimeStamp::from_secs(now));
    c.expires_at = Some(UnixTimeStamp::from_secs(now + ttl_secs));
    c
}

/// An `auth-service` token signed with [`SECRET`].
pub fn hs256_token(host: &Host, sub: &str, roles: &[&str], ttl_secs: u64) -> String {
    HS256Key::from_bytes(SECRET.as_bytes())
        .authenticate(caller_claims(host, "auth-service", sub, roles, ttl_secs))
        .unwrap()
}

/// Asserts the request was answered here with `status` and the JSON `error` code.
pub fn refused(stream: &Stream, status: u32, code: &str) -> LocalResponse {
    let reply = stream
        .local_response()
        .unwrap_or_else(|| panic!("forwarded: {:?}", stream.request_header_map()));
    assert_eq!(reply.status, status, "{}", reply.body_str());
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"], code);
    reply
}

/// The caller the filter recorded for the request (`egress_caller`).
pub fn caller(stream: &Stream) -> Option<String> {
    stream
        .filter_property(&["egress_caller"])
        .map(|v| String::from_utf8(v).unwrap())
}
