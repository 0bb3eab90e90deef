//! Shared by the config test files: the seed, its environment, and error lookups.
#![allow(dead_code, clippy::expect_used)]

use egress_core::config::load::load_str;
use egress_core::config::{ConfigError, ConfigErrors};

pub const SEED: &str = include_str!("../../../../examples/config.yaml");

/// The seed's variables, each set to `v-NAME`.
pub const SEED_VARS: [&str; 7] = [
    "REDIS_PASSWORD",
    "SALESFORCE_CLIENT_ID",
    "SALESFORCE_CLIENT_SECRET",
    "NOTIFICATION_API_KEY",
    "ANALYTICS_BEARER_TOKEN",
    "ERP_USERNAME",
    "ERP_PASSWORD",
];

pub fn env(name: &str) -> Option<String> {
    SEED_VARS.contains(&name).then(|| format!("v-{name}"))
}

pub fn errors(yaml: &str) -> ConfigErrors {
    load_str(yaml, &env).expect_err("config should be rejected")
}

pub fn has(errs: &ConfigErrors, path: &str, needle: &str) -> bool {
    errs.iter()
        .any(|e| e.path == path && e.message.contains(needle))
}

pub fn find<'a>(errs: &'a ConfigErrors, path: &str) -> Option<&'a ConfigError> {
    errs.iter().find(|e| e.path == path)
}

/// A minimal valid config with one target `t` (written by `target`) and a route to it.
pub fn one_target(target: &str) -> String {
    format!(
        "http:\n  addr: \":8080\"\negress:\n  targets:\n    t:\n{target}  routes:\n    - path_prefix: /egress/t\n      target: t\n"
    )
}
