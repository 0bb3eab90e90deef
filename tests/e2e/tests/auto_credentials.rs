//! The `auto` engine's static credentials through Envoy's own `credential_injector`: what
//! `egressctl compile --engine auto` renders (the `egress.cred.<target>` filters, the SDS files
//! `sds/<target>.yaml`) loaded by a real Envoy 1.40.
//!
//! - `injectors_set_the_header_and_rotate_without_a_listener_update`: the rendered filters in
//!   a small listener of the test's own (one prefix route per target, the injector enabled on
//!   it as the auto engine's leaves do): the header is injected, a caller's copy overwritten,
//!   Basic is right; the admin interface never shows a value; a compile with a changed key
//!   rewrites that SDS file and Envoy injects the new value with no listener update.
//! - `apply_rotates_a_static_credential_through_its_sds_file_alone`: Envoy on what
//!   `egressctl compile --engine auto` wrote (the auto engine's own listener): plain paths
//!   (native leaves) and percent-escaped ones (the filter routes them, the by-header injector
//!   sets the value) get the credential; `egressctl apply` with a changed key reports the
//!   rotation by target without the value, rewrites that SDS file only, and the new key is
//!   used on both paths with no listener update; a target removed takes its file with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use egress_core::plan::wire;
use egress_e2e::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;

const API_KEY: &str = "ac-apikey-Q8r3Tz";
const ROTATED_KEY: &str = "ac-apikey-rotated-W5m1Kd";
const BEARER: &str = "ac-bearer-N4p7Vb";
const USER: &str = "ac-user";
const PASSWORD: &str = "ac-password-H2j9Xc";

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    )
}

fn config(listen: u16, upstream: u16, key: &str) -> String {
    format!(
        r#"http:
  addr: "127.0.0.1:{listen}"
egress:
  targets:
    apikey:
      url: "http://127.0.0.1:{upstream}/v1"
      auth: {{type: api_key, header: X-API-Key, key: "{key}"}}
    bearer:
      url: "http://127.0.0.1:{upstream}"
      auth: {{type: bearer, token: "{BEARER}"}}
    basic.erp:
      url: "http://127.0.0.1:{upstream}"
      auth: {{type: basic, username: "{USER}", password: "{PASSWORD}"}}
    open:
      url: "http://127.0.0.1:{upstream}"
  routes:
    - {{path_prefix: /egress/apikey, target: apikey, strip_prefix: /egress/apikey}}
    - {{path_prefix: /egress/bearer, target: bearer, strip_prefix: /egress/bearer}}
    - {{path_prefix: /egress/basic, target: basic.erp, strip_prefix: /egress/basic}}
    - {{path_prefix: /egress/open, target: open, strip_prefix: /egress/open}}
endpoints:
  health: /health
"#
    )
}

fn ctl(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = egressctl().unwrap();
    cmd.current_dir(dir)
        .args(args)
        .env("EGRESS_FILTER_WASM", filter_wasm());
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn compile(dir: &Path, admin: u16) -> Output {
    let o = ctl(
        dir,
        &[
            "compile",
            "config.yaml",
            "--out",
            "state",
            "--engine",
            "auto",
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ],
    );
    assert!(o.status.success(), "compile: {}", text(&o));
    o
}

/// Every spelling of a credential that must appear nowhere but in its SDS file.
fn needles(key: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        key.to_string(),
        BEARER.to_string(),
        PASSWORD.to_string(),
        b64.encode(format!("{USER}:{PASSWORD}")),
    ]
}

fn assert_clean(what: &str, body: &str, needles: &[String]) {
    for n in needles {
        assert!(!body.contains(n.as_str()), "{what} shows a credential");
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The `http_filters` of the compiled egress listener.
fn compiled_filters(state: &Path) -> Vec<Value> {
    let lds: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("lds.json")).unwrap()).unwrap();
    let egress = lds["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "egress")
        .unwrap()
        .clone();
    egress["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_array()
        .unwrap()
        .clone()
}

/// A listener of the test's own: the compiled injector filters and a router; one prefix route
/// per target as the auto engine's leaves carry it (metadata, the target's injector enabled).
fn hand_made_lds(listen: u16, injectors: &[Value]) -> Value {
    let leaf = |prefix: &str, target: &str, inject: bool| {
        let mut r = json!({
            "match": { "prefix": prefix },
            "route": { "cluster": wire::target_cluster(target), "prefix_rewrite": "/" },
            "metadata": { "filter_metadata": { "egress": { "target": target } } },
        });
        if inject {
            r["typed_per_filter_config"] = json!({
                format!("egress.cred.{target}"): {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                    "config": {},
                },
            });
        }
        r
    };
    let mut http: Vec<Value> = injectors.to_vec();
    http.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    }));
    json!({ "resources": [{
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "hand_made",
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": listen } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "hand_made",
                "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": [
                    leaf("/apikey/", "apikey", true),
                    leaf("/bearer/", "bearer", true),
                    leaf("/basic/", "basic.erp", true),
                    // The api key target's cluster without its injector: nothing is added.
                    leaf("/plain/", "apikey", false),
                ] }] },
                "http_filters": http,
            },
        }] }],
    }] })
}

/// The echoed request headers of `GET path` (200 expected).
fn echoed(port: u16, path: &str, headers: &[(&str, &str)]) -> Value {
    let r = request(
        "GET",
        &format!("http://127.0.0.1:{port}{path}"),
        headers,
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json().unwrap()["headers"].clone()
}

const ADMIN_PAGES: [&str; 6] = [
    "/config_dump",
    "/config_dump?include_eds",
    "/config_dump?resource=dynamic_active_secrets",
    "/listeners?format=json",
    "/stats",
    "/clusters?format=json",
];

#[test]
fn injectors_set_the_header_and_rotate_without_a_listener_update() {
    let upstream = Standin::start(StandinOpts::new("upstream")).unwrap();
    let (listen, admin, egress) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let scratch = scratch_dir().unwrap();
    let dir = scratch.path();
    std::fs::write(
        dir.join("config.yaml"),
        config(egress, upstream.port(), API_KEY),
    )
    .unwrap();
    let compiled = compile(dir, admin);
    let state = dir.join("state");

    // The SDS files: one per static target, private, the exact header value.
    let sds = state.join("sds");
    #[cfg(unix)]
    assert_eq!(mode(&sds), 0o700);
    let mut files: Vec<String> = std::fs::read_dir(&sds)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["apikey.yaml", "basic.erp.yaml", "bearer.yaml"]);
    #[cfg(unix)]
    assert_eq!(mode(&sds.join("apikey.yaml")), 0o600);
    let basic_file: Value =
        serde_yaml::from_str(&std::fs::read_to_string(sds.join("basic.erp.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        basic_file["resources"][0]["generic_secret"]["secret"]["inline_string"],
        basic()
    );
    // ... and nowhere else.
    for f in [
        "lds.json",
        "cds.yaml",
        "filter.json",
        "envoy.yaml",
        "state.json",
    ] {
        assert_clean(
            f,
            &std::fs::read_to_string(state.join(f)).unwrap(),
            &needles(API_KEY),
        );
    }
    assert_clean("compile output", &text(&compiled), &needles(API_KEY));

    // Envoy on the compiled clusters (a copy: later compiles must not touch them) and a
    // listener of the test's own around the compiled injectors.
    let injectors: Vec<Value> = compiled_filters(&state)
        .into_iter()
        .filter(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("egress.cred."))
        })
        .collect();
    assert_eq!(injectors.len(), 3, "one injector per static target");
    std::fs::copy(state.join("cds.yaml"), dir.join("cds.yaml")).unwrap();
    std::fs::write(
        dir.join("lds.json"),
        serde_json::to_string(&hand_made_lds(listen, &injectors)).unwrap(),
    )
    .unwrap();
    let bootstrap = json!({
        "node": { "id": "t", "cluster": "t" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin } } },
        "dynamic_resources": {
            "lds_config": { "resource_api_version": "V3", "path_config_source": { "path": dir.join("lds.json").display().to_string() } },
            "cds_config": { "resource_api_version": "V3", "path_config_source": { "path": dir.join("cds.yaml").display().to_string() } },
        },
    });
    std::fs::write(dir.join("bootstrap.json"), bootstrap.to_string()).unwrap();
    let envoy = Envoy::start(&dir.join("bootstrap.json"), &[]).unwrap();
    envoy.wait_ready(&format!("127.0.0.1:{admin}")).unwrap();

    // Injected, the caller's copy overwritten.
    let h = echoed(listen, "/apikey/x", &[("X-API-Key", "caller-key")]);
    assert_eq!(h["x-api-key"], API_KEY);
    let h = echoed(listen, "/bearer/x", &[("Authorization", "Bearer caller")]);
    assert_eq!(h["authorization"], format!("Bearer {BEARER}"));
    let h = echoed(listen, "/basic/x", &[("Authorization", "Bearer caller")]);
    assert_eq!(h["authorization"], basic());
    // A route without the target's injector enabled gets nothing from it.
    let h = echoed(listen, "/plain/x", &[]);
    assert_eq!(h.get("x-api-key"), None);
    assert_eq!(h.get("authorization"), None);

    // The admin interface shows the secrets redacted, never a value.
    for page in ADMIN_PAGES {
        let r = envoy.admin_get(page).unwrap();
        assert_eq!(r.status, 200, "{page}");
        assert_clean(page, &r.body, &needles(API_KEY));
    }
    let secrets = envoy
        .admin_get("/config_dump?resource=dynamic_active_secrets")
        .unwrap()
        .body;
    assert!(
        secrets.contains("egress.cred.apikey") && secrets.contains("[redacted]"),
        "{secrets}"
    );

    // Rotation: compiling a changed key rewrites that SDS file only; Envoy reloads it and
    // injects the new key, without a listener update.
    let lds_before = envoy.stat("listener_manager.lds.update_success").unwrap();
    let bearer_file = std::fs::read(sds.join("bearer.yaml")).unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        config(egress, upstream.port(), ROTATED_KEY),
    )
    .unwrap();
    let recompiled = compile(dir, admin);
    assert_clean("compile output", &text(&recompiled), &needles(ROTATED_KEY));
    assert_eq!(
        std::fs::read(sds.join("bearer.yaml")).unwrap(),
        bearer_file,
        "an unchanged credential's file is left alone"
    );
    wait_for("the rotated key injected", || {
        Ok(echoed(listen, "/apikey/x", &[])["x-api-key"] == ROTATED_KEY)
    })
    .unwrap();
    assert_eq!(
        envoy.stat("listener_manager.lds.update_success").unwrap(),
        lds_before,
        "no listener update"
    );
    assert_eq!(
        envoy.stat("sds.egress.cred.apikey.update_success").unwrap(),
        Some(2)
    );
    for page in ADMIN_PAGES {
        let body = envoy.admin_get(page).unwrap().body;
        assert_clean(page, &body, &needles(ROTATED_KEY));
        assert_clean(page, &body, &needles(API_KEY));
    }
    assert!(envoy.exited().is_none());
}

fn apply(dir: &Path) -> (bool, String) {
    let timeout = patience().as_secs().to_string();
    let o = ctl(
        dir,
        &[
            "apply",
            "config.yaml",
            "--out",
            "state",
            "--timeout-secs",
            &timeout,
        ],
    );
    (o.status.success(), text(&o))
}

/// The echoed `name` header of `GET path` through the egress listener.
fn injected(egress: u16, path: &str, name: &str) -> Value {
    echoed(
        egress,
        path,
        &[
            ("X-API-Key", "caller-key"),
            ("Authorization", "Bearer caller"),
        ],
    )[name]
        .clone()
}

#[test]
fn apply_rotates_a_static_credential_through_its_sds_file_alone() {
    let upstream = Standin::start(StandinOpts::new("upstream")).unwrap();
    let (admin, egress) = (free_port().unwrap(), free_port().unwrap());
    let scratch = scratch_dir().unwrap();
    let dir = scratch.path();
    std::fs::write(
        dir.join("config.yaml"),
        config(egress, upstream.port(), API_KEY),
    )
    .unwrap();
    let compiled = compile(dir, admin);
    let envoy = envoy_from_compile(&compiled, &dir.join("state"), admin, &[]).unwrap();
    // Plain paths (native leaves, Envoy's injector) and a percent-escaped one (the slow route:
    // the filter routes it, the by-header injector sets the value); callers' copies replaced.
    const NATIVE: &str = "/egress/apikey/x";
    const SLOW: &str = "/egress/apikey/caf%C3%A9";
    assert_eq!(injected(egress, NATIVE, "x-api-key"), API_KEY);
    assert_eq!(injected(egress, SLOW, "x-api-key"), API_KEY);
    assert_eq!(
        injected(egress, "/egress/basic/x", "authorization"),
        basic()
    );
    assert_eq!(
        injected(egress, "/egress/basic/%7Ex", "authorization"),
        basic()
    );
    assert_eq!(
        injected(egress, "/egress/bearer/x", "authorization"),
        format!("Bearer {BEARER}")
    );
    let open = echoed(egress, "/egress/open/x", &[]);
    assert_eq!(open.get("authorization"), None);
    for page in ADMIN_PAGES {
        assert_clean(
            page,
            &envoy.admin_get(page).unwrap().body,
            &needles(API_KEY),
        );
    }
    let lds = envoy.stat("listener_manager.lds.update_success").unwrap();

    // A changed key: its SDS file rewritten, nothing else; no listener update.
    std::fs::write(
        dir.join("config.yaml"),
        config(egress, upstream.port(), ROTATED_KEY),
    )
    .unwrap();
    let (ok, out) = apply(dir);
    assert!(ok, "apply: {out}");
    assert!(
        out.contains("~ target apikey: credential rotated"),
        "the rotation is reported by target: {out}"
    );
    assert!(out.contains("listeners unchanged"), "{out}");
    assert!(!out.contains("target bearer: credential rotated"), "{out}");
    assert_clean("apply output", &out, &needles(ROTATED_KEY));
    assert_clean("apply output", &out, &needles(API_KEY));
    let sds: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("state/sds/apikey.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        sds["resources"][0]["generic_secret"]["secret"]["inline_string"],
        ROTATED_KEY
    );
    // apply waited for Envoy's SDS counter: the new key is in use at once, on both paths.
    assert_eq!(injected(egress, NATIVE, "x-api-key"), ROTATED_KEY);
    assert_eq!(injected(egress, SLOW, "x-api-key"), ROTATED_KEY);
    assert_eq!(
        injected(egress, "/egress/basic/x", "authorization"),
        basic()
    );
    assert_eq!(
        envoy.stat("listener_manager.lds.update_success").unwrap(),
        lds,
        "a rotation alone changes no listener"
    );
    for page in ADMIN_PAGES {
        let body = envoy.admin_get(page).unwrap().body;
        assert_clean(page, &body, &needles(ROTATED_KEY));
    }
    for f in ["lds.json", "filter.json"] {
        let body = std::fs::read_to_string(dir.join("state").join(f)).unwrap();
        assert_clean(f, &body, &needles(ROTATED_KEY));
    }

    // A target gone: its SDS file goes with it; a new static target gets its file first.
    let new_config = config(egress, upstream.port(), ROTATED_KEY)
        .replace("    bearer:\n", "    bearer2:\n")
        .replace("target: bearer,", "target: bearer2,");
    std::fs::write(dir.join("config.yaml"), new_config).unwrap();
    let (ok, out) = apply(dir);
    assert!(ok, "apply: {out}");
    let sds_dir = dir.join("state/sds");
    assert!(sds_dir.join("bearer2.yaml").exists());
    assert!(!sds_dir.join("bearer.yaml").exists(), "stale file removed");
    assert_eq!(
        injected(egress, "/egress/bearer/x", "authorization"),
        format!("Bearer {BEARER}")
    );
    assert!(envoy.exited().is_none());
}
