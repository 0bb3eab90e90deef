//! `egressctl render` and `egress.callers`: SPIFFE IDs become an Istio AuthorizationPolicy on
//! the egress gateway (checked by node against Istio's CRD schemas) and the namespaces of a
//! Kubernetes NetworkPolicy, never wider than the config; what they cannot express (JWT
//! subjects and roles, service accounts) is left to the filter, and render says so. Needs
//! `bash tests/support/install-fleet-deps.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fleet::*;
use serde_json::{json, Value};
use std::path::Path;

const MTLS: &str =
    "  callers:\n    mtls: {server_cert: c.crt, server_key: c.key, client_ca: c.crt}\n";
const JWT: &str =
    "    jwt:\n      - {issuer: auth-service, algorithms: [HS256], secret: \"${JWT_SECRET}\"}\n";

/// A config with `callers` (the text under `egress:`), a `crm` target with `crm_allow` and two
/// routes, the inner one with `admin_allow`.
fn config(d: &Path, callers: &str, crm_allow: &str, admin_allow: &str) {
    std::fs::write(
        d.join("config.yaml"),
        format!(
            "http:\n  addr: \"0.0.0.0:8080\"\negress:\n{callers}  targets:\n    crm:\n      url: \"http://crm.internal:9000\"\n      allow: {crm_allow}\n  routes:\n    - {{path_prefix: /egress/crm, target: crm}}\n    - {{path_prefix: /egress/crm/admin, target: crm, allow: {admin_allow}}}\nendpoints:\n  health: /healthz\n  ready: /readyz\n"
        ),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(d.join("out"));
}

fn render_with_jwt_secret(d: &Path, what: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_egressctl"))
        .current_dir(d)
        .args(["render", what, "config.yaml", "--out", "out"])
        .args([
            "--module-image",
            "registry.example.com/egress/filter",
            "--wasm",
            "m.wasm",
        ])
        .env(
            "JWT_SECRET",
            "a-long-enough-hs256-secret-for-tests-0123456789",
        )
        .output()
        .unwrap()
}

fn out_object(d: &Path, file: &str) -> Option<Value> {
    let p = d.join("out").join(file);
    p.exists().then(|| load(&p))
}

#[test]
fn spiffe_ids_become_deny_rules_per_route_that_keep_the_segment_boundary() {
    let d = setup("");
    let p = d.path();
    config(
        p,
        MTLS,
        "{spiffe_ids: [\"spiffe://cluster.local/ns/shop/sa/web\", \"spiffe://jia.app/billing/*\"]}",
        "{spiffe_ids: [\"spiffe://jia.app/billing/admin\"]}",
    );
    let out = render(p, "istio", &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let ap = out_object(p, "authorizationpolicy-egress.yaml").expect(&said);
    let crm = json!(["cluster.local/ns/shop/sa/web", "jia.app/billing/*"]);
    let rule = |principals: &Value, paths: &[&str], not_paths: Option<&[&str]>| {
        let mut op = json!({ "ports": ["8080"], "paths": paths });
        if let Some(n) = not_paths {
            op["notPaths"] = json!(n);
        }
        json!({ "from": [{ "source": { "notPrincipals": principals } }], "to": [{ "operation": op }] })
    };
    assert_eq!(
        ap["spec"],
        json!({
            "selector": { "matchLabels": { "istio": "egressgateway" } },
            "action": "DENY",
            "rules": [
                // The target's block on the outer route, which does not judge the inner one.
                rule(&crm, &["/egress/crm", "/egress/crm/*"], Some(&["/egress/crm/admin", "/egress/crm/admin/*"])),
                rule(&crm, &["/egress/crm/admin", "/egress/crm/admin/*"], None),
                rule(&json!(["jia.app/billing/admin"]), &["/egress/crm/admin", "/egress/crm/admin/*"], None),
            ],
        })
    );
    // `billing/*` keeps its boundary: no pattern that `jia.app/billing-evil` would match.
    let all = serde_json::to_string(&ap).unwrap();
    assert!(
        !all.contains("billing*") && !all.contains("jia.app/billing\""),
        "{all}"
    );
    assert!(!said.contains("note: callers"), "{said}");
    // The caller's mesh identity reaches the gateway: Istio mutual TLS on its server, and the
    // clients told to use it; the plugin runs after Istio's authorization.
    let gw = out_object(p, "gateway-egress-gateway.yaml").unwrap();
    assert_eq!(
        gw["spec"]["servers"][0]["tls"],
        json!({ "mode": "ISTIO_MUTUAL" })
    );
    let dr = out_object(p, "destinationrule-egress-gateway.yaml").unwrap();
    assert_eq!(
        dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["mode"],
        "ISTIO_MUTUAL"
    );
    let plugin = out_object(p, "wasmplugin-egress.yaml").unwrap();
    assert_eq!(plugin["spec"]["phase"], "STATS");
    let objs: Vec<Value> = yaml_files(&p.join("out"))
        .iter()
        .map(|f| load(f))
        .filter(|o| o["apiVersion"] != "v1")
        .collect();
    let v = istio_validate(&objs);
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn an_allow_naming_jwt_roles_gets_no_rule_so_the_policy_is_never_wider_or_narrower() {
    let d = setup("");
    let p = d.path();
    let callers = format!("{MTLS}{JWT}");
    // The target's block mixes SPIFFE IDs and roles: a JWT caller may have any principal, so
    // no rule; the route's SPIFFE-only block still gets one.
    config(
        p,
        &callers,
        "{spiffe_ids: [\"spiffe://cluster.local/ns/shop/sa/web\"], roles: [crm]}",
        "{spiffe_ids: [\"spiffe://cluster.local/ns/ops/sa/admin\"]}",
    );
    let out = render_with_jwt_secret(p, "istio");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let ap = out_object(p, "authorizationpolicy-egress.yaml").expect(&said);
    assert_eq!(ap["spec"]["rules"].as_array().unwrap().len(), 1, "{ap}");
    assert_eq!(
        ap["spec"]["rules"][0]["from"][0]["source"]["notPrincipals"],
        json!(["cluster.local/ns/ops/sa/admin"])
    );
    assert!(
        said.contains("note: callers: target crm (on route /egress/crm): its allow names JWT subjects or roles, which Istio principals cannot express; left to the filter"),
        "{said}"
    );
    assert!(
        ap["metadata"]["annotations"]["egress.io/left-to-the-filter"]
            .as_str()
            .unwrap()
            .contains("target crm")
    );
}

#[test]
fn jwt_only_callers_render_no_authorization_policy_and_say_why() {
    let d = setup("");
    let p = d.path();
    config(
        p,
        &format!("  callers:\n{JWT}"),
        "{roles: [crm]}",
        "{subjects: [ops]}",
    );
    let out = render_with_jwt_secret(p, "istio");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(out_object(p, "authorizationpolicy-egress.yaml").is_none());
    assert!(
        said.contains("note: callers: callers are identified by JWT only: Istio cannot express JWT subjects or roles as principals, so no AuthorizationPolicy is rendered; the filter enforces every allow"),
        "{said}"
    );
    // No mesh mTLS needed either: the gateway server stays as without callers.
    let gw = out_object(p, "gateway-egress-gateway.yaml").unwrap();
    assert!(gw["spec"]["servers"][0].get("tls").is_none());
}

#[test]
fn network_policy_admits_the_namespaces_the_spiffe_ids_name_and_never_more() {
    let d = setup("");
    let p = d.path();
    config(
        p,
        MTLS,
        "{spiffe_ids: [\"spiffe://cluster.local/ns/shop/sa/web\", \"spiffe://cluster.local/ns/ops/*\"]}",
        "{spiffe_ids: [\"spiffe://cluster.local/ns/ops/sa/admin\"]}",
    );
    let out = render(p, "k8s", &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let np = out_object(p, "networkpolicy-egress.yaml").unwrap();
    assert_eq!(
        np["spec"]["ingress"][0]["from"],
        json!([{
            "namespaceSelector": { "matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ops", "shop"] }] },
            "podSelector": { "matchLabels": { "egress.io/caller": "true" } },
        }])
    );
    let v = kubernetes_validate(&yaml_files(&p.join("out")));
    assert!(v.status.success(), "{}", text(&v));
    // The listener's own certificate, key and client CA reach the pod (a Secret, the CA
    // ConfigMap), never a path of the machine that rendered; the kubelet, which has no client
    // certificate, probes with a connection only.
    let envoy_cm = yaml_files(&p.join("out"))
        .into_iter()
        .find(|f| f.to_string_lossy().contains("configmap-egress-envoy-"))
        .unwrap();
    let lds = load(&envoy_cm)["data"]["lds.json"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        lds.contains("/etc/egress/tls/listener-egress/tls.crt"),
        "{lds}"
    );
    assert!(lds.contains("/etc/egress/ca/ca-1.crt"), "{lds}");
    assert!(!lds.contains(p.to_str().unwrap()), "{lds}");
    let secret = out_object(p, "secret-egress-tls-listener-egress.yaml").unwrap();
    assert!(secret["stringData"]["tls.key"]
        .as_str()
        .unwrap()
        .contains("PRIVATE KEY"));
    let deploy = out_object(p, "deployment-egress.yaml").unwrap();
    let envoy = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        envoy["readinessProbe"]["tcpSocket"]["port"], "http",
        "{envoy}"
    );
    assert!(envoy["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["mountPath"] == "/etc/egress/tls/listener-egress"));

    // An ID outside the Kubernetes form (or a JWT issuer) could come from anywhere: the policy
    // stays as wide as without callers (pods with the caller label, any namespace).
    config(
        p,
        MTLS,
        "{spiffe_ids: [\"spiffe://cluster.local/ns/shop/sa/web\", \"spiffe://jia.app/billing/*\"]}",
        "{spiffe_ids: [\"spiffe://jia.app/billing/admin\"]}",
    );
    let out = render(p, "k8s", &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let np = out_object(p, "networkpolicy-egress.yaml").unwrap();
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["namespaceSelector"],
        json!({})
    );
    assert!(
        said.contains("note: NetworkPolicy egress: callers from any namespace (with --caller-label): route /egress/crm: a SPIFFE ID it admits is not of the form spiffe://<trust domain>/ns/<namespace>/sa/<service account>"),
        "{said}"
    );
    config(
        p,
        &format!("{MTLS}{JWT}"),
        "{spiffe_ids: [\"spiffe://cluster.local/ns/shop/sa/web\"]}",
        "{spiffe_ids: [\"spiffe://cluster.local/ns/shop/sa/web\"]}",
    );
    let out = render_with_jwt_secret(p, "k8s");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let np = out_object(p, "networkpolicy-egress.yaml").unwrap();
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["namespaceSelector"],
        json!({})
    );
    assert!(
        said.contains("JWT callers may come from any namespace"),
        "{said}"
    );
}

#[test]
fn a_root_route_judges_every_path_but_those_of_more_specific_routes() {
    let d = setup("");
    let p = d.path();
    std::fs::write(
        p.join("config.yaml"),
        format!(
            "http:\n  addr: \"0.0.0.0:8080\"\negress:\n{MTLS}  targets:\n    crm:\n      url: \"http://crm.internal:9000\"\n      allow: {{spiffe_ids: [\"spiffe://cluster.local/ns/shop/sa/web\"]}}\n  routes:\n    - {{path_prefix: /, target: crm}}\n    - {{path_prefix: /open, target: crm}}\nendpoints:\n  egress: /\n"
        ),
    )
    .unwrap();
    let out = render(p, "istio", &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let ap = out_object(p, "authorizationpolicy-egress.yaml").expect(&said);
    assert_eq!(
        ap["spec"]["rules"][0]["to"][0]["operation"],
        json!({ "ports": ["8080"], "paths": ["/*"], "notPaths": ["/open", "/open/*"] })
    );
}
