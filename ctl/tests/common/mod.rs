//! What the `egressctl` test files share: the seed config and its environment, a scratch
//! folder to run egressctl in, and readers of the bootstrap `compile` writes.
#![allow(dead_code)]

use serde_json::Value;

/// `compile` of the test folder's config into `out/`, with a stand-in module and CA bundle
/// (the CA bundle last: `callers.rs` takes the list without it).
pub const COMPILE: [&str; 8] = [
    "compile",
    "config.yaml",
    "--out",
    "out",
    "--wasm",
    "fake.wasm",
    "--system-ca",
    "system-ca.pem",
];
use std::path::PathBuf;
use std::process::{Command, Output};

pub mod fleet;

pub const SEED: &str = include_str!("../../../examples/config.yaml");

/// The seed's environment; every value is unique so a leak is easy to spot.
pub const ENV: [(&str, &str); 7] = [
    ("REDIS_PASSWORD", "SECRET-redis-pw"),
    ("SALESFORCE_CLIENT_ID", "sf-client-id"),
    ("SALESFORCE_CLIENT_SECRET", "SECRET-sf-secret"),
    ("NOTIFICATION_API_KEY", "SECRET-notify-key"),
    ("ANALYTICS_BEARER_TOKEN", "SECRET-analytics-token"),
    ("ERP_USERNAME", "erp-user"),
    ("ERP_PASSWORD", "SECRET-erp-pass"),
];

/// A scratch directory with a config in it, and a way to run egressctl there.
pub struct Ctl {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Ctl {
    pub fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        std::fs::write(dir.path().join("fake.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.path().join("system-ca.pem"), b"ca").unwrap();
        Self {
            dir,
            env: ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn seed() -> Self {
        Self::new(SEED)
    }

    pub fn without_env(mut self, name: &str) -> Self {
        self.env.retain(|(k, _)| k != name);
        self
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_egressctl"));
        cmd.current_dir(self.dir.path()).args(args);
        for (k, _) in ENV {
            cmd.env_remove(k);
        }
        cmd.env_remove("ENVOY_BIN").env_remove("EGRESS_FILTER_WASM");
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.output().unwrap()
    }

    pub fn compile(&self, extra: &[&str]) -> (Output, Value) {
        let mut args = COMPILE.to_vec();
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        (out, self.rendered())
    }

    /// The bootstrap with the listeners and clusters of the xDS files folded in, as Envoy
    /// sees it once it has loaded them.
    pub fn rendered(&self) -> Value {
        let read = |f: &str| -> Value {
            serde_yaml::from_str(&std::fs::read_to_string(self.path(f)).unwrap()).unwrap()
        };
        let mut b = read("out/envoy.yaml");
        let listeners = read("out/lds.json")["resources"].clone();
        let clusters = read("out/cds.yaml")["resources"].clone();
        b["static_resources"] = serde_json::json!({ "listeners": listeners, "clusters": clusters });
        b
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_no_secret(text: &str) {
    assert!(!text.contains("SECRET-"), "a secret leaked:\n{text}");
}

pub fn cluster<'a>(bootstrap: &'a Value, name: &str) -> &'a Value {
    bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

/// The egress virtual host's matcher tree (either engine: no linear route list).
pub fn vhost_matcher(bootstrap: &Value) -> &Value {
    let vhost = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0];
    assert!(
        vhost.get("routes").is_none(),
        "a linear route list: {vhost}"
    );
    &vhost["matcher"]
}

/// The route Envoy's matcher tree picks for a request with these headers (`:path` among
/// them): exact maps, prefix maps (longest key first) and `on_no_match`. Regex predicates:
/// only `.*`, the one the wasm engine's tree has.
pub fn route_picked<'a>(matcher: &'a Value, headers: &[(&str, &str)]) -> Option<&'a Value> {
    let header = |input: &Value| {
        let name = input["typed_config"]["header_name"].as_str().unwrap();
        headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    };
    let on_match = |m: &'a Value| -> Option<&'a Value> {
        if let Some(next) = m.get("matcher") {
            return route_picked(next, headers);
        }
        Some(&m["action"]["typed_config"])
    };
    let picked = if let Some(t) = matcher.get("matcher_tree") {
        let value = header(&t["input"]);
        if let Some(map) = t["exact_match_map"]["map"].as_object() {
            value.and_then(|v| map.get(v))
        } else {
            let map = t["prefix_match_map"]["map"].as_object().unwrap();
            value.and_then(|v| {
                map.iter()
                    .filter(|(k, _)| v.starts_with(k.as_str()))
                    .max_by_key(|(k, _)| k.len())
                    .map(|(_, m)| m)
            })
        }
    } else {
        let m = &matcher["matcher_list"]["matchers"][0];
        let p = &m["predicate"]["single_predicate"];
        let regex = p["value_match"]["safe_regex"]["regex"].as_str().unwrap();
        assert_eq!(regex, ".*", "route_picked reads no other regex");
        header(&p["input"]).map(|_| &m["on_match"])
    };
    match picked {
        Some(m) => on_match(m),
        None => matcher.get("on_no_match").and_then(on_match),
    }
}
