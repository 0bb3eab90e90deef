//! `egressctl render istio` against Istio's CRD schemas: render itself refuses what fails them
//! (the validators of npm `@kubernetes-models/istio`, embedded), what it writes for the repo's
//! configs passes the same package run by node (an independent engine), and the embedded copy
//! is what the generator makes from the pinned package. Needs
//! `bash tests/support/install-fleet-deps.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fleet::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// A repo config as `render istio` can carry it: without its OAuth2 targets (refused under
/// Istio, see README) and their routes, certificate paths pointing at `dir`'s certificate.
fn istio_ready(config: &str, dir: &Path) -> String {
    let mut c: serde_yaml::Value = serde_yaml::from_str(config).unwrap();
    let egress = c.get_mut("egress").unwrap();
    let targets = egress.get_mut("targets").unwrap().as_mapping_mut().unwrap();
    let oauth2: Vec<serde_yaml::Value> = targets
        .iter()
        .filter(|(_, t)| t["auth"]["type"] == "oauth2_client_credentials")
        .map(|(k, _)| k.clone())
        .collect();
    assert!(!oauth2.is_empty());
    for k in &oauth2 {
        targets.remove(k);
    }
    for (_, t) in targets.iter_mut() {
        if let Some(tls) = t.get_mut("tls").and_then(|t| t.as_mapping_mut()) {
            for (field, file) in [
                ("ca_cert", "c.crt"),
                ("client_cert", "c.crt"),
                ("client_key", "c.key"),
            ] {
                if tls.contains_key(field) {
                    tls.insert(field.into(), dir.join(file).to_str().unwrap().into());
                }
            }
        }
    }
    egress
        .get_mut("routes")
        .unwrap()
        .as_sequence_mut()
        .unwrap()
        .retain(|r| !oauth2.contains(&r["target"]));
    serde_yaml::to_string(&c).unwrap()
}

fn render_config(dir: &Path, config: &str, extra: &[&str]) -> Output {
    std::fs::write(dir.join("config.yaml"), config).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let mut args = vec![
        "render",
        "istio",
        "config.yaml",
        "--out",
        "out",
        "--module-image",
        "registry.example.com/egress/filter",
        "--wasm",
        "m.wasm",
    ];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_egressctl"))
        .current_dir(dir)
        .args(args)
        .envs(common::ENV)
        .env("DEMO_PKI", dir)
        .env("DEMO_STATE", dir)
        .env("DEMO_LISTEN", "0.0.0.0:8080")
        .output()
        .unwrap()
}

#[test]
fn every_istio_object_render_writes_for_the_repo_configs_passes_the_istio_schemas() {
    let d = setup("");
    let repo_configs = [
        ("examples/config.yaml", common::SEED),
        (
            "examples/demo/config.yaml",
            include_str!("../../examples/demo/config.yaml"),
        ),
    ];
    for (name, config) in repo_configs {
        let config = istio_ready(config, d.path());
        for plugin in ["wasm-plugin", "traffic-extension"] {
            let out = render_config(d.path(), &config, &["--plugin-kind", plugin]);
            let said = text(&out);
            assert!(out.status.success(), "{name} {plugin}: {said}");
            let objs: Vec<Value> = yaml_files(&d.path().join("out"))
                .iter()
                .map(|f| load(f))
                .filter(|o| o["apiVersion"] != "v1")
                .collect();
            assert!(objs.len() >= 5, "{name}: {objs:?}");
            let (checked, unchecked): (Vec<Value>, Vec<Value>) = objs
                .into_iter()
                .partition(|o| o["kind"] != "TrafficExtension");
            let v = istio_validate(&checked);
            assert!(v.status.success(), "{name} {plugin}: {}", text(&v));
            // The kind without a published schema is named as such, and only it.
            if plugin == "traffic-extension" {
                assert_eq!(unchecked.len(), 1);
                assert!(
                    said.contains(
                        "note: TrafficExtension egress: no published schema for TrafficExtension (not in npm @kubernetes-models/istio@3.0.1"
                    ),
                    "{said}"
                );
            } else {
                assert!(unchecked.is_empty());
                assert!(!said.contains("note:"), "{said}");
            }
        }
    }
}

#[test]
fn render_istio_refuses_an_object_that_fails_its_crd_schema_and_writes_nothing() {
    let d = setup("");
    // Istio's ServiceEntry allows endpoint addresses of at most 256 characters.
    let long = format!("{}.svc.cluster.local", "a".repeat(250));
    let out = render(d.path(), "istio", &["--gateway-service", &long]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("ServiceEntry egress-entry: fails its published schema at /spec/endpoints/0/address: must NOT be longer than 256 characters"),
        "{said}"
    );
    assert!(
        said.contains("npm @kubernetes-models/istio@3.0.1"),
        "{said}"
    );
    assert!(!d.path().join("out").exists(), "{said}");
}

#[test]
fn embedded_istio_validators_equal_what_the_generator_makes_from_the_pinned_package() {
    assert!(
        schemas()
            .join("node_modules/@kubernetes-models/istio")
            .exists(),
        "run bash tests/support/install-fleet-deps.sh"
    );
    let out = tempfile::tempdir().unwrap();
    let gen = Command::new("bash")
        .arg(repo().join("ctl/schemas/generate-istio.sh"))
        .arg(out.path())
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", text(&gen));
    let checked_in = repo().join("ctl/schemas/istio");
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
            "ctl/schemas/istio/{n} differs from what ctl/schemas/generate-istio.sh makes: regenerate it"
        );
    }
}
