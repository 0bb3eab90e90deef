//! `oauth2_jwt_bearer` through `egressctl`: a service-account target is push-only per target
//! (compile says so, renders no key and no fetch, explain shows it), `token refresh` refuses a
//! hostile key file naming the target, field and file but never the key, and an inline key
//! that does not parse stops compile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;

const SA_PATH: &str = "keys/gcs-sa.json";

fn config(gcs_auth: &str) -> String {
    let auth: String = gcs_auth.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "http:\n  addr: \":8080\"\negress:\n  targets:\n    gcs:\n      url: https://storage.googleapis.com/storage/v1\n      auth:\n{auth}    crm:\n      url: http://127.0.0.1:9\n      auth:\n        type: oauth2_client_credentials\n        token_url: http://127.0.0.1:9/token\n        client_id: crm\n        client_secret: SECRET-crm-client\n  routes:\n    - path_prefix: /egress/gcs\n      target: gcs\n      strip_prefix: /egress/gcs\n    - path_prefix: /egress/crm\n      target: crm\n"
    )
}

fn sa_config() -> String {
    config(&format!(
        "type: oauth2_jwt_bearer\nservice_account_file: {SA_PATH}\nscopes: [\"https://www.googleapis.com/auth/devstorage.read_only\"]"
    ))
}

fn filter_target<'a>(filter: &'a Value, name: &str) -> &'a Value {
    filter["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()
}

#[test]
fn compile_says_a_service_account_target_is_push_only_and_renders_no_fetch_for_it() {
    let ctl = Ctl::new(&sa_config());
    let (out, bootstrap) = ctl.compile(&[]);
    let said = stdout(&out);
    assert!(
        said.contains(&format!(
            "target gcs: push-only (auth.service_account_file ({SA_PATH}) is a file the proxy's filter cannot read)"
        )) && said.contains("egressctl token refresh config.yaml"),
        "{said}"
    );
    // Per target: crm is fetched by the filter as before.
    assert!(!said.contains("target crm: push-only"), "{said}");
    let filter: Value =
        serde_json::from_str(&std::fs::read_to_string(ctl.path("out/filter.json")).unwrap())
            .unwrap();
    let gcs = &filter_target(&filter, "gcs")["credential"];
    assert_eq!(gcs["fetch"], false, "{gcs}");
    assert_eq!(gcs["grant"]["type"], "jwt_bearer", "{gcs}");
    assert!(gcs["private_key_pem"].is_null(), "{gcs}");
    assert_eq!(filter_target(&filter, "crm")["credential"]["fetch"], true);
    // The token URL lives in the key file: no token cluster for gcs, one for crm.
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap();
    assert!(clusters.iter().all(|c| c["name"] != "egress_token_gcs"));
    cluster(&bootstrap, "egress_token_crm");
    let env = std::fs::read_to_string(ctl.path("out/secrets.env")).unwrap();
    assert!(!env.contains("GCS"), "{env}");

    // explain asks the same rule.
    let out = ctl.run(&[
        "explain",
        "config.yaml",
        "GET",
        "/egress/gcs/b/x/o",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["credential"], "oauth2_jwt_bearer", "{e}");
    assert!(
        e["push_only"]
            .as_str()
            .unwrap()
            .contains("only `egressctl token refresh` obtains it"),
        "{e}"
    );
    let out = ctl.run(&["explain", "config.yaml", "GET", "/egress/gcs/b/x/o"]);
    assert!(stdout(&out).contains("push-only:"), "{}", stdout(&out));
    let out = ctl.run(&[
        "explain",
        "config.yaml",
        "GET",
        "/egress/crm/x",
        "--format",
        "json",
    ]);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(e.get("push_only").is_none(), "{e}");
}

#[test]
fn token_refresh_refuses_hostile_key_files_naming_the_file_never_the_key() {
    let ctl = Ctl::new(&sa_config());
    std::fs::create_dir_all(ctl.path("keys")).unwrap();
    let pem = "-----BEGIN PRIVATE KEY-----\nSECRET-not-a-real-key\n-----END PRIVATE KEY-----\n";
    let good = serde_json::json!({
        "type": "service_account",
        "private_key_id": "kid",
        "private_key": pem,
        "client_email": "sa@p.iam.gserviceaccount.com",
        "token_uri": "http://127.0.0.1:9/token",
    });
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("client_email");
    for (file, want) in [
        (
            b"{\"private_key\": \"SECRET-x\"".to_vec(),
            "is not a JSON object",
        ),
        (serde_json::to_vec(&missing).unwrap(), "has no client_email"),
        (
            serde_json::to_vec(&good).unwrap(),
            "private_key: the private key is not a valid RS256 PEM key",
        ),
    ] {
        std::fs::write(ctl.path(SA_PATH), &file).unwrap();
        let out = ctl.run(&["token", "refresh", "config.yaml", "--out", "out"]);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert_ne!(out.status.code(), Some(0), "{all}");
        assert!(
            all.contains(&format!(
                "target gcs: auth.service_account_file {}",
                ctl.path(SA_PATH).display()
            )) && all.contains(want),
            "{want}: {all}"
        );
        assert_no_secret(&all);
    }
}

#[test]
fn compile_refuses_an_inline_key_that_does_not_parse() {
    let ctl = Ctl::new(&config(
        "type: oauth2_jwt_bearer\ntoken_url: https://idp.example.com/token\nissuer: egress\nsubject: svc\nprivate_key: bad.pem",
    ));
    std::fs::write(
        ctl.path("bad.pem"),
        "-----BEGIN PRIVATE KEY-----\nSECRET-garbage\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = ctl.run(&COMPILE);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("target gcs: auth.private_key") && all.contains("not a valid RS256 PEM key"),
        "{all}"
    );
    assert_no_secret(&all);
}
