//! What every egress filter harness test starts from: the spec's seed config with a memory
//! token store, a distinct fake value per environment variable, and the filter module loaded.
//! Included by `egress_common` and `oauth2_support`.

use proxy_wasm_harness::Host;

pub const SEED_FILE: &str = include_str!("../../../../examples/config.yaml");

/// The seed with `token_store: memory`. With the seed's own redis store the filter takes
/// tokens only from pushes (the control-plane mode); these tests drive its own fetching.
pub fn seed() -> String {
    let redis = "  token_store:\n    type: redis\n    redis:\n      address: \"redis:6379\"\n      password: \"${REDIS_PASSWORD}\"\n      db: 1\n      key_prefix: \"egress:tokens:\"\n";
    assert!(
        SEED_FILE.contains(redis),
        "the seed's token_store block moved"
    );
    SEED_FILE.replace(redis, "  token_store:\n    type: memory\n")
}

/// A distinct fake value per variable, so any leak names its source.
pub const ENV: [(&str, &str); 7] = [
    ("REDIS_PASSWORD", "redis-pw-R3d1s-7f1"),
    ("SALESFORCE_CLIENT_ID", "sf-client-id-C1d-2a9"),
    ("SALESFORCE_CLIENT_SECRET", "sf-client-secret-S3c-4b8"),
    ("NOTIFICATION_API_KEY", "notify-api-key-N0t-5c7"),
    ("ANALYTICS_BEARER_TOKEN", "analytics-token-A7k-6d6"),
    ("ERP_USERNAME", "erp-user-E1p"),
    ("ERP_PASSWORD", "erp-password-P4ss-8e5"),
];

pub fn env_lookup(name: &str) -> Option<String> {
    ENV.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn filter_host() -> Host {
    let wasm = proxy_wasm_harness::egress_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    Host::from_file(wasm).unwrap_or_else(|e| panic!("loading the egress filter: {e}"))
}
