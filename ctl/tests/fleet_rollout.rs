//! `egressctl render k8s` over time: the redis store's token refresher as its own Deployment,
//! and a changed config or a rotated client certificate rolling the pods. Needs
//! `bash tests/support/install-fleet-deps.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fleet::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn render_k8s_redis_store_runs_the_refresher_as_its_own_deployment_pushing_to_every_envoy_pod() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("m.wasm"), MODULE).unwrap();
    std::fs::write(
        d.path().join("config.yaml"),
        "http:\n  addr: \"0.0.0.0:8080\"\negress:\n  token_store:\n    type: redis\n    redis:\n      address: \"redis.egress:6379\"\n      password: \"${FLEET_REDIS_PASSWORD}\"\n  targets:\n    crm:\n      url: \"https://crm.example.com\"\n      auth:\n        type: oauth2_client_credentials\n        token_url: \"https://login.example.com/token\"\n        client_id: \"id-1\"\n        client_secret: \"${FLEET_API_KEY}\"\nendpoints:\n  health: /healthz\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_egressctl"))
        .current_dir(d.path())
        .args([
            "render",
            "k8s",
            "config.yaml",
            "--out",
            "out",
            "--module-image",
            "registry.example.com/egress/filter",
            "--wasm",
            "m.wasm",
        ])
        .env("FLEET_API_KEY", "fleet-secret-value-1234")
        .env("FLEET_REDIS_PASSWORD", "fleet-redis-password-5678")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let files = yaml_files(&d.path().join("out"));
    let v = kubernetes_validate(&files);
    assert!(v.status.success(), "{}", text(&v));
    let objs: Vec<Value> = files.iter().map(|f| load(f)).collect();
    for f in &files {
        let body = std::fs::read_to_string(f).unwrap();
        let o = load(f);
        let holds =
            body.contains("fleet-secret-value-1234") || body.contains("fleet-redis-password-5678");
        assert_eq!(
            holds,
            o["metadata"]["name"] == "egress-refresher-env",
            "{}",
            f.display()
        );
    }
    let find = |kind: &str, name: &str| {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    // The refresher is its own Deployment, not a container beside Envoy.
    let envoy = find("Deployment", "egress");
    let envoy_pod = &envoy["spec"]["template"];
    assert_eq!(envoy_pod["spec"]["containers"].as_array().unwrap().len(), 1);
    let push_port = envoy_pod["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "push")
        .expect("Envoy exposes its push port");
    assert_eq!(push_port["containerPort"], 9902);
    let refresher = find("Deployment", "egress-token-refresher");
    let rpod = &refresher["spec"]["template"];
    let c = &rpod["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--proxy-dns", "egress-push.egress.svc:9902"])
            && args.contains(&"--watch"),
        "{args:?}"
    );
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "egress-refresher-env");
    let vols = rpod["spec"]["volumes"].to_string();
    assert!(vols.contains("egress-push-key"), "{vols}");
    // The refresher mounts the same hashed ConfigMap (with config.yaml: the redis address).
    let cm = objs.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert!(
        vols.contains(cm["metadata"]["name"].as_str().unwrap()),
        "{vols}"
    );
    assert!(cm["data"]["config.yaml"]
        .as_str()
        .unwrap()
        .contains("redis.egress:6379"));
    // The two Deployments' selectors do not overlap.
    let sel = |d: &Value| d["spec"]["selector"]["matchLabels"].clone();
    assert_ne!(sel(envoy), sel(refresher));
    for (k, v) in sel(refresher).as_object().unwrap() {
        assert_eq!(&rpod["metadata"]["labels"][k], v);
    }
    // The headless Service lists every Envoy pod, ready or not, on the push port.
    let headless = find("Service", "egress-push");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(headless["spec"]["selector"], sel(envoy));
    assert_eq!(headless["spec"]["ports"][0]["port"], 9902);
    // Envoy's push listener takes the pod's addresses.
    let lds = cm["data"]["lds.json"].as_str().unwrap();
    assert!(lds.contains("0.0.0.0") && lds.contains("9902"), "{lds}");
    // Only the refresher pods reach the push port.
    let np = find("NetworkPolicy", "egress");
    let rules = np["spec"]["ingress"].as_array().unwrap();
    let push_rule = rules
        .iter()
        .find(|r| r["ports"][0]["port"] == 9902)
        .expect("a rule for the push port");
    assert_eq!(
        push_rule["from"],
        serde_json::json!([{ "podSelector": { "matchLabels": sel(refresher) } }])
    );
    assert!(rules
        .iter()
        .filter(|r| r["ports"][0]["port"] != 9902)
        .all(|r| !r.to_string().contains("token-refresher")));
}

fn configmap_name(dir: &Path) -> String {
    let dep = yaml_files(dir)
        .into_iter()
        .map(|f| load(&f))
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    dep["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap()["configMap"]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn render_k8s_a_changed_config_is_a_new_configmap_the_deployment_rolls_to() {
    let d = setup("");
    assert!(render(d.path(), "k8s", &[]).status.success());
    let before = configmap_name(&d.path().join("out"));
    let cfg = d.path().join("config.yaml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("inventory.internal:9000", "inventory.internal:9001"),
    )
    .unwrap();
    assert!(render(d.path(), "k8s", &[]).status.success());
    let after = configmap_name(&d.path().join("out"));
    assert_ne!(before, after);
    assert!(d
        .path()
        .join("out")
        .join(format!("configmap-{after}.yaml"))
        .exists());
    // The old one stays for pods still running it and for a rollback.
    assert!(d
        .path()
        .join("out")
        .join(format!("configmap-{before}.yaml"))
        .exists());
}

#[test]
fn render_k8s_a_rotated_client_certificate_rolls_the_pods() {
    let d = setup("");
    assert!(render(d.path(), "k8s", &[]).status.success());
    let hash = |d: &Path| {
        let dep = yaml_files(&d.join("out"))
            .into_iter()
            .map(|f| load(&f))
            .find(|o| o["kind"] == "Deployment")
            .unwrap();
        dep["spec"]["template"]["metadata"]["annotations"]["egress.io/secrets-hash"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = hash(d.path());
    self_signed_cert(d.path(), 2);
    assert!(render(d.path(), "k8s", &[]).status.success());
    assert_ne!(before, hash(d.path()));
}
