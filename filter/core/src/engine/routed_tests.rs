//! The routed role: the route name Envoy picked gives the same binding, caller check and
//! token need as the egress role's own routing, and anything else is refused.

#![allow(clippy::indexing_slicing)]

use super::*;
use crate::callers::auth::CallerInput;
use crate::config::load::load_str;
use crate::plan::wire::{self, leaf_route_name};
use crate::plan::FilterConfig;

const SEED: &str = include_str!("../../../../examples/config.yaml");

fn seed_env(name: &str) -> Option<String> {
    Some(format!("value-of-{name}"))
}

fn engine(yaml: &str) -> Engine {
    let config = load_str(yaml, &seed_env).unwrap();
    Engine::new(&FilterConfig::from_config(&config)).unwrap()
}

fn forward(e: &Engine, method: &str, path: &str) -> Forward {
    match e.decide(method, path) {
        Decision::Forward(f) => f,
        other => panic!("{method} {path}: expected a forward, got {other:?}"),
    }
}

#[test]
fn a_leaf_route_name_binds_the_same_route_and_target_as_the_egress_roles_routing() {
    let e = seed_engine();
    for (method, path) in [
        ("GET", "/egress/crm/Contact/42"),
        ("POST", "/egress/notify/send"),
        ("POST", "/egress/audit"),
        ("GET", "/egress/analytics/reports?x=1"),
        ("DELETE", "/egress/erp/orders/7"),
    ] {
        let fwd = forward(&e, method, path);
        let name = leaf_route_name(fwd.route, &method.to_ascii_lowercase());
        assert_eq!(e.routed(Some(&name)), Ok(Binding::from(&fwd)), "{path}");
        // The leaf kind in the name does not matter, only the route index.
        let other = leaf_route_name(fwd.route, "other");
        assert_eq!(e.routed(Some(&other)), Ok(Binding::from(&fwd)), "{path}");
    }
}

fn seed_engine() -> Engine {
    engine(SEED)
}

#[test]
fn a_missing_or_unknown_route_name_is_refused_with_a_json_500() {
    let e = seed_engine();
    let count = e.route_count();
    for (name, refusal) in [
        (None, RoutedRefusal::MissingRouteName),
        (Some(""), RoutedRefusal::NotALeaf(String::new())),
        (
            Some("egress_crm"),
            RoutedRefusal::NotALeaf("egress_crm".into()),
        ),
        (Some("egress/1"), RoutedRefusal::NotALeaf("egress/1".into())),
        (
            Some("egress/-1/get"),
            RoutedRefusal::NotALeaf("egress/-1/get".into()),
        ),
        (
            Some("egress/99999999999999999999999/get"),
            RoutedRefusal::NotALeaf("egress/99999999999999999999999/get".into()),
        ),
        (
            Some("egress/5/get"),
            RoutedRefusal::NoSuchRoute {
                name: "egress/5/get".into(),
                index: 5,
                count,
            },
        ),
    ] {
        let got = e.routed(name).unwrap_err();
        assert_eq!(got, refusal, "{name:?}");
        let reply = got.reply();
        assert_eq!((reply.status, reply.code), (500, "route_unknown"));
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"], "route_unknown");
        assert!(reply
            .headers
            .contains(&("content-type", "application/json".to_string())));
    }
    assert_eq!(count, 5, "the seed's route count moved");
}

#[test]
fn egress_disabled_is_a_503_on_routed_leaves_too() {
    let yaml = SEED.replace("egress:\n  enabled: true\n", "egress:\n  enabled: false\n");
    assert_ne!(yaml, SEED, "the seed's enabled line moved");
    let e = engine(&yaml);
    let got = e.routed(Some(&leaf_route_name(0, "get"))).unwrap_err();
    assert_eq!(got, RoutedRefusal::Disabled);
    let reply = got.reply();
    assert_eq!((reply.status, reply.code), (503, "egress_disabled"));
    // The same body the egress role answers.
    let Decision::Respond(egress) = e.decide("GET", "/egress/crm/x") else {
        panic!("disabled egress must answer")
    };
    assert_eq!(reply, egress);
}

#[test]
fn a_signing_target_is_never_served_by_the_routed_role() {
    let e = engine(
        "http: { addr: \":8080\" }\negress:\n  targets:\n    s3:\n      url: https://s3.amazonaws.com\n      auth: { type: aws_sigv4, region: us-east-1, service: s3, access_key_id: AKIA1, secret_access_key: x }\n  routes: [{ path_prefix: /egress/s3, target: s3 }]\n",
    );
    let got = e.routed(Some(&leaf_route_name(0, "get"))).unwrap_err();
    assert_eq!(got, RoutedRefusal::NeedsFullRole("s3".into()));
    assert_eq!(got.reply().status, 500);
}

#[test]
fn the_routed_role_sets_only_the_oauth2_token() {
    let e = seed_engine();
    let crm = e.routed(Some(&leaf_route_name(0, "get"))).unwrap();
    assert!(e.needs_token(crm.target));
    let (edits, edited) = e.routed_edits(crm, Some("tok-1"));
    assert_eq!(edited, Edited::Complete);
    assert!(edits.remove.is_empty());
    assert_eq!(
        edits.set,
        vec![("authorization".to_string(), "Bearer tok-1".to_string())]
    );
    // No token yet: the caller's Authorization goes now, the token is added on resume.
    let (edits, edited) = e.routed_edits(crm, None);
    assert_eq!(edited, Edited::NeedsToken);
    assert_eq!(edits.remove, vec!["authorization".to_string()]);
    assert!(edits.set.is_empty());
    // Static credentials are Envoy's (credential_injector): the filter changes nothing, and
    // never the path, the authority or the routing header.
    for route in 1..e.route_count() {
        let b = e.routed(Some(&leaf_route_name(route, "post"))).unwrap();
        assert!(!e.needs_token(b.target));
        assert_eq!(
            e.routed_edits(b, Some("tok-1")),
            (HeaderEdits::default(), Edited::Complete)
        );
    }
}

const CALLERS: &str = r#"
http: { addr: ":8080" }
egress:
  callers:
    jwt:
      - issuer: "auth-service"
        audiences: ["egress-proxy"]
        algorithms: ["HS256"]
        secret: "${JWT_SECRET}"
  targets:
    salesforce:
      url: http://127.0.0.1:9/sf
      allow: { subjects: ["user-service"] }
    open:
      url: http://127.0.0.1:9/open
  routes:
    - path_prefix: /egress/crm
      target: salesforce
      allow: { roles: ["crm-admin"] }
    - path_prefix: /egress/sf
      target: salesforce
    - path_prefix: /egress/open
      target: open
"#;

#[test]
fn the_routed_role_applies_the_same_allow_blocks_as_the_egress_role() {
    let e = engine(CALLERS);
    let none = |_: &str| None;
    let anon = CallerInput {
        peer_spiffe_id: None,
        header: &none,
    };
    for path in ["/egress/crm/x", "/egress/sf/x", "/egress/open/x"] {
        let fwd = forward(&e, "GET", path);
        let b = e.routed(Some(&leaf_route_name(fwd.route, "get"))).unwrap();
        assert_eq!(e.allows(b), e.allows(&fwd), "{path}");
        let via_role = |bound: Binding| {
            e.authorize(
                bound,
                &anon,
                0,
                &mut Default::default(),
                &Default::default(),
            )
            .map_err(|r| (r.reply.status, r.reply.body))
            .map(|a| a.caller.is_anonymous())
        };
        let egress = e
            .authorize(&fwd, &anon, 0, &mut Default::default(), &Default::default())
            .map_err(|r| (r.reply.status, r.reply.body))
            .map(|a| a.caller.is_anonymous());
        assert_eq!(via_role(b), egress, "{path}");
        assert_eq!(
            egress.unwrap_err().0,
            401,
            "{path}: anonymous callers are refused"
        );
    }
    let crm = e.routed(Some(&leaf_route_name(0, "get"))).unwrap();
    let (t, r) = e.allows(crm);
    assert_eq!(t.unwrap().subjects, ["user-service"]);
    assert_eq!(r.unwrap().roles, ["crm-admin"]);
}

#[test]
fn the_routed_role_serves_exactly_the_routes_the_renderer_gives_it() {
    use crate::native::{leaf_kind, LeafKind};
    let sigv4 = "http: { addr: \":8080\" }\negress:\n  targets:\n    s3:\n      url: https://s3.amazonaws.com\n      auth: { type: aws_sigv4, region: us-east-1, service: s3, access_key_id: AKIA1, secret_access_key: x }\n  routes: [{ path_prefix: /egress/s3, target: s3 }]\n";
    for yaml in [SEED, CALLERS, sigv4] {
        let config = FilterConfig::from_config(&load_str(yaml, &seed_env).unwrap());
        let e = Engine::new(&config).unwrap();
        for route in 0..config.routes.len() {
            let served = e.routed(Some(&leaf_route_name(route, "get")));
            match leaf_kind(&config, route).unwrap() {
                LeafKind::Routed => assert!(served.is_ok(), "route {route}: {served:?}"),
                // Native leaves never enter the filter; full leaves must not reach this role.
                LeafKind::Native => {
                    assert!(
                        served.is_ok_and(|b| !e.needs_token(b.target)),
                        "route {route}"
                    )
                }
                LeafKind::Full => assert!(served.is_err(), "route {route}"),
            }
        }
    }
}

#[test]
fn a_routed_refusal_logs_what_the_egress_role_logs_for_the_same_request() {
    let e = seed_engine();
    let fwd = forward(&e, "GET", "/egress/crm/Contact/42?fields=Id");
    let target = e.target(fwd.target).unwrap().name.clone();
    assert_eq!(
        e.routed_log_fragment("GET", "/egress/crm/Contact/42?fields=Id"),
        wire::log_fragment(&target, "GET", "/egress/crm/Contact/42", &fwd.target_url)
    );
    // The outgoing URL, not the path as sent, and never the query.
    assert!(!fwd.target_url.ends_with("/egress/crm/Contact/42"));
    assert!(!e
        .routed_log_fragment("GET", "/egress/crm/Contact/42?fields=Id")
        .contains("fields"));
    // A request the egress role answers itself: `-` for target and URL.
    assert_eq!(
        e.routed_log_fragment("GET", "/nowhere?q=1"),
        wire::log_fragment("-", "GET", "/nowhere", "-")
    );
}
