//! Small types both the user-facing config ([`crate::config`]) and the filter config
//! ([`crate::plan`]) use, so neither imports the other.

use serde::{Deserialize, Serialize};

/// Prefix of the headers that carry the filter's own data between its parts (`x-egress-*`):
/// a caller never sets them and a target never sees them, and no credential header may use it.
pub const INTERNAL_HEADER_PREFIX: &str = "x-egress-";

/// HTTP methods a route may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Options,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }

    /// Whether replaying the request after it may have reached the target is safe.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Patch)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "trace" => Some(Self::Trace),
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" | "warning" => Some(Self::Warn),
            "error" => Some(Self::Error),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// No client authentication (a grant whose assertion is the credential, e.g. RFC 7523
    /// section 2.1 without a client); a `client_id`, when set, is sent in the form (a public
    /// client).
    None,
    /// The client assertion is the current content of a file on the refresher's host (Azure
    /// workload identity): fetched only by `egressctl token refresh`.
    FederatedTokenFile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlg {
    RS256,
    ES256,
}

/// `egress.path_mode`: what happens to a request path that is not *plain* (plain: `/` and
/// segments of letters, digits and `-._~:@!$&'()*+,=`, no `.`/`..` or empty segment, no
/// percent-escape; a query of printable ASCII without `#`, `"` and `\`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PathMode {
    /// Brought to its one canonical spelling (escapes of plain characters decoded, the hex
    /// digits of others upper-cased), or refused when it is not a valid path.
    #[default]
    Canonicalize,
    /// Refused, 400 `invalid_path`, with one message whatever the reason: Envoy alone can
    /// tell a plain path, so the `auto` engine serves a config of static credentials without
    /// the wasm module.
    Strict,
}

impl PathMode {
    pub const ALL: [PathMode; 2] = [PathMode::Canonicalize, PathMode::Strict];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PathMode::Canonicalize => "canonicalize",
            PathMode::Strict => "strict",
        }
    }

    /// The default (left out of the filter config, which older modules then still read).
    pub fn is_canonicalize(&self) -> bool {
        *self == PathMode::Canonicalize
    }
}
