//! The config file as written: what `config.yaml` may contain, before validation.
//!
//! Every field is documented here; the README's config reference follows these comments.
//! Durations are strings (`250ms`, `30s`, `1m`) and URLs are strings; both are checked during
//! validation, so that each mistake is reported with its field path.

use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::BTreeMap;

pub use super::raw_callers::*;

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    /// The listener callers send egress requests to.
    pub http: RawHttp,
    /// Targets, routes and credentials.
    pub egress: RawEgress,
    /// Paths the proxy answers itself.
    #[serde(default)]
    pub endpoints: Option<RawEndpoints>,
    /// Request logs and the filter's own log level.
    #[serde(default)]
    pub logger: Option<RawLogger>,
}

/// `http`: the egress listener.
#[derive(Debug, Clone, Deserialize)]
pub struct RawHttp {
    /// Address Envoy's egress listener binds: `":8080"` (all interfaces), `"127.0.0.1:8080"`,
    /// `"[::1]:8080"`.
    pub addr: String,
    /// Time allowed to receive a whole request (Envoy: the connection manager's
    /// `request_timeout`).
    #[serde(default)]
    pub read_timeout: Option<String>,
    /// Time allowed for a whole exchange, request and response (Envoy: the connection
    /// manager's `max_stream_duration`).
    #[serde(default)]
    pub write_timeout: Option<String>,
}

/// `egress`: the credential-injecting proxy.
#[derive(Debug, Clone, Deserialize)]
pub struct RawEgress {
    /// `false` renders a listener that answers every egress path with 503 `egress_disabled`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What happens to a request path that is not plain: `canonicalize` (the default: brought
    /// to its canonical spelling, or refused when invalid) or `strict` (refused with 400
    /// `invalid_path`; with `--engine auto`, a config of static credentials then loads no wasm
    /// module).
    #[serde(default)]
    pub path_mode: Option<String>,
    /// Where OAuth2 tokens are kept (`memory`, the default, or `redis`).
    #[serde(default)]
    pub token_store: Option<RawTokenStore>,
    /// Defaults for every target.
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    /// External services by name, in the order written.
    #[serde(default)]
    pub targets: IndexMap<String, RawTarget>,
    /// Incoming path prefixes and the target each one goes to.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Who may call: client certificates (SPIFFE IDs) and JWT issuers. Absent: every caller
    /// that reaches the listener is served.
    #[serde(default)]
    pub callers: Option<RawCallers>,
}

fn default_true() -> bool {
    true
}

/// `egress.token_store`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawTokenStore {
    /// `memory` (each proxy keeps its own tokens in proxy-wasm shared data) or `redis` (tokens
    /// are shared through redis by `egressctl token refresh`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Required when `type: redis`.
    #[serde(default)]
    pub redis: Option<RawRedis>,
}

/// `egress.token_store.redis`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawRedis {
    /// `host:port` of the redis server.
    pub address: String,
    /// Password (`AUTH`); empty for none.
    #[serde(default)]
    pub password: Option<String>,
    /// Database number.
    #[serde(default)]
    pub db: u32,
    /// Prefix of every key written.
    #[serde(default)]
    pub key_prefix: Option<String>,
}

/// `egress.defaults`: apply to every target unless the target says otherwise.
#[derive(Debug, Clone, Deserialize)]
pub struct RawDefaults {
    /// Upstream timeout for a whole request (Envoy route `timeout`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Retries after the first attempt. Idempotent methods retry on connect failure, reset and
    /// 502/503/504; POST and PATCH retry only when the request cannot have reached the target
    /// (connect failure, refused stream).
    #[serde(default)]
    pub retry_count: Option<u32>,
    /// Base interval of Envoy's retry back-off (jittered, growing up to 10x).
    #[serde(default)]
    pub retry_delay: Option<String>,
}

/// `egress.targets.<name>`: one external service.
#[derive(Debug, Clone, Deserialize)]
pub struct RawTarget {
    /// Base URL; request paths are joined under its path.
    pub url: String,
    /// Overrides `defaults.timeout`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// The credential attached to each request. No `auth` block: no credential.
    #[serde(default)]
    pub auth: Option<RawAuth>,
    /// TLS towards the target. An `https` URL is verified TLS even without this block.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Callers admitted (any entry matches); absent: every authenticated caller.
    #[serde(default)]
    pub allow: Option<RawAllow>,
}

/// `egress.targets.<name>.auth`. Which fields apply depends on `type`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawAuth {
    /// `api_key`, `bearer`, `basic`, `mtls`, `oauth2_client_credentials` or `aws_sigv4`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `api_key`: header name carrying the key.
    #[serde(default)]
    pub header: Option<String>,
    /// `api_key`: the key.
    #[serde(default)]
    pub key: Option<String>,
    /// `bearer`: the static token sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<String>,
    /// `basic`: user name.
    #[serde(default)]
    pub username: Option<String>,
    /// `basic`: password.
    #[serde(default)]
    pub password: Option<String>,
    /// `oauth2_client_credentials`: token endpoint URL.
    #[serde(default)]
    pub token_url: Option<String>,
    /// `oauth2_client_credentials`: client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `oauth2_client_credentials`: client secret (not with `client_auth: private_key_jwt`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// `oauth2_client_credentials`: scopes requested, joined with spaces.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// `oauth2_client_credentials`: how long before expiry a token is refreshed (default 60s).
    #[serde(default)]
    pub refresh_before_expiry: Option<String>,
    /// `oauth2_client_credentials`: extra form parameters (`audience`, `resource`, ...).
    #[serde(default)]
    pub params: Option<BTreeMap<String, String>>,
    /// `oauth2_client_credentials`: `client_secret_basic` (default), `client_secret_post`,
    /// `private_key_jwt` or `federated_token_file`; `oauth2_token_exchange`:
    /// `client_secret_basic`, `client_secret_post` or `none`.
    #[serde(default)]
    pub client_auth: Option<String>,
    /// `private_key_jwt`: path of the PEM private key signing the client assertion.
    #[serde(default)]
    pub private_key: Option<String>,
    /// `private_key_jwt`: `RS256` (default) or `ES256`.
    #[serde(default)]
    pub signing_alg: Option<String>,
    /// `private_key_jwt`: `kid` header of the client assertion.
    #[serde(default)]
    pub key_id: Option<String>,
    /// `oauth2_client_credentials`: time allowed for one token fetch (default 10s).
    #[serde(default)]
    pub token_timeout: Option<String>,
    /// `oauth2_client_credentials`: lifetime assumed when the token reply has no `expires_in`
    /// and the token is not a JWT with `exp` (default 300s).
    #[serde(default)]
    pub default_lifetime: Option<String>,
    /// `oauth2_jwt_bearer`: a Google service-account JSON key (push-only: read by `egressctl
    /// token refresh` on its host).
    #[serde(default)]
    pub service_account_file: Option<String>,
    /// `oauth2_jwt_bearer`: `iss` of the assertion (with `subject` and `private_key`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// `oauth2_jwt_bearer`: `sub` of the assertion.
    #[serde(default)]
    pub subject: Option<String>,
    /// `oauth2_jwt_bearer`: `aud` of the assertion (default the token URL); token exchange:
    /// the `audience` parameter.
    #[serde(default)]
    pub audience: Option<String>,
    /// `oauth2_token_exchange`: file holding the subject token (a projected service-account
    /// token), read by `egressctl token refresh` on every fetch.
    #[serde(default)]
    pub subject_token_file: Option<String>,
    /// `oauth2_token_exchange`: type of the subject token (default
    /// `urn:ietf:params:oauth:token-type:jwt`).
    #[serde(default)]
    pub subject_token_type: Option<String>,
    /// `oauth2_token_exchange`: the `resource` parameter (an absolute URI, RFC 8707).
    #[serde(default)]
    pub resource: Option<String>,
    /// `oauth2_client_credentials` with `client_auth: federated_token_file`: file whose
    /// content is the client assertion (Azure workload identity), read on every fetch.
    #[serde(default)]
    pub federated_token_file: Option<String>,
    /// `aws_sigv4`: AWS region of the signing scope (`us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// `aws_sigv4`: AWS service of the signing scope (`s3`, `sts`, `execute-api`, ...).
    #[serde(default)]
    pub service: Option<String>,
    /// `aws_sigv4`: static access key id (with `secret_access_key`; not with `web_identity`).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// `aws_sigv4`: static secret access key.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// `aws_sigv4`: session token of temporary static credentials (optional).
    #[serde(default)]
    pub session_token: Option<String>,
    /// `aws_sigv4`: `unsigned` (default: `x-amz-content-sha256: UNSIGNED-PAYLOAD`, the body
    /// streams) or `signed` (the body's SHA-256 is signed: the proxy holds the whole body).
    #[serde(default)]
    pub payload: Option<String>,
    /// `aws_sigv4`: temporary credentials from STS `AssumeRoleWithWebIdentity`, fetched and
    /// pushed by `egressctl token refresh` (instead of static keys).
    #[serde(default)]
    pub web_identity: Option<RawWebIdentity>,
}

/// `egress.targets.<name>.auth.web_identity` (`aws_sigv4`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawWebIdentity {
    /// ARN of the role to assume (`arn:aws:iam::123456789012:role/name`).
    #[serde(default)]
    pub role_arn: String,
    /// File holding the web identity token (a projected service-account token), read on
    /// every refresh.
    #[serde(default)]
    pub token_file: String,
    /// `RoleSessionName` (default `egress`).
    #[serde(default)]
    pub session_name: Option<String>,
    /// STS endpoint (default `https://sts.<region>.amazonaws.com`).
    #[serde(default)]
    pub sts_url: Option<String>,
}

/// `egress.targets.<name>.tls`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawTls {
    /// Use TLS towards the target (implied by an `https` URL).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Skip certificate verification. Only for targets with self-signed certificates you
    /// cannot otherwise trust; prefer `ca_cert`.
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
    /// Client certificate (PEM) presented to the target: required for `auth.type: mtls`.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// Client private key (PEM) for `client_cert`.
    #[serde(default)]
    pub client_key: Option<String>,
    /// CA bundle (PEM) that verifies the target; the system bundle when absent.
    #[serde(default)]
    pub ca_cert: Option<String>,
    /// SNI and name to verify; the URL's host when absent.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// `egress.routes[i]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawRoute {
    /// Incoming path prefix, matched at a segment boundary; the longest match wins.
    pub path_prefix: String,
    /// Name of a target in `egress.targets`.
    pub target: String,
    /// Removed from the front of the incoming path (must be a prefix of `path_prefix`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Put in front of what remains, under the target URL's own path.
    #[serde(default)]
    pub rewrite_prefix: Option<String>,
    /// Allowed methods; all methods when absent.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Narrows the target's `allow`: a request must pass both.
    #[serde(default)]
    pub allow: Option<RawAllow>,
}

/// `endpoints`: paths the proxy serves itself.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawEndpoints {
    /// Every route's `path_prefix` must lie under this prefix (default `/egress`).
    #[serde(default)]
    pub egress: Option<String>,
    /// Liveness: 200 JSON.
    #[serde(default)]
    pub health: Option<String>,
    /// Readiness: 200 when every OAuth2 target holds a valid token, else 503.
    #[serde(default)]
    pub ready: Option<String>,
    /// Prometheus text: Envoy's stats, with per-target request counts by status class.
    #[serde(default)]
    pub metrics: Option<String>,
}

/// `logger`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawLogger {
    /// The filter's own log level: `trace`, `debug`, `info` (default), `warn`, `error`.
    /// Request lines ("Egress request") are written at `info` and dropped at `warn`/`error`.
    #[serde(default)]
    pub level: Option<String>,
    /// `json` (default): one JSON object per line.
    #[serde(default)]
    pub format: Option<String>,
    /// Where request lines go: `stdout` (default), `stderr`, or a file path.
    #[serde(default)]
    pub output: Option<String>,
}
