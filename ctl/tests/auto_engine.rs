//! `egressctl compile --engine auto` on the seed config: the shape of the rendered egress
//! listener (what Envoy accepts and how it routes is tested on real Envoy in
//! tests/e2e/tests/auto_engine.rs), and `routes`/`explain --engine`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;

fn hcm(bootstrap: &Value) -> &Value {
    let listeners = bootstrap["static_resources"]["listeners"]
        .as_array()
        .unwrap();
    let egress = listeners.iter().find(|l| l["name"] == "egress").unwrap();
    &egress["filter_chains"][0]["filters"][0]["typed_config"]
}

/// Every route in the matcher tree.
fn tree_routes(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            if m.get("@type").and_then(Value::as_str)
                == Some("type.googleapis.com/envoy.config.route.v3.Route")
            {
                out.push(v.clone());
            }
            m.values().for_each(|x| tree_routes(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| tree_routes(x, out)),
        _ => {}
    }
}

#[test]
fn auto_leaves_enable_only_what_their_kind_needs_and_carry_their_target() {
    let ctl = Ctl::seed();
    let (_, b) = ctl.compile(&["--engine", "auto"]);
    let hcm = hcm(&b);
    let vhost = &hcm["route_config"]["virtual_hosts"][0];
    assert!(vhost.get("routes").is_none(), "no linear route list");
    let mut routes = Vec::new();
    tree_routes(&vhost["matcher"], &mut routes);
    let leaves: Vec<&Value> = routes
        .iter()
        .filter(|r| r["metadata"]["filter_metadata"]["egress"]["target"].is_string())
        .collect();
    assert!(!leaves.is_empty());
    for leaf in &leaves {
        let name = leaf["name"].as_str().unwrap();
        assert!(name.starts_with("egress/"), "{name}");
        let kind = leaf["metadata"]["filter_metadata"]["egress"]["kind"]
            .as_str()
            .unwrap();
        let filters = leaf["typed_per_filter_config"].as_object().unwrap();
        assert!(!filters.contains_key("egress.full"), "{name}");
        assert_eq!(
            filters.contains_key("egress.routed"),
            kind == "routed",
            "{name}"
        );
        assert!(filters.contains_key("egress.log"), "{name}");
        // Either a string replace by the route's own prefix or an RE2 rewrite, never both.
        let by_prefix = leaf["route"]["prefix_rewrite"].is_string();
        assert_eq!(
            by_prefix,
            leaf["match"]["prefix"]
                .as_str()
                .is_some_and(|p| !p.is_empty()),
            "{name}"
        );
        assert_ne!(
            by_prefix,
            leaf["route"]["regex_rewrite"]["pattern"]["regex"].is_string(),
            "{name}"
        );
        assert!(leaf["route"]["host_rewrite_literal"].is_string(), "{name}");
    }
    // The seed: salesforce is OAuth2 (routed), the static ones native.
    let kind_of = |target: &str| {
        leaves
            .iter()
            .find(|l| l["metadata"]["filter_metadata"]["egress"]["target"] == target)
            .map(|l| l["metadata"]["filter_metadata"]["egress"]["kind"].clone())
            .unwrap()
    };
    assert_eq!(kind_of("salesforce"), "routed");
    assert_eq!(kind_of("notification"), "native");
    // Per-route filters are off unless a route enables them; the slow route runs the filter.
    for f in hcm["http_filters"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        if name != "envoy.filters.http.router" {
            assert_eq!(f["disabled"], true, "{name}");
        }
    }
    let slow = routes.iter().find(|r| r["name"] == "slow").unwrap();
    assert!(slow["typed_per_filter_config"]["egress.full"].is_object());
    // A caller's routing header is removed before the route is picked.
    let early = hcm["early_header_mutation_extensions"].to_string();
    assert!(early.contains("x-egress-"), "{early}");
}

#[test]
fn the_wasm_engine_routes_by_the_filters_routing_header_alone() {
    let ctl = Ctl::seed();
    let (_, b) = ctl.compile(&["--engine", "wasm"]);
    let hcm = hcm(&b);
    // The filter routes every request: Envoy picks the target the header names (a map, not a
    // list: ctl/tests/compile_upstreams.rs), and nothing by path but the metrics endpoint.
    let tree = &hcm["route_config"]["virtual_hosts"][0]["matcher"]["matcher_tree"];
    assert_eq!(
        tree["input"]["typed_config"]["header_name"],
        "x-egress-target"
    );
    let mut routes = Vec::new();
    tree_routes(&hcm["route_config"], &mut routes);
    assert!(
        routes.iter().all(|r| r.get("metadata").is_none()),
        "no native leaf"
    );
    assert!(hcm.get("early_header_mutation_extensions").is_none());
}

#[test]
fn routes_and_explain_say_which_engine_serves_a_route() {
    let ctl = Ctl::seed();
    let rows: Value = serde_json::from_slice(
        &ctl.run(&["routes", "config.yaml", "--format", "json"])
            .stdout,
    )
    .unwrap();
    let engine_of = |rows: &Value, target: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == target)
            .unwrap()["engine"]
            .clone()
    };
    assert_eq!(engine_of(&rows, "salesforce"), "routed");
    assert_eq!(engine_of(&rows, "notification"), "native");
    let wasm: Value = serde_json::from_slice(
        &ctl.run(&[
            "routes",
            "config.yaml",
            "--format",
            "json",
            "--engine",
            "wasm",
        ])
        .stdout,
    )
    .unwrap();
    assert!(wasm
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["engine"] == "filter"));
    let table = stdout(&ctl.run(&["routes", "config.yaml"]));
    assert!(table.lines().next().unwrap().ends_with("ENGINE"), "{table}");
    let e: Value = serde_json::from_slice(
        &ctl.run(&[
            "explain",
            "config.yaml",
            "POST",
            "/egress/notify/email",
            "--format",
            "json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(e["engine"], "native", "{e}");
    // Another spelling of the same path: the filter canonicalises it on the slow route.
    let e: Value = serde_json::from_slice(
        &ctl.run(&[
            "explain",
            "config.yaml",
            "POST",
            "/egress/notify/%65mail",
            "--format",
            "json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(e["engine"], "filter", "{e}");
}

/// The leaf routes of the first config route's exact key (`/egress/notify`).
fn method_routes(b: &Value) -> Vec<String> {
    let mut routes = Vec::new();
    tree_routes(
        &hcm(b)["route_config"]["virtual_hosts"][0]["matcher"],
        &mut routes,
    );
    let mut names: Vec<String> = routes
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|n| n.starts_with("egress/"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn without_retries_a_native_key_has_one_route_for_every_allowed_method() {
    let no_retries = SEED.replace("retry_count: 3", "retry_count: 0");
    assert_ne!(no_retries, SEED);
    let ctl = Ctl::new(&no_retries);
    let (_, b) = ctl.compile(&["--engine", "auto"]);
    let names = method_routes(&b);
    assert!(names.iter().any(|n| n.ends_with("/any")), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("/post") || n.ends_with("/patch") || n.ends_with("/other")),
        "{names:?}"
    );
    // With retries, writes keep their own routes (retried only before reaching the target).
    let (_, b) = Ctl::seed().compile(&["--engine", "auto"]);
    let names = method_routes(&b);
    assert!(names.iter().any(|n| n.ends_with("/post")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("/other")), "{names:?}");
}

#[test]
fn leaves_add_no_forwarding_header_the_virtual_host_removes_anyway() {
    let (_, b) = Ctl::seed().compile(&["--engine", "auto"]);
    let vhost = &hcm(&b)["route_config"]["virtual_hosts"][0];
    let removed = vhost["request_headers_to_remove"].to_string();
    assert!(removed.contains("x-forwarded-proto"), "{removed}");
    let mut routes = Vec::new();
    tree_routes(&vhost["matcher"], &mut routes);
    for r in &routes {
        assert!(r.get("request_headers_to_add").is_none(), "{r}");
    }
}

/// The seed with `egress.path_mode: strict`; with `static_only`, salesforce on a bearer token.
fn strict_seed(static_only: bool) -> String {
    let mut config = SEED.replacen("egress:\n", "egress:\n  path_mode: strict\n", 1);
    if static_only {
        let start = config
            .find("      type: oauth2_client_credentials")
            .unwrap();
        let end = start + config[start..].find("\n\n").unwrap();
        config.replace_range(
            start..end,
            "      type: bearer\n        token: \"${SALESFORCE_CLIENT_SECRET}\"",
        );
    }
    assert!(config.contains("path_mode: strict"));
    config
}

fn has_wasm(v: &Value) -> bool {
    v.to_string().contains("filters.http.wasm")
}

#[test]
fn strict_paths_with_static_credentials_render_no_module_and_no_push_listener() {
    let ctl = Ctl::new(&strict_seed(true));
    let (_, b) = ctl.compile(&["--engine", "auto"]);
    let listeners = b["static_resources"]["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 1, "only the egress listener");
    assert!(!has_wasm(&b), "no wasm filter anywhere");
    let hcm = hcm(&b);
    let mut routes = Vec::new();
    tree_routes(
        &hcm["route_config"]["virtual_hosts"][0]["matcher"],
        &mut routes,
    );
    assert!(!routes.iter().any(|r| r["name"] == "slow"));
    // Paths that are not plain: Envoy's own 400, the engine's body, both log forms.
    let refusals: Vec<&Value> = routes.iter().filter(|r| r["name"] == "not_plain").collect();
    assert_eq!(refusals.len(), 2);
    for r in refusals {
        assert_eq!(r["direct_response"]["status"], 400);
        let body = r["direct_response"]["body"]["inline_string"]
            .as_str()
            .unwrap();
        assert!(
            body.contains("invalid_path") && body.contains("not plain"),
            "{body}"
        );
    }
    // Readiness cannot change: Envoy answers it.
    let ready = routes.iter().find(|r| r["name"] == "ready").unwrap();
    assert_eq!(ready["direct_response"]["status"], 200);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(ctl.path("out/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["push_listener"], false, "{state}");
    // `status` has nothing to ask the proxy, and says so.
    let out = ctl.run(&["status", "--out", "out"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no push listener"),
        "{}",
        stdout(&out)
    );
    // The wasm engine, same config: the filter does it all, push listener included.
    let (_, w) = ctl.compile(&["--engine", "wasm"]);
    assert!(has_wasm(&w));
    assert_eq!(
        w["static_resources"]["listeners"].as_array().unwrap().len(),
        2
    );
}

#[test]
fn strict_paths_with_an_oauth2_target_keep_the_filter_only_for_tokens_and_readiness() {
    let ctl = Ctl::new(&strict_seed(false));
    let (_, b) = ctl.compile(&["--engine", "auto"]);
    assert_eq!(
        b["static_resources"]["listeners"].as_array().unwrap().len(),
        2
    );
    let hcm = hcm(&b);
    let mut routes = Vec::new();
    tree_routes(
        &hcm["route_config"]["virtual_hosts"][0]["matcher"],
        &mut routes,
    );
    // The slow route answers readiness (token state) only; Envoy refuses what is not plain.
    assert!(routes.iter().any(|r| r["name"] == "not_plain"));
    let ready = routes.iter().find(|r| r["name"] == "slow").unwrap();
    assert!(ready["typed_per_filter_config"]["egress.full"].is_object());
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(ctl.path("out/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["push_listener"], true, "{state}");
}
