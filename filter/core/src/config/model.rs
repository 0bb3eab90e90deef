//! The validated config: every string parsed, every cross-reference resolved.

use crate::secret::Secret;
use crate::target_url::TargetUrl;
pub use crate::types::{ClientAuth, PathMode, SigningAlg};
use crate::types::{LogLevel, Method};
use std::collections::BTreeMap;
use std::time::Duration;

/// A config that passed validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpSettings,
    pub enabled: bool,
    /// `egress.path_mode`.
    pub path_mode: PathMode,
    pub token_store: TokenStore,
    pub defaults: Defaults,
    pub targets: Vec<Target>,
    pub routes: Vec<Route>,
    pub endpoints: Endpoints,
    pub logger: Logger,
    /// `egress.callers`; `None`: callers are not identified.
    pub callers: Option<Callers>,
}

impl Config {
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: ListenAddr,
    pub read_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
}

/// An address to bind: an IP literal and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub ip: std::net::IpAddr,
    pub port: u16,
}

/// Why a listen address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenAddrError {
    #[error("{text:?} is not host:port (e.g. \":8080\" or \"127.0.0.1:8080\")")]
    NotHostPort { text: String },
    #[error("port {port:?} in {text:?} is not a number from 0 to 65535")]
    Port { port: String, text: String },
    #[error(
        "host {host:?} in {text:?} must be an IP address, localhost, or empty for all interfaces"
    )]
    Host { host: String, text: String },
}

impl ListenAddr {
    /// Parses `":8080"` (all interfaces), `"127.0.0.1:8080"`, `"[::1]:8080"`, `"localhost:8080"`.
    pub fn parse(text: &str) -> Result<Self, ListenAddrError> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| ListenAddrError::NotHostPort { text: text.into() })?;
        let port: u16 = port.parse().map_err(|_| ListenAddrError::Port {
            port: port.into(),
            text: text.into(),
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match host {
            "" => std::net::IpAddr::from([0, 0, 0, 0]),
            "localhost" => std::net::IpAddr::from([127, 0, 0, 1]),
            h => h.parse().map_err(|_| ListenAddrError::Host {
                host: h.into(),
                text: text.into(),
            })?,
        };
        Ok(Self { ip, port })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::net::SocketAddr::new(self.ip, self.port))
    }
}

#[derive(Debug, Clone)]
pub enum TokenStore {
    Memory,
    Redis(RedisStore),
}

#[derive(Debug, Clone)]
pub struct RedisStore {
    pub address: String,
    pub password: Option<Secret>,
    pub db: u32,
    pub key_prefix: String,
}

#[derive(Debug, Clone)]
pub struct Defaults {
    pub timeout: Duration,
    pub retry_count: u32,
    pub retry_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub url: TargetUrl,
    pub timeout: Duration,
    pub auth: Auth,
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// `None`: every authenticated caller.
    pub allow: Option<crate::callers::Allow>,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub insecure_skip_verify: bool,
    /// `None`: the system CA bundle.
    pub ca_cert: Option<String>,
    pub client_cert: Option<ClientCert>,
    /// SNI and the name verified in the certificate.
    pub server_name: String,
}

#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Auth {
    None,
    ApiKey { header: String, key: Secret },
    Bearer { token: Secret },
    Basic { username: String, password: Secret },
    Mtls,
    OAuth2(OAuth2Settings),
    AwsSigv4(AwsSigv4Settings),
}

impl Auth {
    /// The `auth.type` spelling.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::ApiKey { .. } => "api_key",
            Auth::Bearer { .. } => "bearer",
            Auth::Basic { .. } => "basic",
            Auth::Mtls => "mtls",
            Auth::OAuth2(o) => o.grant.kind(),
            Auth::AwsSigv4(_) => "aws_sigv4",
        }
    }
}

impl Auth {
    /// The file on the proxy's host this credential needs (the `auth.` field path and the path
    /// as written), if any. The filter cannot read files: such a target is push-only (see
    /// [`crate::build::push_only`]).
    pub fn host_file(&self) -> Option<(&'static str, &str)> {
        match self {
            Auth::OAuth2(o) => match &o.grant {
                Grant::ClientCredentials => o
                    .federated_token_file
                    .as_deref()
                    .map(|f| ("auth.federated_token_file", f)),
                Grant::TokenExchange(x) => {
                    Some(("auth.subject_token_file", x.subject_token_file.as_str()))
                }
                Grant::JwtBearer(j) => match &j.key {
                    JwtBearerKey::ServiceAccountFile { path, .. } => {
                        Some(("auth.service_account_file", path.as_str()))
                    }
                    JwtBearerKey::Inline { .. } => None,
                },
            },
            Auth::AwsSigv4(a) => match &a.source {
                AwsCredentialSource::WebIdentity(w) => {
                    Some(("auth.web_identity.token_file", w.token_file.as_str()))
                }
                AwsCredentialSource::Static(_) => None,
            },
            Auth::None | Auth::ApiKey { .. } | Auth::Bearer { .. } | Auth::Basic { .. } => None,
            Auth::Mtls => None,
        }
    }
}

/// The OAuth2 grant a token is obtained with. Every grant shares the token machinery (record,
/// shared cache, refresh ahead, outage policy, pushes, redis store): only the token request
/// differs (`crate::tokens::request`).
#[derive(Debug, Clone)]
pub enum Grant {
    /// `oauth2_client_credentials` (RFC 6749 section 4.4).
    ClientCredentials,
    /// `oauth2_jwt_bearer` (RFC 7523 section 2.1).
    JwtBearer(JwtBearerGrant),
    /// `oauth2_token_exchange` (RFC 8693).
    TokenExchange(TokenExchangeGrant),
}

impl Grant {
    /// The `auth.type` spelling.
    pub fn kind(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => crate::tokens::grant::CLIENT_CREDENTIALS,
            Grant::JwtBearer(_) => crate::tokens::grant::JWT_BEARER,
            Grant::TokenExchange(_) => crate::tokens::grant::TOKEN_EXCHANGE,
        }
    }
}

/// `oauth2_jwt_bearer`: a signed assertion is the grant.
#[derive(Debug, Clone)]
pub struct JwtBearerGrant {
    pub key: JwtBearerKey,
    /// The assertion's `aud`; `None`: the token URL.
    pub audience: Option<String>,
}

/// `oauth2_token_exchange`: the subject token is the content of `subject_token_file`, read
/// by the refresher on every fetch (push-only).
#[derive(Debug, Clone)]
pub struct TokenExchangeGrant {
    pub subject_token_file: String,
    /// Default `urn:ietf:params:oauth:token-type:jwt`.
    pub subject_token_type: String,
    pub audience: Option<String>,
    pub resource: Option<String>,
}

#[derive(Debug, Clone)]
pub enum JwtBearerKey {
    /// A Google service-account JSON key on the refresher's host (push-only): `iss` is its
    /// `client_email`, `kid` its `private_key_id`, the default token URL its `token_uri`.
    /// `subject`: the user impersonated (domain-wide delegation); `None`: no `sub` claim.
    ServiceAccountFile {
        path: String,
        subject: Option<String>,
    },
    /// `issuer` and `subject` in the config; the key is [`OAuth2Settings::private_key`] (with
    /// `signing_alg`, `key_id`), inlined by `egressctl compile`: the filter can sign.
    Inline { issuer: String, subject: String },
}

#[derive(Debug, Clone)]
pub struct OAuth2Settings {
    pub grant: Grant,
    /// `None` only for a service-account key without `token_url`: the refresher takes the key
    /// file's `token_uri`.
    pub token_url: Option<TargetUrl>,
    /// Client authentication (empty with [`ClientAuth::None`]).
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    pub params: BTreeMap<String, String>,
    pub client_auth: ClientAuth,
    pub private_key: Option<String>,
    pub signing_alg: SigningAlg,
    pub key_id: Option<String>,
    /// `client_auth: federated_token_file`: the file whose content is the client assertion,
    /// read by the refresher on every fetch (push-only).
    pub federated_token_file: Option<String>,
    pub refresh_before_expiry: Duration,
    pub token_timeout: Duration,
    pub default_lifetime: Duration,
    /// TLS towards the token endpoint (verified against the target's `ca_cert`, or the system
    /// bundle), when `token_url` is https.
    pub tls: Option<TlsSettings>,
}

/// `aws_sigv4`: every request signed with AWS Signature Version 4.
#[derive(Debug, Clone)]
pub struct AwsSigv4Settings {
    pub region: String,
    pub service: String,
    pub payload: crate::sigv4::PayloadMode,
    pub source: AwsCredentialSource,
}

#[derive(Debug, Clone)]
pub enum AwsCredentialSource {
    /// Keys in the config: the filter signs with them.
    Static(crate::sigv4::AwsKeys),
    /// Temporary credentials from STS, fetched and pushed by `egressctl token refresh`.
    WebIdentity(WebIdentitySettings),
}

#[derive(Debug, Clone)]
pub struct WebIdentitySettings {
    pub role_arn: String,
    pub token_file: String,
    pub session_name: String,
    pub sts_url: TargetUrl,
    /// TLS towards STS when `sts_url` is https (the target's `ca_cert`, else the system bundle).
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Normalized: starts with `/`, no trailing `/`.
    pub path_prefix: String,
    pub target: String,
    pub strip_prefix: Option<String>,
    pub rewrite_prefix: Option<String>,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    /// Narrows the target's `allow`.
    pub allow: Option<crate::callers::Allow>,
}

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub egress: String,
    pub health: Option<String>,
    pub ready: Option<String>,
    pub metrics: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    Stderr,
    File(String),
}

#[derive(Debug, Clone)]
pub struct Logger {
    pub level: LogLevel,
    pub format: LogFormat,
    pub output: LogOutput,
}

/// `egress.callers`, validated.
#[derive(Debug, Clone)]
pub struct Callers {
    pub mtls: Option<CallersMtls>,
    /// Issuers in the filter's form; public key and JWKS files are read by `egressctl compile`.
    pub jwt: Vec<crate::callers::IssuerPlan>,
}

/// `egress.callers.mtls`: the egress listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallersMtls {
    pub server_cert: String,
    pub server_key: String,
    pub client_ca: String,
    pub require_client_cert: bool,
}

impl Callers {
    /// The filter's view.
    pub fn plan(&self) -> crate::callers::CallersPlan {
        crate::callers::CallersPlan {
            mtls: self.mtls.is_some(),
            jwt: self.jwt.clone(),
        }
    }
}
