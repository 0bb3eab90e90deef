//! Credential references in the filter config (`{"env": NAME}`, sealed values): the built
//! module reads them through WASI `environ_get` from the variables the host gives the VM, as
//! Envoy does from `vm_config.environment_variables`.
//!
//! Build the module first: `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::build::{filter_config, secret_env, BuildOptions, SecretMode};
use egress_core::config::load::load_str;
use egress_core::config::Config;
use egress_core::secret_ref::{SealKey, SEAL_KEY_ENV};
use proxy_wasm_harness::{Action, Host, LogLevel, Worker};

const YAML: &str = r#"
http:
  addr: "127.0.0.1:8080"
egress:
  targets:
    crm:
      url: "https://crm.example.com/api"
      auth: {type: api_key, header: X-API-Key, key: "crm-key-Q7x"}
    erp:
      url: "https://erp.example.com"
      auth: {type: bearer, token: "erp-token-W2z"}
  routes:
    - {path_prefix: /egress/crm, target: crm}
    - {path_prefix: /egress/erp, target: erp}
"#;

fn config(yaml: &str) -> Config {
    load_str(yaml, &|_| None).unwrap()
}

fn host() -> Host {
    let wasm = proxy_wasm_harness::egress_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    Host::from_file(wasm).unwrap()
}

fn json(config: &Config, secrets: SecretMode) -> Vec<u8> {
    serde_json::to_vec(&filter_config(
        config,
        &BuildOptions {
            secrets,
            ..Default::default()
        },
    ))
    .unwrap()
}

fn forwarded_header(worker: &Worker, path: &str, name: &str) -> Option<String> {
    let stream = worker
        .http_request(
            [
                (":method", "GET"),
                (":path", path),
                (":authority", "egress"),
                (":scheme", "http"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(stream.last_action(), Some(Action::Continue), "{path}");
    stream.request_header(name)
}

#[test]
fn references_resolve_from_the_vm_environment() {
    let config = config(YAML);
    let host = host();
    for v in secret_env(&config, &Default::default()) {
        host.set_env(&v.name, v.value.expose());
    }
    let body = json(&config, SecretMode::Env);
    assert!(!String::from_utf8_lossy(&body).contains("crm-key-Q7x"));
    let worker = host.worker().unwrap();
    assert!(worker.start(b"", &body).unwrap(), "{:?}", worker.logs());
    assert_eq!(
        forwarded_header(&worker, "/egress/crm/x", "x-api-key").as_deref(),
        Some("crm-key-Q7x")
    );
    assert_eq!(
        forwarded_header(&worker, "/egress/erp/x", "authorization").as_deref(),
        Some("Bearer erp-token-W2z")
    );
}

#[test]
fn a_missing_variable_refuses_the_config_and_names_it_without_a_value() {
    let config = config(YAML);
    let host = host();
    let worker = host.worker().unwrap();
    assert!(!worker.start(b"", &json(&config, SecretMode::Env)).unwrap());
    assert!(
        worker.logged(LogLevel::Error, "EGRESS_SECRET_CRM__KEY"),
        "{:?}",
        worker.logs()
    );
}

#[test]
fn a_sealed_value_wins_over_a_stale_variable() {
    let old = config(YAML);
    let new = config(&YAML.replace("crm-key-Q7x", "crm-key-rotated-R9"));
    let key = SealKey::from_bytes([42; 32]);
    let host = host();
    // The process environment still holds the old values (set when Envoy started).
    for v in secret_env(&old, &Default::default()) {
        host.set_env(&v.name, v.value.expose());
    }
    host.set_env(SEAL_KEY_ENV, &key.to_base64());
    let body = json(&new, SecretMode::Sealed(key));
    assert!(!String::from_utf8_lossy(&body).contains("crm-key-rotated-R9"));
    let worker = host.worker().unwrap();
    assert!(worker.start(b"", &body).unwrap(), "{:?}", worker.logs());
    assert_eq!(
        forwarded_header(&worker, "/egress/crm/x", "x-api-key").as_deref(),
        Some("crm-key-rotated-R9")
    );
}
