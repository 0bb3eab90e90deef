//! [`FilterConfig`]: the JSON `egressctl compile` writes and the wasm filter reads.
//!
//! It is derived from a validated [`crate::config::Config`] by [`FilterConfig::from_config`], so
//! whatever reaches the filter was checked by `egressctl validate` first. The filter still parses
//! it strictly (`deny_unknown_fields`) and refuses to start on anything off.

use crate::secret::Secret;
use crate::target_url::TargetUrl;
pub use crate::types::{ClientAuth, LogLevel, Method, PathMode, SigningAlg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever the JSON shape changes incompatibly.
pub const FILTER_CONFIG_VERSION: u32 = 1;

/// Names shared by the filter and the Envoy config `egressctl` renders.
pub mod wire {
    /// Request header the filter sets to the target name; Envoy's routes match on it to pick
    /// the target's cluster, and strip it before the request leaves.
    pub const TARGET_HEADER: &str = "x-egress-target";
    /// Every header starting with this prefix is internal: callers' copies are removed.
    pub use crate::types::INTERNAL_HEADER_PREFIX;
    /// The one filter-state property the access log reads, as
    /// `"target":"%FILTER_STATE(wasm.egress_log:PLAIN)%"`: its value ([`log_fragment`])
    /// continues the JSON line with the method, path and target URL. One property, because
    /// each `set_property` is a costly host call; if the filter did not set it, Envoy prints
    /// `-` and the line is still valid JSON (`"target":"-"`).
    pub const PROP_LOG: &str = "egress_log";
    /// Filter state read by the access log as `"caller":"%FILTER_STATE(wasm.egress_caller:PLAIN)%"`
    /// (rendered only with `egress.callers`): the caller's SPIFFE ID or `<iss>/<sub>`,
    /// JSON-escaped.
    pub const PROP_CALLER: &str = "egress_caller";
    /// Filter-state property holding the SHA-256 (hex) of a request body, set by the egress
    /// filter for `payload: signed` targets and read by the filter in the sign role.
    pub const PROP_BODY_SHA256: &str = "egress_body_sha256";

    /// The value of [`PROP_LOG`]: `<target>","method":"<m>","path":"<p>","target_url":"<u>`,
    /// every part JSON-escaped, so it cannot break out of the line.
    pub fn log_fragment(target: &str, method: &str, path: &str, target_url: &str) -> String {
        // Built by hand: this runs on every request (`format!` and a `String` per escaped
        // field cost the filter more than the rest of its decision).
        let mut out =
            String::with_capacity(target.len() + method.len() + path.len() + target_url.len() + 40);
        push_escaped(&mut out, target);
        out.push_str(r#"","method":""#);
        push_escaped(&mut out, method);
        out.push_str(r#"","path":""#);
        push_escaped(&mut out, path);
        out.push_str(r#"","target_url":""#);
        push_escaped(&mut out, target_url);
        out
    }

    /// Escapes a string for use inside a JSON string literal (no surrounding quotes).
    pub fn json_escape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        push_escaped(&mut out, s);
        out
    }

    /// Whether JSON needs `b` escaped inside a string (`"`, `\\`, control characters).
    fn needs_escape(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }

    /// Appends `s` escaped as serde_json escapes it; most values need no escape at all.
    fn push_escaped(out: &mut String, s: &str) {
        if !s.bytes().any(needs_escape) {
            out.push_str(s);
            return;
        }
        let quoted = serde_json::Value::String(s.to_string()).to_string();
        out.push_str(quoted.get(1..quoted.len() - 1).unwrap_or_default());
    }

    /// Envoy cluster carrying a target's requests.
    pub fn target_cluster(target: &str) -> String {
        format!("egress_target_{target}")
    }

    /// Envoy cluster the filter fetches JWT issuer `index`'s `jwks_url` through (its position
    /// in `egress.callers.jwt`).
    pub fn jwks_cluster(index: usize) -> String {
        format!("egress_jwks_{index}")
    }

    /// Envoy cluster the filter's token callouts use for an OAuth2 target.
    pub fn token_cluster(target: &str) -> String {
        format!("egress_token_{target}")
    }

    /// Start of the Envoy route names of the `auto` engine's route leaves.
    pub const LEAF_ROUTE_PREFIX: &str = "egress/";

    /// Envoy route name of a leaf of config route `route_index` (its position in
    /// `FilterConfig.routes`) in the `auto` engine: `egress/<index>/<kind>`, `kind` naming the
    /// leaf (a method, `other`, ...). The filter in the routed role learns its route from this
    /// name ([`route_index_of`]).
    pub fn leaf_route_name(route_index: usize, kind: &str) -> String {
        format!("{LEAF_ROUTE_PREFIX}{route_index}/{kind}")
    }

    /// The config route index in a name made by [`leaf_route_name`]; `None` for any other
    /// name.
    pub fn route_index_of(route_name: &str) -> Option<usize> {
        let rest = route_name.strip_prefix(LEAF_ROUTE_PREFIX)?;
        let (index, kind) = rest.split_once('/')?;
        if kind.is_empty() || index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index.parse().ok()
    }
}

/// The listener a filter instance serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Routes and credentials for callers.
    #[default]
    Egress,
    /// Token pushes and status for `egressctl` (see `egress_core::push`).
    Push,
    /// After the egress filter and a buffer filter: signs requests of `aws_sigv4` targets in
    /// `payload: signed` mode with the body hash the egress filter recorded
    /// ([`wire::PROP_BODY_SHA256`]).
    Sign,
    /// The `auto` engine's role on routes Envoy routed itself: the route is known from the
    /// route name ([`wire::route_index_of`]); the filter identifies the caller and attaches an
    /// OAuth2 token, nothing else (Envoy rewrites the path and removes caller headers).
    Routed,
}

/// The filter's whole configuration (the plugin `configuration` in Envoy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// [`FILTER_CONFIG_VERSION`] at the time of writing.
    pub version: u32,
    /// `egress.enabled`: when false every egress path gets 503 `egress_disabled`.
    pub enabled: bool,
    /// `egress.path_mode` (left out when `canonicalize`: a module that predates it reads
    /// such a config, and refuses a strict one rather than canonicalising).
    #[serde(default, skip_serializing_if = "PathMode::is_canonicalize")]
    pub path_mode: PathMode,
    pub log_level: LogLevel,
    /// Which listener this instance serves: the egress listener, or the token push listener.
    #[serde(default)]
    pub role: Role,
    /// The push listener's public key (Ed25519, PEM); set on the push listener only.
    #[serde(default)]
    pub push_public_key: Option<String>,
    pub endpoints: FilterEndpoints,
    pub targets: Vec<FilterTarget>,
    pub routes: Vec<FilterRoute>,
    /// `egress.callers`: absent, every caller that reaches the listener is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callers: Option<crate::callers::CallersPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterEndpoints {
    /// Answered by the filter with 200 JSON.
    pub health: Option<String>,
    /// Answered by the filter: 200 when every OAuth2 target has a valid token, else 503.
    pub ready: Option<String>,
    /// Paths left to Envoy's own routes (the metrics endpoint).
    pub passthrough: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterTarget {
    pub name: String,
    pub url: TargetUrl,
    pub credential: Credential,
    /// Callers admitted to this target; `None`: every authenticated caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<crate::callers::Allow>,
}

/// What the filter attaches to a target's requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(clippy::large_enum_variant)] // one per target, built once
pub enum Credential {
    None,
    ApiKey {
        header: String,
        #[serde(deserialize_with = "crate::secret::value_or_ref")]
        key: Secret,
    },
    Bearer {
        #[serde(deserialize_with = "crate::secret::value_or_ref")]
        token: Secret,
    },
    Basic {
        username: String,
        #[serde(deserialize_with = "crate::secret::value_or_ref")]
        password: Secret,
    },
    /// Nothing on the request: the target's cluster presents the client certificate.
    Mtls,
    Oauth2(OAuth2Credential),
    /// Every request signed with AWS SigV4 after the rewrite (`crate::sigv4`).
    AwsSigv4(crate::sigv4::AwsSigv4Credential),
}

impl Credential {
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::ApiKey { .. } => "api_key",
            Credential::Bearer { .. } => "bearer",
            Credential::Basic { .. } => "basic",
            Credential::Mtls => "mtls",
            Credential::Oauth2(o) => o.grant.kind(),
            Credential::AwsSigv4(_) => "aws_sigv4",
        }
    }
}

/// An OAuth2 target (any grant), as the filter needs it to fetch tokens by callout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Credential {
    /// Envoy cluster the token callout goes through.
    pub token_cluster: String,
    /// False with `token_store: redis`: tokens come only from pushes, and the config carries
    /// no client secret.
    #[serde(default = "yes")]
    pub fetch: bool,
    /// How the token is obtained (default: client credentials).
    #[serde(default)]
    pub grant: crate::tokens::grant::GrantPlan,
    /// `None` only in a push-only target whose token URL comes from a key file the refresher
    /// reads.
    pub token_url: Option<TargetUrl>,
    pub client_id: String,
    #[serde(default, deserialize_with = "crate::secret::opt_value_or_ref")]
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    pub params: BTreeMap<String, String>,
    pub client_auth: ClientAuth,
    pub signing_alg: SigningAlg,
    pub key_id: Option<String>,
    /// `private_key_jwt` or `oauth2_jwt_bearer`: the PEM key, read from `auth.private_key` by
    /// `egressctl compile` (the filter has no file system).
    #[serde(default, deserialize_with = "crate::secret::opt_value_or_ref")]
    pub private_key_pem: Option<Secret>,
    pub refresh_before_expiry_ms: u64,
    pub token_timeout_ms: u64,
    pub default_lifetime_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRoute {
    pub path_prefix: String,
    pub target: String,
    pub strip_prefix: Option<String>,
    pub rewrite_prefix: Option<String>,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    /// Narrows the target's `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<crate::callers::Allow>,
}

fn yes() -> bool {
    true
}

/// Why the plugin configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum FilterConfigError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Secret(#[from] crate::secret_ref::SecretError),
}

impl FilterConfig {
    /// Parses the filter config from the plugin configuration bytes and resolves every
    /// secret reference from the VM's environment variables (see [`crate::secret_ref`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, FilterConfigError> {
        let mut config: Self = serde_json::from_slice(bytes)?;
        // A config of another version is refused by the engine with that reason; its
        // references are not read.
        if config.version == FILTER_CONFIG_VERSION {
            crate::secret_ref::resolve(&mut config, &crate::secret_ref::process_env)?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod wire_escape_tests {
    use super::wire::*;

    #[test]
    fn hand_built_escaping_matches_serde_json() {
        for s in [
            "",
            "plain/path-1.2_~",
            "quote\"back\\slash",
            "ctl\u{1}\n\t\u{1f}",
            "del\u{7f} é ✓",
            "auth-service/\"evil\",\"status\":200",
        ] {
            let quoted = serde_json::Value::String(s.to_string()).to_string();
            assert_eq!(json_escape(s), quoted[1..quoted.len() - 1], "{s:?}");
        }
        assert_eq!(
            log_fragment("api", "GET", "/a\"b", "http://h/x"),
            r#"api","method":"GET","path":"/a\"b","target_url":"http://h/x"#
        );
    }
}
