//! `egressctl` with `egress.callers`: the egress listener's TLS context, the issuers' key
//! files in the filter config, `routes` showing who may call, `explain` asking the engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::Value;
use std::process::{Command, Output};

const CONFIG: &str = r#"
http: { addr: "127.0.0.1:18080" }
egress:
  callers:
    mtls:
      server_cert: certs/egress.crt
      server_key: certs/egress.key
      client_ca: certs/mesh-ca.crt
      require_client_cert: false
    jwt:
      - issuer: auth-service
        audiences: [egress-proxy]
        algorithms: [HS256]
        secret: "${JWT_SECRET}"
      - issuer: crm-auth
        algorithms: [EdDSA]
        public_key: keys/crm.pub
        from_cookies: [access_token]
  targets:
    salesforce:
      url: http://127.0.0.1:9/sf
      allow:
        spiffe_ids: ["spiffe://jia.app/user-service", "spiffe://jia.app/billing/*"]
        subjects: [user-service]
        roles: [crm]
    open:
      url: http://127.0.0.1:9/open
  routes:
    - path_prefix: /egress/crm
      target: salesforce
      allow: { roles: [crm-admin] }
    - path_prefix: /egress/sf
      target: salesforce
    - path_prefix: /egress/open
      target: open
"#;

/// Ed25519 public key (PEM), generated once with openssl for this test.
const ED_PUB: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAai0F6YMFHoOaAeE7tJLF64GWlN4nhxYVjkodBGnaQiw=\n-----END PUBLIC KEY-----\n";

/// `compile` of the test directory's config with a stand-in module (the shared list without
/// its `--system-ca`: this directory has no CA bundle).
const COMPILE: &[&str] = common::COMPILE.split_at(6).0;

struct Ctl {
    dir: tempfile::TempDir,
}

impl Ctl {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        std::fs::write(dir.path().join("fake.wasm"), b"\0asm").unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/crm.pub"), ED_PUB).unwrap();
        Self { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_egressctl"))
            .current_dir(self.dir.path())
            .args(args)
            .env("JWT_SECRET", "SECRET-jwt-shared-secret-0123456789")
            .env_remove("ENVOY_BIN")
            .env_remove("EGRESS_FILTER_WASM")
            .output()
            .unwrap()
    }

    /// `compile config.yaml --out out --wasm fake.wasm EXTRA...`, which must succeed.
    fn compile(&self, extra: &[&str]) -> Output {
        let mut args = COMPILE.to_vec();
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A file `compile` wrote under `out/` (JSON is YAML too).
    fn out_file(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join("out").join(name)).unwrap();
        serde_yaml::from_str(&text).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn compile_renders_the_listener_tls_context_and_reads_the_public_key() {
    let ctl = Ctl::new(CONFIG);
    let out = ctl.compile(&[]);
    let lds = ctl.out_file("lds.json");
    let chain = &lds["resources"][0]["filter_chains"][0];
    let tls = &chain["transport_socket"]["typed_config"];
    assert_eq!(
        tls["@type"],
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
    );
    assert_eq!(tls["require_client_certificate"], false);
    let common = &tls["common_tls_context"];
    assert!(
        common["tls_certificates"][0]["certificate_chain"]["filename"]
            .as_str()
            .unwrap()
            .ends_with("certs/egress.crt")
    );
    assert!(common["validation_context"]["trusted_ca"]["filename"]
        .as_str()
        .unwrap()
        .ends_with("certs/mesh-ca.crt"));
    // The missing certificate files are named as warnings.
    assert!(String::from_utf8_lossy(&out.stderr).contains("mesh-ca.crt"));
    // The access log line carries the caller after the status.
    let line = serde_json::to_string(&chain["filters"][0]["typed_config"]["access_log"]).unwrap();
    assert!(line.contains("wasm.egress_caller:PLAIN"), "{line}");
    // The public key is in the filter config (the filter has no file system).
    let filter: egress_core::plan::FilterConfig =
        serde_json::from_slice(&std::fs::read(ctl.dir.path().join("out/filter.json")).unwrap())
            .unwrap();
    let issuers = &filter.callers.as_ref().unwrap().jwt;
    assert!(matches!(
        &issuers[1].keys,
        egress_core::callers::KeySource::PublicKey { pem: Some(p), .. } if p.contains("BEGIN PUBLIC KEY")
    ));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("SECRET-"));
}

#[test]
fn compile_refuses_a_public_key_that_is_not_for_the_listed_algorithm() {
    let ctl = Ctl::new(&CONFIG.replace("algorithms: [EdDSA]", "algorithms: [RS256]"));
    let out = ctl.run(COMPILE);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("crm-auth") && err.contains("RS256"), "{err}");
}

#[test]
fn routes_shows_who_may_call_each_route() {
    let ctl = Ctl::new(CONFIG);
    let rows = ctl.json(&["routes", "config.yaml", "--format", "json"]);
    let find = |p: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["path_prefix"] == p)
            .unwrap()
            .clone()
    };
    let crm = find("/egress/crm")["callers"].as_str().unwrap().to_string();
    assert!(
        crm.contains("spiffe://jia.app/billing/*") && crm.contains("and (roles: crm-admin)"),
        "{crm}"
    );
    assert_eq!(find("/egress/open")["callers"], "any authenticated caller");
    let table = String::from_utf8_lossy(&ctl.run(&["routes", "config.yaml"]).stdout).into_owned();
    assert!(table.lines().next().unwrap().contains("CALLERS"), "{table}");
}

#[test]
fn explain_says_allowed_or_refused_and_why() {
    let ctl = Ctl::new(CONFIG);
    let ex = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "config.yaml",
            "GET",
            "/egress/crm/Contact/1",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        ctl.json(&args)["caller"].clone()
    };
    let v = ex(&["--spiffe-id", "spiffe://jia.app/billing/invoices"]);
    assert_eq!(v["allowed"], false);
    assert_eq!(v["status"], 403);
    assert!(
        v["reason"].as_str().unwrap().contains("route's allow"),
        "{v}"
    );
    let v = ex(&["--subject", "svc", "--roles", "crm,crm-admin"]);
    assert_eq!(v["allowed"], true, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("crm-admin"), "{v}");
    let v = ex(&["--spiffe-id", "spiffe://jia.app/billing-evil"]);
    assert_eq!(
        (v["allowed"].clone(), v["status"].clone()),
        (Value::Bool(false), Value::from(403))
    );
    let v = ex(&[]);
    assert_eq!(v["status"], 401);
    let text = String::from_utf8_lossy(
        &ctl.run(&[
            "explain",
            "config.yaml",
            "GET",
            "/egress/sf/x",
            "--spiffe-id",
            "spiffe://jia.app/user-service",
        ])
        .stdout,
    )
    .into_owned();
    assert!(text.contains("caller:      allowed"), "{text}");
}

#[test]
fn compile_renders_a_tls_verified_cluster_per_jwks_url_issuer() {
    let with_url = CONFIG.replace(
        "        from_cookies: [access_token]\n",
        "        from_cookies: [access_token]\n      - issuer: https://idp.example.com\n        algorithms: [RS256]\n        jwks_url: https://idp.example.com:8443/oidc/jwks\n        jwks_ca: certs/idp-ca.crt\n",
    );
    let ctl = Ctl::new(&with_url);
    let v = ctl.run(&["validate", "config.yaml"]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    ctl.compile(&[]);
    let cds = ctl.out_file("cds.yaml");
    let cluster = cds["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "egress_jwks_2")
        .unwrap_or_else(|| panic!("no egress_jwks_2 in {cds}"));
    let addr = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    assert_eq!(
        (addr["address"].as_str(), addr["port_value"].as_u64()),
        (Some("idp.example.com"), Some(8443))
    );
    let tls = &cluster["transport_socket"]["typed_config"];
    assert_eq!(tls["sni"], "idp.example.com");
    let validation = &tls["common_tls_context"]["validation_context"];
    assert!(validation["trusted_ca"]["filename"]
        .as_str()
        .unwrap()
        .ends_with("certs/idp-ca.crt"));
    assert_eq!(
        validation["match_typed_subject_alt_names"][0]["matcher"]["exact"],
        "idp.example.com"
    );
    // `routes` and `explain` still work with a jwks_url issuer.
    ctl.json(&["routes", "config.yaml", "--format", "json"]);
    let v = ctl.json(&[
        "explain",
        "config.yaml",
        "GET",
        "/egress/crm/Contact/1",
        "--format",
        "json",
        "--subject",
        "user-service",
        "--roles",
        "crm-admin",
    ]);
    assert_eq!(v["caller"]["allowed"], true, "{v}");

    // Plain http is refused with the field path.
    let ctl = Ctl::new(&with_url.replace(
        "https://idp.example.com:8443",
        "http://idp.example.com:8443",
    ));
    let v = ctl.run(&["validate", "config.yaml"]);
    assert_ne!(v.status.code(), Some(0));
    let err = String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
    assert!(
        err.contains("egress.callers.jwt[2].jwks_url") && err.contains("https"),
        "{err}"
    );
}

/// Regression: a caller token header the auto engine removes before routing
/// (`x-egress-*`, `Proxy-Authorization`) never reached the routed filter (401 where the wasm
/// engine admits). The early removal spares exactly those names, never the routing header,
/// and the leaves remove them (the routed filter does too once the caller is admitted).
#[test]
fn auto_engine_spares_caller_token_headers_from_the_early_removal_but_not_the_routing_header() {
    let config = r#"
http: { addr: "127.0.0.1:18080" }
egress:
  callers:
    jwt:
      - issuer: auth-service
        algorithms: [HS256]
        secret: "${JWT_SECRET}"
        from_headers:
          - { name: X-Egress-Caller-Token }
          - { name: Proxy-Authorization, value_prefix: "Bearer " }
  targets:
    open:
      url: http://127.0.0.1:9/open
  routes:
    - path_prefix: /egress/open
      target: open
"#;
    let ctl = Ctl::new(config);
    ctl.compile(&["--engine", "auto"]);
    let lds = ctl.out_file("lds.json");
    let hcm = &lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let mutations = hcm["early_header_mutation_extensions"][0]["typed_config"]["mutations"]
        .as_array()
        .unwrap();
    let removed: Vec<&str> = mutations
        .iter()
        .filter_map(|m| m["remove"].as_str())
        .collect();
    assert!(!removed.contains(&"proxy-authorization"), "{mutations:?}");
    assert!(removed.contains(&"x-http-method-override"), "{mutations:?}");
    let prefixes: Vec<&str> = mutations
        .iter()
        .filter_map(|m| m["remove_on_match"]["key_matcher"]["prefix"].as_str())
        .collect();
    assert!(!prefixes.contains(&"x-egress-"), "{mutations:?}");
    assert!(prefixes.contains(&"x-envoy-"), "{mutations:?}");
    let regexes: Vec<&str> = mutations
        .iter()
        .filter_map(|m| m["remove_on_match"]["key_matcher"]["safe_regex"]["regex"].as_str())
        .collect();
    assert_eq!(
        regexes,
        egress_core::native::prefix_except_regexes("x-egress-", &["x-egress-caller-token"]),
        "{mutations:?}"
    );
    // The leaves still remove the spared names before the request leaves.
    let text = serde_json::to_string(&hcm["route_config"]).unwrap();
    let leaf_removals = text.matches(r#""request_headers_to_remove":["#).count();
    assert!(leaf_removals > 0, "{text}");
    for name in ["proxy-authorization", "x-egress-caller-token"] {
        assert!(
            text.contains(&format!("\"{name}\"")),
            "{name} is not removed on the leaves: {text}"
        );
    }
}
