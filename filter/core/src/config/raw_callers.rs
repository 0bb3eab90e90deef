//! `egress.callers` and `allow` as written (see [`super::raw`]).

use serde::Deserialize;

/// `egress.callers`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawCallers {
    /// The egress listener speaks TLS and verifies client certificates; a certificate's URI
    /// SAN (a SPIFFE ID) identifies the caller.
    #[serde(default)]
    pub mtls: Option<RawCallersMtls>,
    /// JWT issuers whose tokens identify callers, one entry per issuer.
    #[serde(default)]
    pub jwt: Option<Vec<RawJwtIssuer>>,
}

/// `egress.callers.mtls`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawCallersMtls {
    /// The listener's certificate (PEM).
    pub server_cert: String,
    /// Its private key (PEM).
    pub server_key: String,
    /// CA bundle (PEM) client certificates are verified against.
    #[serde(default)]
    pub client_ca: Option<String>,
    /// `true` (default): the handshake fails without a valid client certificate. `false`: a
    /// client certificate is optional (callers may use a JWT instead).
    #[serde(default)]
    pub require_client_cert: Option<bool>,
}

/// `egress.callers.jwt[i]`: one issuer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawJwtIssuer {
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim must contain one of them; absent: `aud` is not checked.
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// Accepted `alg` values: HS256/384/512 RS256/384/512 PS256/384/512 ES256/384 EdDSA.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// HS*: the shared secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// RS/PS/ES/EdDSA: a PEM public key file.
    #[serde(default)]
    pub public_key: Option<String>,
    /// RS/PS/ES/EdDSA: a JWKS file.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// RS/PS/ES/EdDSA: the issuer's JWKS URL.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// CA bundle (PEM) that verifies `jwks_url`'s server; the system bundle when absent.
    #[serde(default)]
    pub jwks_ca: Option<String>,
    /// Headers the token is read from (default `Authorization` with `Bearer `).
    #[serde(default)]
    pub from_headers: Option<Vec<RawHeaderSource>>,
    /// Cookies the token is read from.
    #[serde(default)]
    pub from_cookies: Option<Vec<String>>,
    /// Claim holding the caller's roles, a dotted path (default `roles`).
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Tolerance for `exp` and `nbf` (default 30s).
    #[serde(default)]
    pub clock_skew: Option<String>,
}

/// `egress.callers.jwt[i].from_headers[j]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawHeaderSource {
    pub name: String,
    /// Text in front of the token, e.g. `"Bearer "`.
    #[serde(default)]
    pub value_prefix: Option<String>,
}

/// `allow` on a target or a route: a caller passes when it matches any entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawAllow {
    /// SPIFFE IDs; `spiffe://td/path/*` admits every ID below that path.
    #[serde(default)]
    pub spiffe_ids: Option<Vec<String>>,
    /// JWT `sub` values.
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
    /// Roles (any one of them) in the JWT's roles claim.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}
