//! `egress.callers` as the platforms can express it: an Istio AuthorizationPolicy on the
//! egress gateway ([`istio_policy`]) and the namespaces a Kubernetes NetworkPolicy admits
//! ([`k8s_namespaces`]). Both only ever narrow what reaches the filter, and only where the
//! platform can say exactly what the config says; the filter still enforces every `allow`.
//!
//! Istio: a DENY policy, one rule per `allow` block that names SPIFFE IDs only, refusing on
//! that route's paths (minus the paths of more specific routes) every principal the block does
//! not list (`notPrincipals`). A request must pass its target's and its route's block, so
//! refusing what one block refuses is exactly that block's share of the verdict. An ALLOW
//! policy cannot do this: once one applies, Istio refuses whatever no rule lists (the gateway's
//! other traffic, the health endpoints, callers a JWT admits), so it would either refuse
//! callers the config admits or need catch-all rules wider than the config. Blocks naming JWT
//! `subjects` or `roles` are not expressible (a caller with any principal may hold the token):
//! no rule, the filter decides.

use egress_core::callers::Allow;
use egress_core::config::Config;
use egress_core::routing::path::is_boundary_prefix;
use serde_json::{json, Value};

/// The policy (if any rule is expressible) and what was left to the filter, in words.
pub struct IstioAuthz {
    pub policy: Option<Value>,
    pub notes: Vec<String>,
}

/// A SPIFFE ID pattern in Istio's principal form: `spiffe://td/ns/N/sa/S` is `td/ns/N/sa/S`;
/// `spiffe://td/billing/*` is the prefix match `td/billing/*`, which keeps the segment boundary
/// (`td/billing-evil` does not start with `td/billing/`). Patterns are validated SPIFFE IDs
/// with at most a trailing `/*`, so no other `*` can reach Istio.
pub fn principal(pattern: &str) -> String {
    pattern
        .strip_prefix("spiffe://")
        .unwrap_or(pattern)
        .to_string()
}

/// Istio path matches for a route prefix: the prefix itself and everything below it at a
/// segment boundary (`/egress/crm`, `/egress/crm/*`; never `/egress/crmx`).
fn paths(prefix: &str) -> Vec<String> {
    if prefix == "/" {
        vec!["/*".into()]
    } else {
        vec![prefix.to_string(), format!("{prefix}/*")]
    }
}

/// What a route's rule must not judge: the paths of more specific routes (their own blocks
/// do). The health, ready and metrics endpoints need no exception: `validate` keeps them
/// outside the egress prefix, so outside every route.
fn not_paths(config: &Config, prefix: &str) -> Vec<String> {
    config
        .routes
        .iter()
        .filter(|q| q.path_prefix != prefix && is_boundary_prefix(prefix, &q.path_prefix))
        .flat_map(|q| paths(&q.path_prefix))
        .collect()
}

/// The AuthorizationPolicy `name` in `ns` for the gateway pods `selector`, listener `port`.
pub fn istio_policy(
    config: &Config,
    name: &str,
    ns: &str,
    selector: &Value,
    port: u16,
) -> IstioAuthz {
    let mut notes = Vec::new();
    let Some(callers) = &config.callers else {
        return IstioAuthz {
            policy: None,
            notes,
        };
    };
    if callers.mtls.is_none() {
        notes.push("callers are identified by JWT only: Istio cannot express JWT subjects or roles as principals, so no AuthorizationPolicy is rendered; the filter enforces every allow".into());
        return IstioAuthz {
            policy: None,
            notes,
        };
    }
    let mut rules: Vec<Value> = Vec::new();
    for route in &config.routes {
        let target = config.target(&route.target);
        let blocks = [
            (
                format!("target {}", route.target),
                target.and_then(|t| t.allow.as_ref()),
            ),
            (format!("route {}", route.path_prefix), route.allow.as_ref()),
        ];
        for (owner, allow) in blocks {
            let Some(allow) = allow else { continue };
            match spiffe_only(allow) {
                Some(ids) => {
                    let not_paths = not_paths(config, &route.path_prefix);
                    let mut op = json!({ "ports": [port.to_string()], "paths": paths(&route.path_prefix) });
                    if !not_paths.is_empty() {
                        op["notPaths"] = json!(not_paths);
                    }
                    let rule = json!({
                        "from": [{ "source": { "notPrincipals": ids.iter().map(|i| principal(i)).collect::<Vec<_>>() } }],
                        "to": [{ "operation": op }],
                    });
                    if !rules.contains(&rule) {
                        rules.push(rule);
                    }
                }
                None => notes.push(format!(
                    "{owner} (on route {}): its allow names JWT subjects or roles, which Istio principals cannot express; left to the filter",
                    route.path_prefix
                )),
            }
        }
    }
    notes.dedup();
    if rules.is_empty() {
        notes.push("no allow block names SPIFFE IDs only, so no AuthorizationPolicy is rendered; the filter enforces every allow".into());
        return IstioAuthz {
            policy: None,
            notes,
        };
    }
    let mut meta = super::objects::meta(name, ns, name);
    if !notes.is_empty() {
        meta["annotations"] = json!({ "egress.io/left-to-the-filter": notes.join("; ") });
    }
    IstioAuthz {
        policy: Some(json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": meta,
            "spec": { "selector": { "matchLabels": selector }, "action": "DENY", "rules": rules },
        })),
        notes,
    }
}

/// The SPIFFE ID patterns of a block that names nothing else.
fn spiffe_only(allow: &Allow) -> Option<&[String]> {
    (allow.subjects.is_empty() && allow.roles.is_empty() && !allow.spiffe_ids.is_empty())
        .then_some(allow.spiffe_ids.as_slice())
}

/// The namespace a SPIFFE ID pattern of the Kubernetes form names: `spiffe://<td>/ns/<ns>/sa/<sa>`,
/// `spiffe://<td>/ns/<ns>/sa/*` or `spiffe://<td>/ns/<ns>/*`; `None` for any other form or a
/// namespace name Kubernetes cannot have.
pub fn k8s_namespace(pattern: &str) -> Option<&str> {
    let rest = pattern.strip_prefix("spiffe://")?;
    let mut segs = rest.split('/');
    let (_td, ns_kw, ns) = (segs.next()?, segs.next()?, segs.next()?);
    if ns_kw != "ns" || !super::objects::is_dns_label(ns) {
        return None;
    }
    match (segs.next(), segs.next(), segs.next()) {
        (Some("*"), None, None) => Some(ns),
        (Some("sa"), Some(sa), None) if !sa.is_empty() => Some(ns),
        _ => None,
    }
}

/// Why the callers' namespaces cannot be named (the NetworkPolicy then admits any namespace).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnyNamespace {
    #[error("the config does not identify callers")]
    NoCallers,
    #[error("JWT callers may come from any namespace")]
    JwtCallers,
    #[error("route {route}: no allow block names SPIFFE IDs, so any verified caller may use it")]
    NoSpiffeIds { route: String },
    #[error("route {route}: a SPIFFE ID it admits is not of the form spiffe://<trust domain>/ns/<namespace>/sa/<service account>")]
    NotK8sForm { route: String },
    #[error("the config has no routes")]
    NoRoutes,
}

/// The namespaces every caller the config admits comes from, when the config says so through
/// SPIFFE IDs alone (`Err`: why not). A superset: per route, the namespaces of one block that
/// names only Kubernetes-form SPIFFE IDs (the other block can only narrow it).
pub fn k8s_namespaces(config: &Config) -> Result<Vec<String>, AnyNamespace> {
    let Some(callers) = &config.callers else {
        return Err(AnyNamespace::NoCallers);
    };
    if !callers.jwt.is_empty() {
        return Err(AnyNamespace::JwtCallers);
    }
    let mut out: Vec<String> = Vec::new();
    for route in &config.routes {
        let target = config.target(&route.target);
        let blocks = [target.and_then(|t| t.allow.as_ref()), route.allow.as_ref()];
        let mut found = None;
        let mut why = AnyNamespace::NoSpiffeIds {
            route: route.path_prefix.clone(),
        };
        for allow in blocks.into_iter().flatten() {
            let nss: Option<Vec<&str>> =
                allow.spiffe_ids.iter().map(|p| k8s_namespace(p)).collect();
            match nss {
                Some(n) => {
                    found = Some(n);
                    break;
                }
                None => {
                    why = AnyNamespace::NotK8sForm {
                        route: route.path_prefix.clone(),
                    };
                }
            }
        }
        let Some(nss) = found else { return Err(why) };
        for n in nss {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        }
    }
    if out.is_empty() {
        return Err(AnyNamespace::NoRoutes);
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_keep_the_segment_boundary() {
        assert_eq!(principal("spiffe://td/ns/a/sa/b"), "td/ns/a/sa/b");
        assert_eq!(principal("spiffe://jia.app/billing/*"), "jia.app/billing/*");
        assert!(!"jia.app/billing-evil"
            .starts_with(principal("spiffe://jia.app/billing/*").trim_end_matches('*')));
    }

    #[test]
    fn kubernetes_form_spiffe_ids_name_their_namespace() {
        assert_eq!(
            k8s_namespace("spiffe://cluster.local/ns/shop/sa/web"),
            Some("shop")
        );
        assert_eq!(
            k8s_namespace("spiffe://cluster.local/ns/shop/sa/*"),
            Some("shop")
        );
        assert_eq!(
            k8s_namespace("spiffe://cluster.local/ns/shop/*"),
            Some("shop")
        );
        assert_eq!(k8s_namespace("spiffe://cluster.local/ns/*"), None);
        assert_eq!(k8s_namespace("spiffe://jia.app/billing/*"), None);
        assert_eq!(k8s_namespace("spiffe://td/ns/Shop/sa/web"), None);
        assert_eq!(k8s_namespace("spiffe://td/ns/shop/sa/web/extra"), None);
        assert_eq!(k8s_namespace("spiffe://td/ns/shop"), None);
    }

    /// `render k8s` prints these in its NetworkPolicy note: kept as they were.
    #[test]
    fn any_namespace_reasons_keep_their_texts() {
        let route = || "/egress/crm".to_string();
        for (e, text) in [
            (AnyNamespace::NoCallers, "the config does not identify callers"),
            (AnyNamespace::JwtCallers, "JWT callers may come from any namespace"),
            (
                AnyNamespace::NoSpiffeIds { route: route() },
                "route /egress/crm: no allow block names SPIFFE IDs, so any verified caller may use it",
            ),
            (
                AnyNamespace::NotK8sForm { route: route() },
                "route /egress/crm: a SPIFFE ID it admits is not of the form spiffe://<trust domain>/ns/<namespace>/sa/<service account>",
            ),
            (AnyNamespace::NoRoutes, "the config has no routes"),
        ] {
            assert_eq!(e.to_string(), text);
        }
    }
}
