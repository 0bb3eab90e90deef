//! One request head in, one decision out. The wasm glue only moves headers between the host
//! and this module, so everything here is tested natively.

// Request path: no index may panic on hostile input.
#![deny(clippy::indexing_slicing)]

mod edits;
mod headers;
mod proxy_replies;
mod routed;

pub use edits::{EditList, Edited, HeaderEdits};
pub use headers::{RemoveRule, ALWAYS_REMOVED, FORWARDED_PROTO};
pub use proxy_replies::{ProxyReply, ReplySelector, PROXY_REPLIES};
pub use routed::{Binding, RoutedRefusal};

use crate::callers::allow::{evaluate, Verdict};
use crate::callers::auth::CallerInput;
use crate::callers::jwks::KeySets;
use crate::callers::jwt::{JwksSource, KeyError};
use crate::callers::{Allow, Authenticator, Authorized, Caller, Refusal, TokenCache};
use crate::credentials::{Injection, CALLER_CREDENTIAL_HEADERS};
use crate::plan::{
    Credential, FilterConfig, Method, OAuth2Credential, PathMode, FILTER_CONFIG_VERSION,
};
use crate::routing::path::{is_plain_normalized, normalize_request_path, rewrite, NOT_PLAIN};
use crate::routing::RouteTable;

/// A filter config that passed the load-time checks, with routes compiled.
#[derive(Debug)]
pub struct Engine {
    enabled: bool,
    /// `egress.path_mode: strict`: a path that is not plain is refused as a whole.
    strict_paths: bool,
    targets: Vec<CompiledTarget>,
    routes: Vec<CompiledRoute>,
    table: RouteTable<usize>,
    health: Option<String>,
    ready: Option<String>,
    passthrough: Vec<String>,
    /// `egress.callers`; `None`: callers are not identified.
    callers: Option<Authenticator>,
}

/// A target as the request path needs it.
#[derive(Debug)]
pub struct CompiledTarget {
    pub name: String,
    /// `:authority` sent upstream.
    pub authority: String,
    pub base_path: String,
    /// `scheme://authority` (logs only).
    pub origin: String,
    /// The target's scheme, sent as `x-forwarded-proto` in place of the caller's.
    scheme: &'static str,
    /// The credential kind (`api_key`, `bearer`, ...), for logs and `egressctl explain`.
    pub kind: &'static str,
    pub injection: Injection,
    /// Lower-case names removed from the caller's request besides the Authorization headers.
    strip: Vec<String>,
    pub oauth2: Option<OAuth2Credential>,
    /// Callers admitted; `None`: every authenticated caller.
    pub allow: Option<Allow>,
    /// `aws_sigv4` targets: signed by the glue after [`Engine::header_edits`].
    pub sigv4: Option<crate::sigv4::AwsSigv4Credential>,
}

#[derive(Debug)]
struct CompiledRoute {
    target: usize,
    strip_prefix: Option<String>,
    rewrite_prefix: Option<String>,
    /// `None`: every standard method ([`Method::ALL`]).
    methods: Option<Vec<Method>>,
    /// `Allow` header value, built once.
    allow: String,
    /// The route's caller `allow`.
    callers: Option<Allow>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("filter config version {found} is not supported (expected {FILTER_CONFIG_VERSION}); recompile with a matching egressctl")]
    Version { found: u32 },
    #[error("routes[{index}] names unknown target {target:?}")]
    UnknownTarget { index: usize, target: String },
    #[error("routes[{index}] repeats path_prefix {prefix:?}")]
    DuplicatePrefix { index: usize, prefix: String },
    #[error("routes[{index}] has an invalid prefix: {reason}")]
    BadPrefix {
        index: usize,
        reason: crate::routing::path::PrefixError,
    },
    #[error("targets[{index}] repeats the name {name:?}")]
    DuplicateTarget { index: usize, name: String },
    #[error(transparent)]
    Callers(#[from] KeyError),
    #[error("{0} has an allow block but the config has no callers section")]
    AllowWithoutCallers(String),
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it to a target: apply [`Engine::edit_headers`] with this.
    Forward(Forward),
    /// Answer it here.
    Respond(LocalReply),
    /// The readiness endpoint: the glue answers from the token cache.
    Ready,
    /// Leave it to Envoy's own routes (metrics).
    Pass,
}

/// A request bound for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub target: usize,
    /// Index of the route that matched.
    pub route: usize,
    /// The new `:path`, query included.
    pub path: String,
    /// The incoming path without its query (logs).
    pub original_path: String,
    /// The outgoing URL without its query (logs: the query may carry data we must not log).
    pub target_url: String,
}

/// A response made by the proxy itself: always JSON with a stable `error` code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    /// Stable machine-readable code (`route_not_found`, ...); `ok` for health.
    pub code: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl LocalReply {
    pub fn error(status: u16, code: &'static str, message: &str) -> Self {
        let body = serde_json::json!({ "error": code, "message": message }).to_string();
        Self::json(status, code, body)
    }

    /// The readiness answer: 200 when `not_ready` is empty, else 503 naming those targets
    /// (every OAuth2 target must hold a valid token, every `aws_sigv4` target credentials).
    pub fn ready(not_ready: &[String]) -> Self {
        if not_ready.is_empty() {
            return Self::json(200, "ok", r#"{"status":"ready"}"#.to_string());
        }
        let body = serde_json::json!({ "status": "not_ready", "error": "credentials_unavailable", "targets": not_ready });
        Self::json(503, "credentials_unavailable", body.to_string())
    }

    fn json(status: u16, code: &'static str, body: String) -> Self {
        Self {
            status,
            code,
            body,
            headers: vec![("content-type", "application/json".to_string())],
        }
    }
}

impl Engine {
    pub fn new(config: &FilterConfig) -> Result<Self, EngineError> {
        if config.version != FILTER_CONFIG_VERSION {
            return Err(EngineError::Version {
                found: config.version,
            });
        }
        let mut targets = Vec::with_capacity(config.targets.len());
        for (index, t) in config.targets.iter().enumerate() {
            if targets.iter().any(|c: &CompiledTarget| c.name == t.name) {
                return Err(EngineError::DuplicateTarget {
                    index,
                    name: t.name.clone(),
                });
            }
            let injection = Injection::from_credential(&t.credential);
            let mut strip = Vec::new();
            if let Some(h) = injection.header_name() {
                if !CALLER_CREDENTIAL_HEADERS.contains(&h) {
                    strip.push(h.to_string());
                }
            }
            if let Credential::AwsSigv4(_) = &t.credential {
                // The caller's own signature headers never reach the target.
                for h in ["x-amz-date", "x-amz-content-sha256", "x-amz-security-token"] {
                    strip.push(h.to_string());
                }
            }
            targets.push(CompiledTarget {
                name: t.name.clone(),
                authority: t.url.authority(),
                base_path: t.url.base_path.clone(),
                origin: t.url.origin(),
                scheme: t.url.scheme.as_str(),
                kind: t.credential.kind(),
                injection,
                strip,
                oauth2: match &t.credential {
                    Credential::Oauth2(o) => Some(o.clone()),
                    _ => None,
                },
                allow: t.allow.clone(),
                sigv4: match &t.credential {
                    Credential::AwsSigv4(a) => Some(a.clone()),
                    _ => None,
                },
            });
            if t.allow.is_some() && config.callers.is_none() {
                return Err(EngineError::AllowWithoutCallers(format!(
                    "targets[{index}]"
                )));
            }
        }
        let mut table = RouteTable::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for (index, r) in config.routes.iter().enumerate() {
            let prefix = crate::routing::path::validate_prefix(&r.path_prefix)
                .map_err(|reason| EngineError::BadPrefix { index, reason })?;
            let target = targets
                .iter()
                .position(|t| t.name == r.target)
                .ok_or_else(|| EngineError::UnknownTarget {
                    index,
                    target: r.target.clone(),
                })?;
            if !table.insert(&prefix, routes.len()) {
                return Err(EngineError::DuplicatePrefix { index, prefix });
            }
            let allow = r
                .methods
                .as_deref()
                .unwrap_or(&Method::ALL)
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            routes.push(CompiledRoute {
                target,
                strip_prefix: r.strip_prefix.clone(),
                rewrite_prefix: r.rewrite_prefix.clone(),
                methods: r.methods.clone(),
                allow,
                callers: r.allow.clone(),
            });
            if r.allow.is_some() && config.callers.is_none() {
                return Err(EngineError::AllowWithoutCallers(format!("routes[{index}]")));
            }
        }
        Ok(Self {
            enabled: config.enabled,
            strict_paths: config.path_mode == PathMode::Strict,
            targets,
            routes,
            table,
            health: config.endpoints.health.clone(),
            ready: config.endpoints.ready.clone(),
            passthrough: config.endpoints.passthrough.clone(),
            callers: match &config.callers {
                Some(c) => Some(Authenticator::new(c)?),
                None => None,
            },
        })
    }

    /// The (lower-case) headers a caller's token is read from (`egress.callers.jwt[i].from_headers`);
    /// empty without callers. The filter removes them itself once the caller is admitted.
    pub fn caller_token_headers(&self) -> Vec<&str> {
        self.callers
            .iter()
            .flat_map(Authenticator::token_headers)
            .collect()
    }

    /// Whether callers are identified (`egress.callers` is set).
    pub fn has_callers(&self) -> bool {
        self.callers.is_some()
    }

    /// Whether the peer certificate's SPIFFE ID is read (`egress.callers.mtls` is set): the
    /// glue asks the host for it only then.
    pub fn wants_peer_identity(&self) -> bool {
        self.callers.as_ref().is_some_and(Authenticator::mtls)
    }

    /// Whether callers may prove themselves with a JWT (`egress.callers.jwt`): only then does
    /// [`Engine::authorize`] need the time, so the glue reads the host's clock only then.
    pub fn verifies_tokens(&self) -> bool {
        self.callers.as_ref().is_some_and(Authenticator::has_jwt)
    }

    /// The `allow` blocks that apply to a forward (or a routed role's binding): the target's
    /// and the route's.
    pub fn allows(&self, bound: impl Into<Binding>) -> (Option<&Allow>, Option<&Allow>) {
        let b = bound.into();
        (
            self.targets.get(b.target).and_then(|t| t.allow.as_ref()),
            self.routes.get(b.route).and_then(|r| r.callers.as_ref()),
        )
    }

    /// Whether a caller with these identities may use a forward (`egressctl explain`).
    pub fn verdict(&self, bound: impl Into<Binding>, caller: &Caller) -> Verdict {
        let (t, r) = self.allows(bound);
        evaluate(t, r, caller)
    }

    /// Identifies the caller of a forward (or a routed role's binding) and applies the
    /// `allow` blocks. Without `egress.callers` every request passes, anonymous. A refusal is
    /// final: the request must not reach the target nor start a token fetch.
    pub fn authorize(
        &self,
        bound: impl Into<Binding>,
        input: &CallerInput<'_>,
        now: u64,
        cache: &mut TokenCache,
        keys: &KeySets,
    ) -> Result<Authorized, Box<Refusal>> {
        let Some(callers) = &self.callers else {
            return Ok(Authorized::default());
        };
        let (t, r) = self.allows(bound);
        callers.authorize_with(t, r, input, now, cache, keys)
    }

    /// The JWT issuers whose keys come from a `jwks_url` (the glue fetches them).
    pub fn jwks_sources(&self) -> Vec<JwksSource> {
        self.callers
            .as_ref()
            .map(Authenticator::jwks_sources)
            .unwrap_or_default()
    }

    pub fn targets(&self) -> &[CompiledTarget] {
        &self.targets
    }

    pub fn target(&self, index: usize) -> Option<&CompiledTarget> {
        self.targets.get(index)
    }

    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// Whether the readiness answer can change at run time: some target holds credentials
    /// that arrive later (OAuth2 tokens, `aws_sigv4` credentials). Otherwise it is always
    /// `LocalReply::ready(&[])`.
    pub fn readiness_varies(&self) -> bool {
        self.targets
            .iter()
            .any(|t| t.oauth2.is_some() || t.sigv4.is_some())
    }

    /// For a request decided [`Decision::Pass`]: the `:path` to set so that Envoy's own route
    /// (matched on the canonical spelling) serves it, when the caller spelled it otherwise
    /// (`/%6detrics` for `/metrics`); `None`: leave `:path` as sent.
    pub fn passthrough_path(&self, raw_path: &str) -> Option<String> {
        let req = normalize_request_path(raw_path).ok()?;
        let sent = raw_path.split_once('?').map_or(raw_path, |(p, _)| p);
        if req.path == sent {
            return None;
        }
        Some(match req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.into_owned(),
        })
    }

    /// Decides what happens to a request with this method and `:path`.
    pub fn decide(&self, method: &str, raw_path: &str) -> Decision {
        let normalized = normalize_request_path(raw_path);
        if self.strict_paths && !is_plain_normalized(raw_path, &normalized) {
            return Decision::Respond(LocalReply::error(400, "invalid_path", NOT_PLAIN));
        }
        let req = match normalized {
            Ok(p) => p,
            Err(e) => {
                return Decision::Respond(LocalReply::error(400, "invalid_path", &e.to_string()))
            }
        };
        let req_path: &str = &req.path;
        if self.health.as_deref() == Some(req_path) {
            return Decision::Respond(LocalReply::json(
                200,
                "ok",
                r#"{"status":"ok"}"#.to_string(),
            ));
        }
        if self.ready.as_deref() == Some(req_path) {
            return Decision::Ready;
        }
        if self.passthrough.iter().any(|p| p == req_path) {
            return Decision::Pass;
        }
        let Some((_, &route_index)) = self.table.lookup(req_path) else {
            return Decision::Respond(LocalReply::error(
                404,
                "route_not_found",
                "no egress route matches this path",
            ));
        };
        if !self.enabled {
            return Decision::Respond(LocalReply::error(
                503,
                "egress_disabled",
                "egress is disabled in the proxy config",
            ));
        }
        let Some(route) = self.routes.get(route_index) else {
            return Decision::Respond(LocalReply::error(
                500,
                "internal_error",
                "route table is inconsistent",
            ));
        };
        let allowed = match &route.methods {
            Some(methods) => methods.iter().any(|m| m.as_str() == method),
            // No list: the standard methods only. TRACE echoes the request (credential
            // included) back to the caller, CONNECT opens a tunnel, and over HTTP/2 any token
            // is a method that some upstream may read as another.
            None => Method::parse(method).is_some(),
        };
        if !allowed {
            return Decision::Respond(self.method_not_allowed(route));
        }
        let Some(target) = self.targets.get(route.target) else {
            return Decision::Respond(LocalReply::error(
                500,
                "internal_error",
                "route table is inconsistent",
            ));
        };
        let path = rewrite(
            req_path,
            req.query,
            route.strip_prefix.as_deref(),
            route.rewrite_prefix.as_deref(),
            &target.base_path,
        );
        let path_only = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
        let mut target_url = String::with_capacity(target.origin.len() + path_only.len());
        target_url.push_str(&target.origin);
        target_url.push_str(path_only);
        Decision::Forward(Forward {
            target: route.target,
            route: route_index,
            original_path: req_path.to_string(),
            target_url,
            path,
        })
    }

    /// 405 for a method the route does not allow, with the route's methods in `Allow`.
    fn method_not_allowed(&self, route: &CompiledRoute) -> LocalReply {
        let allowed: Vec<&str> = route
            .methods
            .as_deref()
            .unwrap_or(&Method::ALL)
            .iter()
            .map(|m| m.as_str())
            .collect();
        let body = serde_json::json!({
            "error": "method_not_allowed",
            "message": "this route does not allow the request's method",
            "allowed": allowed,
        })
        .to_string();
        let mut reply = LocalReply::json(405, "method_not_allowed", body);
        reply.headers.push(("allow", route.allow.clone()));
        reply
    }

    /// 503 for an OAuth2 target that has no usable token.
    pub fn credentials_unavailable(&self, target: usize) -> LocalReply {
        let name = self.targets.get(target).map_or("", |t| t.name.as_str());
        let body = serde_json::json!({
            "error": "credentials_unavailable",
            "message": "no valid credential is available for the target",
            "target": name,
        })
        .to_string();
        LocalReply::json(503, "credentials_unavailable", body)
    }
}

// `cfg(test)` alone first: clippy's allow-unwrap-in-tests recognizes only that form.
#[cfg(test)]
#[cfg(all(test, feature = "yaml"))]
mod tests;

#[cfg(test)]
mod hostile_tests;

#[cfg(test)]
#[cfg(all(test, feature = "yaml"))]
mod routed_tests;
#[cfg(test)]
mod strict_tests;
