//! What `apply` changes: routes and targets added, removed, changed. Values of credentials are
//! never printed, only that they changed.

use egress_core::plan::{Credential, FilterConfig, FilterRoute, FilterTarget};
use egress_core::secret::Secret;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    RouteAdded { prefix: String, target: String },
    RouteRemoved { prefix: String },
    RouteChanged { prefix: String, what: Vec<String> },
    TargetAdded { name: String, url: String },
    TargetRemoved { name: String },
    TargetChanged { name: String, what: Vec<String> },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::RouteAdded { prefix, target } => write!(f, "+ route {prefix} -> {target}"),
            Change::RouteRemoved { prefix } => write!(f, "- route {prefix}"),
            Change::RouteChanged { prefix, what } => {
                write!(f, "~ route {prefix}: {}", what.join(", "))
            }
            Change::TargetAdded { name, url } => write!(f, "+ target {name} ({url})"),
            Change::TargetRemoved { name } => write!(f, "- target {name}"),
            Change::TargetChanged { name, what } => {
                write!(f, "~ target {name}: {}", what.join(", "))
            }
        }
    }
}

/// Changes from `old` (None: nothing compiled yet) to `new`. `old_clusters`/`new_clusters`
/// are the rendered clusters by name (TLS and timeouts live there, not in the filter config).
pub fn changes(
    old: Option<&FilterConfig>,
    new: &FilterConfig,
    old_clusters: &BTreeMap<String, Value>,
    new_clusters: &BTreeMap<String, Value>,
    changed_secrets: &std::collections::BTreeSet<String>,
) -> Vec<Change> {
    let mut out = Vec::new();
    let old_targets: BTreeMap<&str, &FilterTarget> = old
        .map(|o| o.targets.iter().map(|t| (t.name.as_str(), t)).collect())
        .unwrap_or_default();
    let new_targets: BTreeMap<&str, &FilterTarget> =
        new.targets.iter().map(|t| (t.name.as_str(), t)).collect();
    for (name, t) in &new_targets {
        match old_targets.get(name) {
            None => out.push(Change::TargetAdded {
                name: name.to_string(),
                url: t.url.origin_and_base(),
            }),
            Some(o) => {
                let mut what = Vec::new();
                if o.url != t.url {
                    what.push(format!(
                        "url {} -> {}",
                        o.url.origin_and_base(),
                        t.url.origin_and_base()
                    ));
                }
                if o.credential.kind() != t.credential.kind() {
                    what.push(format!(
                        "auth {} -> {}",
                        o.credential.kind(),
                        t.credential.kind()
                    ));
                } else if changed_secrets.contains(*name)
                    || without_values(&o.credential) != without_values(&t.credential)
                {
                    what.push("credential changed (values not shown)".into());
                }
                let cluster = egress_core::plan::wire::target_cluster(name);
                if old_clusters.get(&cluster) != new_clusters.get(&cluster) && o.url == t.url {
                    what.push("connection settings changed (TLS, timeouts)".into());
                }
                if !what.is_empty() {
                    out.push(Change::TargetChanged {
                        name: name.to_string(),
                        what,
                    });
                }
            }
        }
    }
    for name in old_targets.keys() {
        if !new_targets.contains_key(name) {
            out.push(Change::TargetRemoved {
                name: name.to_string(),
            });
        }
    }
    let old_routes: BTreeMap<&str, &FilterRoute> = old
        .map(|o| {
            o.routes
                .iter()
                .map(|r| (r.path_prefix.as_str(), r))
                .collect()
        })
        .unwrap_or_default();
    let new_routes: BTreeMap<&str, &FilterRoute> = new
        .routes
        .iter()
        .map(|r| (r.path_prefix.as_str(), r))
        .collect();
    for (prefix, r) in &new_routes {
        match old_routes.get(prefix) {
            None => out.push(Change::RouteAdded {
                prefix: prefix.to_string(),
                target: r.target.clone(),
            }),
            Some(o) if o != r => {
                let mut what = Vec::new();
                if o.target != r.target {
                    what.push(format!("target {} -> {}", o.target, r.target));
                }
                if o.strip_prefix != r.strip_prefix || o.rewrite_prefix != r.rewrite_prefix {
                    what.push("path rewrite changed".into());
                }
                if o.methods != r.methods {
                    what.push("methods changed".into());
                }
                out.push(Change::RouteChanged {
                    prefix: prefix.to_string(),
                    what,
                });
            }
            Some(_) => {}
        }
    }
    for prefix in old_routes.keys() {
        if !new_routes.contains_key(prefix) {
            out.push(Change::RouteRemoved {
                prefix: prefix.to_string(),
            });
        }
    }
    out
}

/// A credential with its secret values left out (they are compared through `secrets.env`):
/// the header name, user name, client id, scopes and so on.
fn without_values(c: &Credential) -> Value {
    let mut c = c.clone();
    match &mut c {
        Credential::ApiKey { key, .. } => *key = Secret::default(),
        Credential::Bearer { token } => *token = Secret::default(),
        Credential::Basic { password, .. } => *password = Secret::default(),
        Credential::Oauth2(o) => {
            o.client_secret = o.client_secret.as_ref().map(|_| Secret::default());
            o.private_key_pem = o.private_key_pem.as_ref().map(|_| Secret::default());
        }
        Credential::AwsSigv4(a) => {
            if let Some(k) = &mut a.keys {
                k.secret_access_key = Secret::default();
                k.session_token = k.session_token.as_ref().map(|_| Secret::default());
            }
        }
        Credential::None | Credential::Mtls => {}
    }
    serde_json::to_value(&c).unwrap_or(Value::Null)
}

/// Clusters by name, from rendered resources or a `cds.yaml` file's `resources`.
pub fn clusters_by_name(resources: &[Value]) -> BTreeMap<String, Value> {
    resources
        .iter()
        .filter_map(|c| {
            let mut c = c.clone();
            if let Some(o) = c.as_object_mut() {
                o.remove("@type");
            }
            Some((c.get("name")?.as_str()?.to_string(), c))
        })
        .collect()
}
