use super::*;
use crate::build::{filter_config, secret_env, BuildOptions, SecretMode};
use crate::config::load::load_str;
use std::collections::{BTreeMap, BTreeSet};

const YAML: &str = r#"
http:
  addr: "127.0.0.1:8080"
egress:
  targets:
    crm:
      url: "https://crm.example.com/api"
      auth: {type: api_key, header: X-API-Key, key: "k-crm"}
    my-api:
      url: "https://a.example.com"
      auth: {type: bearer, token: "t-a"}
    my_api:
      url: "https://b.example.com"
      auth: {type: basic, username: u, password: "p-b"}
    idp:
      url: "https://idp.example.com"
      auth:
        type: oauth2_client_credentials
        token_url: "https://idp.example.com/token"
        client_id: c
        client_secret: "cs-idp"
  routes:
    - {path_prefix: /egress/crm, target: crm}
    - {path_prefix: /egress/a, target: my-api}
    - {path_prefix: /egress/b, target: my_api}
    - {path_prefix: /egress/idp, target: idp}
"#;

fn env_of(vars: &[crate::build::SecretVar], key: Option<&SealKey>) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = vars
        .iter()
        .map(|v| (v.name.clone(), v.value.expose().to_string()))
        .collect();
    if let Some(k) = key {
        m.insert(SEAL_KEY_ENV.into(), k.to_base64());
    }
    m
}

#[test]
fn names_are_upper_case_and_distinct_for_names_that_differ_only_in_punctuation_or_case() {
    let names: BTreeSet<String> = ["my-api", "my_api", "my.api", "myapi", "MyApi", "myAPI"]
        .iter()
        .map(|t| env_name(t, SecretField::Token))
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    for n in &names {
        assert!(n
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
    }
    assert_eq!(
        env_name("crm", SecretField::ApiKey),
        "EGRESS_SECRET_CRM__KEY"
    );
    // A target name ending like a field cannot produce another pair's name.
    assert_ne!(
        env_name("a__key", SecretField::Token),
        env_name("a", SecretField::ApiKey)
    );
}

#[test]
fn env_references_carry_no_value_and_resolve_to_the_inline_config() {
    let config = load_str(YAML, &|_| None).unwrap();
    let inline = filter_config(&config, &BuildOptions::default());
    let refs = filter_config(
        &config,
        &BuildOptions {
            secrets: SecretMode::Env,
            ..Default::default()
        },
    );
    let json = serde_json::to_string(&refs).unwrap();
    for v in ["k-crm", "t-a", "p-b", "cs-idp"] {
        assert!(!json.contains(v), "{v} in {json}");
    }
    assert!(
        json.contains(r#"{"env":"EGRESS_SECRET_CRM__KEY"}"#),
        "{json}"
    );
    let env = env_of(&secret_env(&config, &BTreeMap::new()), None);
    assert_eq!(env.len(), 4);
    let mut parsed: FilterConfig = serde_json::from_str(&json).unwrap();
    resolve(&mut parsed, &|n| env.get(n).cloned()).unwrap();
    assert_eq!(parsed, inline);
}

#[test]
fn a_missing_variable_names_the_target_and_variable_but_no_value() {
    let config = load_str(YAML, &|_| None).unwrap();
    let opts = BuildOptions {
        secrets: SecretMode::Env,
        ..Default::default()
    };
    let mut fc = filter_config(&config, &opts);
    let err = resolve(&mut fc, &|_| None).unwrap_err();
    assert_eq!(
        err,
        SecretError::Missing {
            target: "crm".into(),
            env: "EGRESS_SECRET_CRM__KEY".into()
        }
    );
    let mut fc = filter_config(&config, &opts);
    let err = resolve(&mut fc, &|_| Some("v\n".into())).unwrap_err();
    assert!(err.to_string().contains("control character"), "{err}");
}

#[test]
fn sealed_values_win_over_the_variable_and_need_the_key() {
    let config = load_str(YAML, &|_| None).unwrap();
    let key = SealKey::from_bytes([7; 32]);
    let sealed = filter_config(
        &config,
        &BuildOptions {
            secrets: SecretMode::Sealed(key.clone()),
            ..Default::default()
        },
    );
    let json = serde_json::to_string(&sealed).unwrap();
    assert!(
        !json.contains("k-crm") && !json.contains("cs-idp"),
        "{json}"
    );
    // Deterministic: the same values give the same config (no reload for nothing).
    let again = filter_config(
        &config,
        &BuildOptions {
            secrets: SecretMode::Sealed(key.clone()),
            ..Default::default()
        },
    );
    assert_eq!(json, serde_json::to_string(&again).unwrap());
    // The variables hold old values: the sealed ones are used.
    let mut parsed: FilterConfig = serde_json::from_str(&json).unwrap();
    let k = key.to_base64();
    resolve(&mut parsed, &|n| {
        (n == SEAL_KEY_ENV)
            .then(|| k.clone())
            .or(Some("old".into()))
    })
    .unwrap();
    assert_eq!(parsed, FilterConfig::from_config(&config));
    // Without the key, or with another one: refused, never a wrong credential.
    let mut parsed: FilterConfig = serde_json::from_str(&json).unwrap();
    assert!(matches!(
        resolve(&mut parsed, &|_| None),
        Err(SecretError::Sealed { .. })
    ));
    let other = SealKey::from_bytes([8; 32]).to_base64();
    let mut parsed: FilterConfig = serde_json::from_str(&json).unwrap();
    assert!(matches!(
        resolve(&mut parsed, &|n| (n == SEAL_KEY_ENV).then(|| other.clone())),
        Err(SecretError::Sealed { .. })
    ));
}

#[test]
fn a_sealed_value_moved_to_another_variable_does_not_open() {
    let key = SealKey::from_bytes([1; 32]);
    let s = key.seal("EGRESS_SECRET_A__KEY", "v");
    assert_eq!(key.open("EGRESS_SECRET_A__KEY", &s).unwrap(), "v");
    assert!(key.open("EGRESS_SECRET_B__KEY", &s).is_err());
    assert!(key.open("EGRESS_SECRET_A__KEY", "AAAA").is_err());
}

#[test]
fn push_only_oauth2_lists_no_client_secret() {
    let yaml = YAML.replace(
        "egress:\n",
        "egress:\n  token_store: {type: redis, redis: {address: \"127.0.0.1:6379\"}}\n",
    );
    let config = load_str(&yaml, &|_| None).unwrap();
    let vars = secret_env(&config, &BTreeMap::new());
    assert!(vars.iter().all(|v| v.field != SecretField::ClientSecret));
    assert_eq!(vars.len(), 3);
}

#[test]
fn private_keys_travel_base64_and_come_back_with_their_line_breaks() {
    let config = load_str(YAML, &|_| None).unwrap();
    let pem = Secret::new("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n");
    let keys: BTreeMap<String, Secret> = [("idp".to_string(), pem.clone())].into();
    let vars = secret_env(&config, &keys);
    let v = vars
        .iter()
        .find(|v| v.field == SecretField::PrivateKey)
        .unwrap();
    assert!(!v.value.expose().contains('\n'));
    let mut fc = filter_config(
        &config,
        &BuildOptions {
            private_keys: keys,
            secrets: SecretMode::Env,
            ..Default::default()
        },
    );
    let env = env_of(&vars, None);
    resolve(&mut fc, &|n| env.get(n).cloned()).unwrap();
    let Credential::Oauth2(o) = &fc.targets[3].credential else {
        panic!("oauth2 expected")
    };
    assert_eq!(o.private_key_pem.as_ref().unwrap(), &pem);
}
