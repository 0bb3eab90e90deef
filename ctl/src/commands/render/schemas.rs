//! The published schemas every rendered object must pass before `render` writes anything.
//!
//! Kubernetes kinds: the JSON Schemas of PyPI `kubernetes-validate` (Kubernetes 1.35, strict:
//! unknown fields are refused), dereferenced by `ctl/schemas/generate.sh` into
//! `ctl/schemas/k8s/` (see its SOURCE file) and embedded here. A test regenerates them from
//! the pinned package and compares, so they cannot drift.
//!
//! Istio kinds: Istio's CRD schemas as npm `@kubernetes-models/istio` ships them, compiled
//! validators run in an embedded JavaScript engine ([`super::istio_schemas`]). TrafficExtension
//! has no published schema (that package predates it): only its `spec.wasm` is checked.

use super::istio_schemas;
use serde_json::Value;
use std::sync::OnceLock;

/// (apiVersion, kind, schema text): exactly the kinds `render k8s` emits.
const EMBEDDED: &[(&str, &str, &str)] = &[
    (
        "v1",
        "ConfigMap",
        include_str!("../../../schemas/k8s/v1-configmap.json"),
    ),
    (
        "v1",
        "Secret",
        include_str!("../../../schemas/k8s/v1-secret.json"),
    ),
    (
        "v1",
        "Service",
        include_str!("../../../schemas/k8s/v1-service.json"),
    ),
    (
        "apps/v1",
        "Deployment",
        include_str!("../../../schemas/k8s/apps-v1-deployment.json"),
    ),
    (
        "policy/v1",
        "PodDisruptionBudget",
        include_str!("../../../schemas/k8s/policy-v1-poddisruptionbudget.json"),
    ),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        include_str!("../../../schemas/k8s/networking-k8s-io-v1-networkpolicy.json"),
    ),
    (
        "v1",
        "ServiceAccount",
        include_str!("../../../schemas/k8s/v1-serviceaccount.json"),
    ),
];

/// Where the embedded schemas come from, for messages and `--help`.
pub const SOURCE: &str = "PyPI kubernetes-validate 1.37.0 (Kubernetes 1.35, strict)";

/// Why an embedded schema does not load (a build defect: every test loads them all).
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Schema(#[from] jsonschema::ValidationError<'static>),
}

type Compiled = Vec<(
    &'static str,
    &'static str,
    Result<jsonschema::Validator, LoadError>,
)>;

fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| {
        EMBEDDED
            .iter()
            .map(|(api, kind, text)| {
                let v = serde_json::from_str::<Value>(text)
                    .map_err(LoadError::from)
                    .and_then(|s| Ok(jsonschema::validator_for(&s)?));
                (*api, *kind, v)
            })
            .collect()
    })
}

/// Whether `render` carries the whole published schema for this kind (Kubernetes or Istio).
pub fn has_schema(api_version: &str, kind: &str) -> bool {
    EMBEDDED
        .iter()
        .any(|(a, k, _)| *a == api_version && *k == kind)
        || istio_schemas::kinds()
            .is_ok_and(|ks| ks.iter().any(|(a, k)| a == api_version && k == kind))
}

/// For a kind without a whole published schema: what is (not) checked, to tell the user.
pub fn unchecked_note(api_version: &str, kind: &str) -> Option<String> {
    if has_schema(api_version, kind) {
        return None;
    }
    Some(if (api_version, kind) == istio_schemas::TRAFFIC_EXTENSION {
        format!(
            "no published schema for {kind} (not in {}): only its spec.wasm is checked, as the WasmPlugin fields of the same names; the rest is not",
            istio_schemas::source()
        )
    } else {
        format!(
            "{api_version} {kind} has no published schema in egressctl: not checked against one"
        )
    })
}

/// Every way `object` fails its kind's published schema (empty: it passes, or the kind has
/// no embedded schema: see [`unchecked_note`]). Each problem names the field path.
pub fn validate(object: &Value) -> Vec<String> {
    let api = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    let Some((_, _, v)) = compiled().iter().find(|(a, k, _)| *a == api && *k == kind) else {
        return istio_schemas::validate(object).unwrap_or_default();
    };
    match v {
        Err(e) => vec![format!(
            "the embedded {api} {kind} schema does not load: {e}"
        )],
        Ok(v) => v
            .iter_errors(object)
            .map(|e| {
                let path = e.instance_path().to_string();
                let at = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                format!("{at}: {e} (schema {SOURCE})")
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "egress", "namespace": "egress" },
            "spec": {
                "selector": { "matchLabels": { "a": "b" } },
                "template": {
                    "metadata": { "labels": { "a": "b" } },
                    "spec": { "containers": [{ "name": "envoy", "image": "envoy",
                        "ports": [{ "containerPort": 8080 }] }] },
                },
            },
        })
    }

    #[test]
    fn every_embedded_schema_loads() {
        for (api, kind, v) in compiled() {
            assert!(v.is_ok(), "{api} {kind}: {:?}", v.as_ref().err());
        }
    }

    #[test]
    fn a_valid_deployment_passes() {
        assert_eq!(validate(&deployment()), Vec::<String>::new());
    }

    #[test]
    fn schema_refuses_unknown_fields_and_wrong_types_with_the_path() {
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!("8080");
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
        let p = validate(&d).join("\n");
        assert!(
            p.contains("/spec/template/spec/containers/0/ports/0/containerPort"),
            "{p}"
        );
        assert!(p.contains("imagePullPolicyy"), "{p}");
        let mut s = json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "x" },
                            "spec": { "ports": [{ "port": 80, "protocol": "TCP" }], "type": 7 } });
        assert!(!validate(&s).is_empty());
        s["spec"]["type"] = json!("ClusterIP");
        assert_eq!(validate(&s), Vec::<String>::new());
    }

    #[test]
    fn kinds_without_a_published_schema_are_not_checked_here() {
        assert!(!has_schema(
            "extensions.istio.io/v1alpha1",
            "TrafficExtension"
        ));
        assert!(has_schema("apps/v1", "Deployment"));
    }
}
