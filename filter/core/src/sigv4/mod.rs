//! AWS Signature Version 4, host-free: the filter signs each request after the rewrite with it,
//! and tests check it against botocore's signer.
//!
//! The signature covers the method, the path and query the target receives, `host`,
//! `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` when there is a session token,
//! and the caller's own `x-amz-*`, `content-type` and `content-md5` headers (S3 refuses
//! `x-amz-*` headers that are not signed).

pub mod canonical;
pub mod key;
// Pushed credentials arrive only as a signed push (`crate::push`: its refusals and body limit).
#[cfg(feature = "jwt")]
pub mod pushed;
pub mod sts;
pub mod time;

use crate::secret::Secret;
use canonical::{canonical_headers, canonical_query, canonical_uri};
pub use key::SigningKeys;
use serde::{Deserialize, Serialize};

/// `x-amz-content-sha256` for `payload: unsigned`.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Largest request body a `payload: signed` target takes: the proxy holds the whole body to
/// hash it (Envoy answers 413 beyond).
pub const SIGNED_PAYLOAD_MAX_BYTES: u32 = 16 * 1024 * 1024;

/// Whether the body is part of the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD`: the body streams through untouched.
    #[default]
    Unsigned,
    /// The SHA-256 of the body is signed: the proxy holds the whole body before sending it.
    Signed,
}

/// Where a target's AWS credentials come from, as the filter needs them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSigv4Credential {
    pub region: String,
    pub service: String,
    pub payload: PayloadMode,
    /// Static keys. `None`: temporary credentials pushed by `egressctl token refresh`.
    pub keys: Option<AwsKeys>,
}

/// An access key pair, with the session token of temporary credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsKeys {
    pub access_key_id: String,
    /// A value, or in the filter config a reference to an environment variable.
    #[serde(deserialize_with = "crate::secret::value_or_ref")]
    pub secret_access_key: Secret,
    #[serde(default, deserialize_with = "crate::secret::opt_value_or_ref")]
    pub session_token: Option<Secret>,
}

/// The body as far as the signature is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Unsigned,
    Body(&'a [u8]),
    /// The body's SHA-256, lower-case hex, computed as the body streamed by.
    Sha256Hex(&'a str),
}

/// One request as the target receives it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The `host` header: the target's authority (with the port when it is not the default).
    pub host: &'a str,
    /// `:path`, query included, exactly as sent.
    pub path: &'a str,
    /// Other headers to sign (`x-amz-*`, `content-type`, ...), as sent.
    pub headers: Vec<(String, String)>,
}

/// The result of signing: the headers to set, and the intermediate texts (tests, debugging;
/// they hold no secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    /// `authorization`, `x-amz-date`, `x-amz-content-sha256` and, with a session token,
    /// `x-amz-security-token`.
    pub headers: Vec<(String, String)>,
    pub canonical_request: String,
    pub string_to_sign: String,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The session token is a credential.
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Signed")
            .field("headers", &names)
            .field("canonical_request", &self.canonical_request)
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&hmac_sha256::Hash::hash(data))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    hmac_sha256::HMAC::mac(data, key)
}

/// Whether the service signs its paths the S3 way (as sent, encoded once).
fn is_s3(service: &str) -> bool {
    matches!(service, "s3" | "s3-object-lambda" | "s3express")
}

/// Signs `req` at `unix_ms` for `region`/`service`.
pub fn sign(
    keys: &AwsKeys,
    region: &str,
    service: &str,
    req: &Request<'_>,
    payload: Payload<'_>,
    unix_ms: u64,
) -> Signed {
    sign_with(
        keys,
        region,
        service,
        req,
        payload,
        unix_ms,
        &mut SigningKeys::new(),
    )
}

/// [`sign`], with the signing key taken from (or derived into) `signing_keys`: what the
/// filter does on every request, so the key is derived once a day, not per request.
pub fn sign_with(
    keys: &AwsKeys,
    region: &str,
    service: &str,
    req: &Request<'_>,
    payload: Payload<'_>,
    unix_ms: u64,
    signing_keys: &mut SigningKeys,
) -> Signed {
    let (date, stamp) = time::amz_dates(unix_ms);
    let content_sha = match payload {
        Payload::Unsigned => UNSIGNED_PAYLOAD.to_string(),
        Payload::Body(b) => sha256_hex(b),
        Payload::Sha256Hex(h) => h.to_ascii_lowercase(),
    };
    let mut own: Vec<(String, String)> = vec![
        ("x-amz-date".into(), stamp.clone()),
        ("x-amz-content-sha256".into(), content_sha.clone()),
    ];
    if let Some(t) = &keys.session_token {
        own.push(("x-amz-security-token".into(), t.expose().to_string()));
    }
    let mut to_sign: Vec<(String, String)> = vec![("host".into(), req.host.to_string())];
    to_sign.extend(own.iter().cloned());
    to_sign.extend(
        req.headers
            .iter()
            .filter(|(k, _)| !is_set_by_signer(k))
            .cloned(),
    );
    let (path, query) = req.path.split_once('?').unwrap_or((req.path, ""));
    let (headers_block, signed_headers) = canonical_headers(&to_sign);
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(path, is_s3(service)),
        canonical_query(query),
        headers_block,
        signed_headers,
        content_sha
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{stamp}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_signing = signing_keys.get(keys, &date, region, service);
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    let mut headers = vec![(
        "authorization".to_string(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            keys.access_key_id
        ),
    )];
    headers.extend(own);
    Signed {
        headers,
        canonical_request,
        string_to_sign,
    }
}

/// Headers the signer writes itself: a caller's copy is never signed (it is replaced or
/// removed before the request leaves).
pub fn is_set_by_signer(name: &str) -> bool {
    [
        "host",
        "authorization",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether a caller's header is signed along: `x-amz-*` (S3 refuses unsigned ones),
/// `content-type` and `content-md5`.
pub fn is_signed_caller_header(name: &str) -> bool {
    // Called for every request header: no allocation.
    let amz = name
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"));
    (amz && !is_set_by_signer(name))
        || name.eq_ignore_ascii_case("content-type")
        || name.eq_ignore_ascii_case("content-md5")
}

/// The caller's headers that are signed, from the request as it arrived (byte values; a
/// value that is not UTF-8 is left unsigned and the target will say so).
pub fn caller_headers_to_sign<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(k, _)| is_signed_caller_header(k))
        .filter_map(|(k, v)| {
            std::str::from_utf8(v)
                .ok()
                .map(|v| (k.to_ascii_lowercase(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
