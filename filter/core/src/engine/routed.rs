//! The routed role (`auto` engine): Envoy has routed and rewritten the request and removed the
//! caller's headers; the filter learns the config route from Envoy's route name
//! ([`wire::route_index_of`]) and does only what Envoy cannot: identify the caller and attach
//! an OAuth2 token. It never looks at the path.
//!
//! What both roles do once a request is bound to a route (caller check, token) takes a
//! [`Binding`], so the egress role's [`Forward`] and the routed role's binding go through the
//! same code.

use super::{Decision, Edited, Engine, Forward, HeaderEdits, LocalReply};
use crate::credentials::{bearer, Injection};
use crate::plan::wire;
use crate::routing::path::is_log_safe;

/// The config route a request was bound to and its target: what the caller check
/// ([`Engine::authorize`]) and the credential need, whichever role routed the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Index in the config's targets.
    pub target: usize,
    /// Index in the config's routes (`FilterConfig.routes`).
    pub route: usize,
}

impl From<&Forward> for Binding {
    fn from(fwd: &Forward) -> Self {
        Self {
            target: fwd.target,
            route: fwd.route,
        }
    }
}

/// Why the routed role refuses a request before anything else: each is a config or render
/// mismatch (the filter enabled on a route it does not know), so the request never leaves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutedRefusal {
    #[error("the request has no route name (xds.route_name); the routed role is enabled on a route without a name")]
    MissingRouteName,
    #[error("route name {0:?} is not an egress route leaf")]
    NotALeaf(String),
    #[error(
        "route name {name:?} names config route {index}, but the filter config has {count} routes"
    )]
    NoSuchRoute {
        name: String,
        index: usize,
        count: usize,
    },
    #[error("egress is disabled in the proxy config")]
    Disabled,
    #[error("target {0:?} signs its requests (aws_sigv4): the routed role cannot serve it")]
    NeedsFullRole(String),
}

impl RoutedRefusal {
    /// The JSON reply: 503 `egress_disabled` as on every other route when egress is off, else
    /// a 500 (the proxy's config is inconsistent, not the caller's request).
    pub fn reply(&self) -> LocalReply {
        match self {
            RoutedRefusal::Disabled => LocalReply::error(
                503,
                "egress_disabled",
                "egress is disabled in the proxy config",
            ),
            _ => LocalReply::error(
                500,
                "route_unknown",
                "the proxy routed the request to a route the egress filter does not know",
            ),
        }
    }
}

impl Engine {
    /// The routed role's decision: the binding of the config route Envoy picked, from its route
    /// name (`None`: the host has none). Fails closed: any name that is not one of this
    /// config's route leaves is refused, never forwarded.
    pub fn routed(&self, route_name: Option<&str>) -> Result<Binding, RoutedRefusal> {
        let name = route_name.ok_or(RoutedRefusal::MissingRouteName)?;
        let index =
            wire::route_index_of(name).ok_or_else(|| RoutedRefusal::NotALeaf(name.to_string()))?;
        let route = self
            .routes
            .get(index)
            .ok_or_else(|| RoutedRefusal::NoSuchRoute {
                name: name.to_string(),
                index,
                count: self.routes.len(),
            })?;
        if !self.enabled {
            return Err(RoutedRefusal::Disabled);
        }
        let target = self
            .targets
            .get(route.target)
            .ok_or_else(|| RoutedRefusal::NotALeaf(name.to_string()))?;
        if matches!(target.injection, Injection::AwsSigv4) {
            return Err(RoutedRefusal::NeedsFullRole(target.name.clone()));
        }
        Ok(Binding {
            target: route.target,
            route: index,
        })
    }

    /// Whether requests to `target` carry an OAuth2 token from the token cache.
    pub fn needs_token(&self, target: usize) -> bool {
        self.targets
            .get(target)
            .is_some_and(|t| matches!(t.injection, Injection::OAuth2Bearer))
    }

    /// What the routed role changes in a request: for an OAuth2 target, `Authorization` set to
    /// the token, or (no token yet, [`Edited::NeedsToken`]) removed, so that the token added
    /// when the request resumes is the only value. Nothing else: Envoy rewrote the path and
    /// authority, attaches static credentials and removes the caller's headers.
    pub fn routed_edits(
        &self,
        binding: Binding,
        oauth2_token: Option<&str>,
    ) -> (HeaderEdits, Edited) {
        let mut edits = HeaderEdits::default();
        if !self.needs_token(binding.target) {
            return (edits, Edited::Complete);
        }
        match oauth2_token {
            Some(token) => {
                edits.set.push(("authorization".into(), bearer(token)));
                (edits, Edited::Complete)
            }
            None => {
                edits.remove.push("authorization".into());
                (edits, Edited::NeedsToken)
            }
        }
    }

    /// The request log fragment ([`wire::PROP_LOG`]) the egress role sets for `decision`: the
    /// target, the path as sent (without query) and the outgoing URL of a forward; `-` for
    /// target and URL of a local answer. `None`: the egress role logs nothing of its own
    /// (passthrough, readiness).
    pub fn log_fragment(&self, method: &str, path: &str, decision: &Decision) -> Option<String> {
        match decision {
            Decision::Forward(fwd) => {
                let target = self.targets.get(fwd.target).map_or("", |t| t.name.as_str());
                Some(wire::log_fragment(
                    target,
                    method,
                    &fwd.original_path,
                    &fwd.target_url,
                ))
            }
            Decision::Respond(_) => {
                let without_query = path.split_once('?').map_or(path, |(p, _)| p);
                Some(wire::log_fragment(
                    "-",
                    method,
                    self.logged_refused_path(without_query),
                    "-",
                ))
            }
            Decision::Ready | Decision::Pass => None,
        }
    }

    /// The path of a local answer's log line: as sent; under `egress.path_mode: strict`, `-`
    /// unless it is [`is_log_safe`] (Envoy, answering those paths itself, writes the line
    /// without JSON escaping).
    fn logged_refused_path<'p>(&self, without_query: &'p str) -> &'p str {
        if self.strict_paths && !is_log_safe(without_query) {
            "-"
        } else {
            without_query
        }
    }

    /// The log fragment of a request the routed role answers itself (a caller refusal, no
    /// token, a route it does not know): what the egress role logs for the same request, so
    /// that both engines write the same line. (Envoy rewrites the path only when it forwards;
    /// the leaf's own log filter runs after the routed filter, so this is the line's only
    /// source.)
    pub fn routed_log_fragment(&self, method: &str, path: &str) -> String {
        let decision = self.decide(method, path);
        self.log_fragment(method, path, &decision)
            .unwrap_or_else(|| {
                let without_query = path.split_once('?').map_or(path, |(p, _)| p);
                wire::log_fragment("-", method, without_query, "-")
            })
    }
}
