//! `egressctl render k8s|istio` and `package`: every rendered file passes the published
//! schemas (core Kubernetes: PyPI `kubernetes-validate`; Istio: npm `@kubernetes-models/istio`,
//! generated from Istio's CRDs), credentials stay in Secrets, and what cannot be carried is
//! refused with nothing written (render refusing what fails the Istio CRD schemas: see
//! fleet_istio.rs). Needs `bash tests/support/install-fleet-deps.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fleet::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn render_k8s_output_passes_the_kubernetes_schemas() {
    let d = setup("");
    let out = render(d.path(), "k8s", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let files = yaml_files(&d.path().join("out"));
    let kinds: Vec<String> = files
        .iter()
        .map(|f| load(f)["kind"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} in {kinds:?}");
    }
    let v = kubernetes_validate(&files);
    assert!(v.status.success(), "{}", text(&v));

    // The validator does reject: a misspelt field fails it.
    let dep = files
        .iter()
        .find(|f| load(f)["kind"] == "Deployment")
        .unwrap();
    let bad = d.path().join("bad.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(dep)
            .unwrap()
            .replace("readinessProbe", "readynessProbe"),
    )
    .unwrap();
    assert!(!kubernetes_validate(&[bad]).status.success());
}

#[test]
fn render_k8s_pins_the_module_digest_and_keeps_keys_in_secrets() {
    let d = setup("");
    let pkg = ctl(d.path(), &["package", "--wasm", "m.wasm", "--out", "oci"]);
    assert!(pkg.status.success(), "{}", text(&pkg));
    let digest = String::from_utf8(pkg.stdout).unwrap().trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(render(d.path(), "k8s", &[]).status.success());
    let files = yaml_files(&d.path().join("out"));
    let key = std::fs::read_to_string(d.path().join("c.key")).unwrap();
    let key_line = key.lines().nth(1).unwrap();
    for f in &files {
        let body = std::fs::read_to_string(f).unwrap();
        let v = load(f);
        if v["kind"] == "Secret" {
            assert_eq!(v["type"], "kubernetes.io/tls");
            assert!(body.contains(key_line));
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(f).unwrap().permissions().mode() & 0o077,
                0,
                "{}",
                f.display()
            );
        } else {
            assert!(
                !body.contains(key_line),
                "private key outside a Secret: {}",
                f.display()
            );
        }
        if v["kind"] == "Deployment" {
            let vols = &v["spec"]["template"]["spec"]["volumes"];
            let module = vols
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == "module")
                .unwrap();
            assert_eq!(
                module["image"]["reference"],
                format!("registry.example.com/egress/filter@{digest}")
            );
            let c = &v["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
            assert!(c["resources"]["requests"]["cpu"].is_string());
        }
    }
    // Same config, same files: the ConfigMap name (content hash) is stable.
    let before: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_owned())
        .collect();
    assert!(render(d.path(), "k8s", &[]).status.success());
    let after: Vec<_> = yaml_files(&d.path().join("out"))
        .iter()
        .map(|f| f.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn render_istio_output_passes_the_istio_and_kubernetes_schemas() {
    let d = setup("");
    let out = render(d.path(), "istio", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let files = yaml_files(&d.path().join("out"));
    let (core, istio): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|f| load(f)["apiVersion"] == "v1");
    assert!(!core.is_empty(), "the mTLS target's credentialName Secret");
    let v = kubernetes_validate(&core);
    assert!(v.status.success(), "{}", text(&v));
    let objs: Vec<Value> = istio.iter().map(|f| load(f)).collect();
    let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for k in [
        "WasmPlugin",
        "ServiceEntry",
        "DestinationRule",
        "Gateway",
        "VirtualService",
    ] {
        assert!(kinds.contains(&k), "no {k} in {kinds:?}");
    }
    let v = istio_validate(&objs);
    assert!(v.status.success(), "{}", text(&v));
    let dr = objs
        .iter()
        .find(|o| o["kind"] == "DestinationRule")
        .unwrap();
    assert_eq!(dr["spec"]["trafficPolicy"]["tls"]["mode"], "MUTUAL");
    assert_eq!(
        dr["spec"]["trafficPolicy"]["tls"]["credentialName"],
        "egress-audit-svc-tls"
    );
    let wp = objs.iter().find(|o| o["kind"] == "WasmPlugin").unwrap();
    assert!(wp["spec"]["url"]
        .as_str()
        .unwrap()
        .starts_with("oci://registry.example.com/egress/filter@sha256:"));
    assert_eq!(wp["spec"]["sha256"].as_str().unwrap().len(), 64);

    // A broken object fails the Istio schemas.
    let mut bad = dr.clone();
    bad["spec"]["trafficPolicy"]["tls"]["mode"] = "SOMETIMES".into();
    assert!(!istio_validate(&[bad]).status.success());
}

#[test]
fn render_istio_traffic_extension_carries_the_same_plugin() {
    let d = setup("");
    let out = render(d.path(), "istio", &["--plugin-kind", "traffic-extension"]);
    assert!(out.status.success(), "{}", text(&out));
    let te = yaml_files(&d.path().join("out"))
        .into_iter()
        .map(|f| load(&f))
        .find(|o| o["kind"] == "TrafficExtension")
        .unwrap();
    assert_eq!(te["apiVersion"], "extensions.istio.io/v1alpha1");
    assert!(te["spec"]["wasm"]["url"]
        .as_str()
        .unwrap()
        .starts_with("oci://"));
    assert!(te["spec"]["wasm"]["pluginConfig"]["targets"].is_array());
    assert_eq!(
        te["spec"]["selector"]["matchLabels"]["istio"],
        "egressgateway"
    );
}

#[test]
fn render_puts_a_static_credential_only_in_a_secret_the_plugin_config_names() {
    let d = setup("    crm:\n      url: \"https://crm.example.com\"\n      auth: {type: api_key, header: X-API-Key, key: \"${FLEET_API_KEY}\"}\n");
    for what in ["k8s", "istio"] {
        let out = render(d.path(), what, &[]);
        assert!(out.status.success(), "{what}: {}", text(&out));
        assert!(!text(&out).contains("fleet-secret-value-1234"));
        let mut in_secret = false;
        for f in yaml_files(&d.path().join("out")) {
            let body = std::fs::read_to_string(&f).unwrap();
            let o = load(&f);
            if o["kind"] == "Secret" {
                in_secret |= o["stringData"]["EGRESS_SECRET_CRM__KEY"] == "fleet-secret-value-1234"
                    || body.contains("fleet-secret-value-1234");
            } else {
                assert!(
                    !body.contains("fleet-secret-value-1234"),
                    "{what}: {} holds the credential",
                    f.display()
                );
                if what == "istio" && o["kind"] == "WasmPlugin" {
                    assert!(body.contains("EGRESS_SECRET_CRM__KEY"), "{body}");
                }
            }
        }
        assert!(
            what == "istio" || in_secret,
            "{what}: the credential is in no Secret"
        );
        std::fs::remove_dir_all(d.path().join("out")).unwrap();
    }
}

#[test]
fn render_k8s_refuses_a_loopback_listener() {
    let d = setup("");
    let cfg = d.path().join("config.yaml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("0.0.0.0:8080", "127.0.0.1:8080"),
    )
    .unwrap();
    let out = render(d.path(), "k8s", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("loopback"), "{}", text(&out));
}

#[test]
fn package_is_reproducible_and_refuses_what_is_not_wasm() {
    let d = setup("");
    let a = ctl(d.path(), &["package", "--wasm", "m.wasm", "--out", "a"]);
    let b = ctl(d.path(), &["package", "--wasm", "m.wasm", "--out", "b"]);
    assert_eq!(a.stdout, b.stdout);
    let index: Value =
        serde_json::from_slice(&std::fs::read(d.path().join("a/index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"].as_str().unwrap(),
        String::from_utf8(a.stdout).unwrap().trim()
    );
    std::fs::write(d.path().join("x.wasm"), b"not wasm").unwrap();
    let bad = ctl(d.path(), &["package", "--wasm", "x.wasm", "--out", "c"]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn render_refuses_names_kubernetes_would_reject_and_writes_nothing() {
    let d = setup("");
    let out = render(d.path(), "k8s", &["--name", "Egress_Proxy"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("metadata.name"), "{}", text(&out));
    assert!(!d.path().join("out").exists(), "something was written");
    let out = render(d.path(), "k8s", &["--caller-label", "no label"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = render(d.path(), "istio", &["--module-digest", "sha256:1234"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn render_istio_plugin_config_is_the_filter_config_compile_writes() {
    let d = setup("");
    assert!(render(d.path(), "istio", &[]).status.success());
    let wp = yaml_files(&d.path().join("out"))
        .into_iter()
        .map(|f| load(&f))
        .find(|o| o["kind"] == "WasmPlugin")
        .unwrap();
    let out = ctl(
        d.path(),
        &[
            "compile",
            "config.yaml",
            "--out",
            "state",
            "--wasm",
            "m.wasm",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let compiled: Value =
        serde_json::from_slice(&std::fs::read(d.path().join("state/filter.json")).unwrap())
            .unwrap();
    assert_eq!(wp["spec"]["pluginConfig"], compiled);
}

#[test]
fn embedded_schemas_equal_what_the_generator_makes_from_the_pinned_package() {
    assert!(
        schemas().join(".venv/bin/python").exists(),
        "run bash tests/support/install-fleet-deps.sh"
    );
    let out = tempfile::tempdir().unwrap();
    let gen = Command::new("bash")
        .arg(repo().join("ctl/schemas/generate.sh"))
        .arg(out.path())
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", text(&gen));
    let checked_in = repo().join("ctl/schemas/k8s");
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(out.path()), names(&checked_in));
    for n in names(&checked_in) {
        assert!(
            std::fs::read(out.path().join(&n)).unwrap()
                == std::fs::read(checked_in.join(&n)).unwrap(),
            "ctl/schemas/k8s/{n} differs from what ctl/schemas/generate.sh makes: regenerate it"
        );
    }
}

#[test]
fn render_help_names_the_schemas_it_checks_and_the_kind_without_one() {
    let d = tempfile::tempdir().unwrap();
    let o = ctl(d.path(), &["render", "istio", "--help"]);
    let h = text(&o);
    assert!(h.contains("kubernetes-validate"), "{h}");
    assert!(h.contains("@kubernetes-models/istio 3.0.1"), "{h}");
    assert!(
        h.contains("TrafficExtension has no published schema"),
        "{h}"
    );
}
