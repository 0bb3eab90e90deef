//! Caller identity and authorization (`egress.callers`, `allow` on targets and routes).
//!
//! - [`allow`]: who a target or route admits, SPIFFE ID patterns, the evaluation.
//! - [`token`]: where a caller's JWT is read from, and how it is removed from the request.
//! - [`jwt`]: signature and claim checks, keys from a secret, a PEM file or a JWKS.
//! - [`cache`]: the per-worker verified-token cache.
//! - [`jwks`]: `jwks_url` keys: fetched once per proxy, shared, refreshed, kept while down.
//! - [`auth`]: one request's identity and verdict: [`auth::Authenticator::authorize`].
//!
//! The plan types below are what `egressctl compile` writes and the filter reads.

pub mod allow;
pub mod auth;
pub mod cache;
pub mod jwks;
pub mod jwt;
pub mod token;

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

pub use allow::{Allow, Caller, JwtCaller};
pub use auth::{Authenticator, Authorized, Refusal};
pub use cache::TokenCache;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// JWT signature algorithms an issuer may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtAlg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwtAlg {
    pub const ALL: [JwtAlg; 12] = [
        JwtAlg::HS256,
        JwtAlg::HS384,
        JwtAlg::HS512,
        JwtAlg::RS256,
        JwtAlg::RS384,
        JwtAlg::RS512,
        JwtAlg::PS256,
        JwtAlg::PS384,
        JwtAlg::PS512,
        JwtAlg::ES256,
        JwtAlg::ES384,
        JwtAlg::EdDSA,
    ];

    /// The JOSE `alg` spelling (exact, case-sensitive).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlg::HS256 => "HS256",
            JwtAlg::HS384 => "HS384",
            JwtAlg::HS512 => "HS512",
            JwtAlg::RS256 => "RS256",
            JwtAlg::RS384 => "RS384",
            JwtAlg::RS512 => "RS512",
            JwtAlg::PS256 => "PS256",
            JwtAlg::PS384 => "PS384",
            JwtAlg::PS512 => "PS512",
            JwtAlg::ES256 => "ES256",
            JwtAlg::ES384 => "ES384",
            JwtAlg::EdDSA => "EdDSA",
        }
    }

    /// HMAC algorithms use a shared secret; every other one a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, JwtAlg::HS256 | JwtAlg::HS384 | JwtAlg::HS512)
    }
}

/// Where an issuer's token may be read from in a request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSource {
    pub name: String,
    /// Required in front of the token (compared without regard to ASCII case); empty: none.
    #[serde(default)]
    pub value_prefix: String,
}

impl HeaderSource {
    /// `Authorization: Bearer <token>`, the default source.
    pub fn bearer() -> Self {
        Self {
            name: "Authorization".into(),
            value_prefix: "Bearer ".into(),
        }
    }
}

/// `egress.callers` as the filter needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallersPlan {
    /// The listener verifies client certificates: a SPIFFE ID from the peer certificate is an
    /// identity.
    pub mtls: bool,
    pub jwt: Vec<IssuerPlan>,
}

/// One JWT issuer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerPlan {
    pub issuer: String,
    /// The token's `aud` must contain one of them; empty: `aud` is not checked.
    pub audiences: Vec<String>,
    pub algorithms: Vec<JwtAlg>,
    pub keys: KeySource,
    pub from_headers: Vec<HeaderSource>,
    pub from_cookies: Vec<String>,
    /// Dotted path of the roles claim (`roles`, `realm_access.roles`).
    pub roles_claim: String,
    pub clock_skew_secs: u64,
}

/// An issuer's verification keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySource {
    /// HS*: the shared secret.
    Secret {
        #[serde(deserialize_with = "crate::secret::value_or_ref")]
        secret: Secret,
    },
    /// A PEM public key; `pem` is filled by `egressctl compile` from `file` (the filter has no
    /// file system).
    PublicKey {
        file: String,
        #[serde(default)]
        pem: Option<String>,
    },
    /// A JWKS document; `jwks` is filled by `egressctl compile` from `file`.
    JwksFile {
        file: String,
        #[serde(default)]
        jwks: Option<String>,
    },
    /// A JWKS fetched at run time through the cluster [`crate::plan::wire::jwks_cluster`]
    /// (see [`jwks`]); `ca_cert` verifies its server (the system bundle when absent).
    JwksUrl {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_cert: Option<String>,
    },
}
