//! Which way the `auto` engine serves each config route ([`LeafKind`]): the one decision the
//! renderer, `egressctl routes` and `egressctl explain` all ask.

use crate::plan::{Credential, FilterConfig};

/// How the auto engine serves a config route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeafKind {
    /// Envoy routes, rewrites and attaches the credential itself (`credential_injector`); the
    /// wasm module is never entered for plain paths.
    Native,
    /// Envoy routes and rewrites; the filter in the routed role identifies the caller and/or
    /// attaches the OAuth2 token.
    Routed,
    /// The filter in the egress role does everything, as in the `wasm` engine.
    Full,
}

impl LeafKind {
    pub const ALL: [LeafKind; 3] = [LeafKind::Native, LeafKind::Routed, LeafKind::Full];

    /// The name `routes` and `explain` print.
    pub fn as_str(self) -> &'static str {
        match self {
            LeafKind::Native => "native",
            LeafKind::Routed => "routed",
            LeafKind::Full => "filter",
        }
    }

    /// One line saying why a route is served this way (for `egressctl explain`).
    pub fn reason(self) -> &'static str {
        match self {
            LeafKind::Native => {
                "static or no credential and no callers: Envoy routes and injects it natively, no wasm for a plain path (nor for any path with egress.path_mode: strict)"
            }
            LeafKind::Routed => {
                "OAuth2 token or callers check: Envoy routes, the filter (routed role) only identifies the caller and attaches the token"
            }
            LeafKind::Full => {
                "needs what Envoy cannot do natively (AWS SigV4 signing): the filter routes, rewrites and signs"
            }
        }
    }
}

impl std::fmt::Display for LeafKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the auto engine serves `config.routes[route_index]`; `None` when there is no such
/// route or its target is unknown (a config the engine refuses anyway).
pub fn leaf_kind(config: &FilterConfig, route_index: usize) -> Option<LeafKind> {
    let route = config.routes.get(route_index)?;
    let target = config.targets.iter().find(|t| t.name == route.target)?;
    Some(match &target.credential {
        // Signing needs the final path (and maybe the body): only the filter does it.
        Credential::AwsSigv4(_) => LeafKind::Full,
        // Tokens live in the filter's shared cache (fetch, refresh, push, stale-on-401).
        Credential::Oauth2(_) => LeafKind::Routed,
        Credential::None
        | Credential::Mtls
        | Credential::ApiKey { .. }
        | Credential::Bearer { .. }
        | Credential::Basic { .. } => {
            if config.callers.is_some() {
                LeafKind::Routed
            } else {
                LeafKind::Native
            }
        }
    })
}
