//! Which leaf kind each credential gets, with and without `egress.callers`.

use super::kind::*;
use crate::callers::CallersPlan;
use crate::config::load::load_str;
use crate::plan::{Credential, FilterConfig, FilterRoute};

const CONFIG: &str = r#"
http: { addr: ":8080" }
egress:
  targets:
    api: { url: "https://api.example.com", auth: { type: api_key, header: X-Api-Key, key: k } }
    bear: { url: "https://bear.example.com", auth: { type: bearer, token: t } }
    bas: { url: "https://bas.example.com/base", auth: { type: basic, username: u, password: p } }
    oa:
      url: "https://oa.example.com"
      auth:
        type: oauth2_client_credentials
        token_url: "https://login.example.com/token"
        client_id: id
        client_secret: s
    s3:
      url: "http://127.0.0.1:5000"
      auth: { type: aws_sigv4, region: us-east-1, service: s3, access_key_id: AKIA1, secret_access_key: x }
  routes:
    - { path_prefix: /egress/api, target: api }
    - { path_prefix: /egress/bear, target: bear }
    - { path_prefix: /egress/bas, target: bas }
    - { path_prefix: /egress/oa, target: oa }
    - { path_prefix: /egress/s3, target: s3 }
"#;

/// The config above, plus targets `none` and `mtls` (routes 5 and 6).
fn config() -> FilterConfig {
    let c = load_str(CONFIG, &|_: &str| None).unwrap();
    let mut f = FilterConfig::from_config(&c);
    for (name, credential) in [("none", Credential::None), ("mtls", Credential::Mtls)] {
        let mut t = f.targets[0].clone();
        t.name = name.into();
        t.credential = credential;
        f.targets.push(t);
        f.routes.push(FilterRoute {
            path_prefix: format!("/egress/{name}"),
            target: name.into(),
            strip_prefix: None,
            rewrite_prefix: None,
            methods: None,
            allow: None,
        });
    }
    f
}

fn kinds(f: &FilterConfig) -> Vec<(&str, LeafKind)> {
    (0..f.routes.len())
        .map(|i| (f.routes[i].target.as_str(), leaf_kind(f, i).unwrap()))
        .collect()
}

#[test]
fn native_leaf_kind_static_and_credentialless_targets_are_native_without_callers() {
    let f = config();
    assert_eq!(
        kinds(&f),
        vec![
            ("api", LeafKind::Native),
            ("bear", LeafKind::Native),
            ("bas", LeafKind::Native),
            ("oa", LeafKind::Routed),
            ("s3", LeafKind::Full),
            ("none", LeafKind::Native),
            ("mtls", LeafKind::Native),
        ]
    );
}

/// With callers, every route needs the filter's caller check: routed, except those the
/// filter serves whole.
#[test]
fn native_leaf_kind_callers_make_every_route_routed_but_full_ones() {
    let mut f = config();
    f.callers = Some(CallersPlan {
        mtls: true,
        jwt: Vec::new(),
    });
    for (target, kind) in kinds(&f) {
        let expected = if target == "s3" {
            LeafKind::Full
        } else {
            LeafKind::Routed
        };
        assert_eq!(kind, expected, "{target}");
    }
}

#[test]
fn native_leaf_kind_is_none_for_unknown_routes_and_targets() {
    let mut f = config();
    assert_eq!(leaf_kind(&f, f.routes.len()), None);
    f.routes[0].target = "missing".into();
    assert_eq!(leaf_kind(&f, 0), None);
}

#[test]
fn native_leaf_kind_names_and_reasons_are_distinct() {
    let names: Vec<&str> = LeafKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names, ["native", "routed", "filter"]);
    for k in LeafKind::ALL {
        assert_eq!(k.to_string(), k.as_str());
        assert!(!k.reason().is_empty() && !k.reason().contains('\n'));
    }
}
