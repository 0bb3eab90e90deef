//! Fleet output for real:
//! - the Envoy config inside the ConfigMap `egressctl render k8s` writes is the one `compile`
//!   renders, and it runs in real Envoy (this test plays the kubelet: it writes the ConfigMap,
//!   the CA ConfigMap and the client certificate Secret where the pod would mount them) against
//!   a plain and an mTLS upstream;
//! - `egressctl package` writes an OCI layout that a real registry (Debian's docker-registry)
//!   accepts through skopeo; pulled back by digest it has the same digest, and its module runs
//!   in real Envoy.
//!
//! Needs `bash tests/support/install-fleet-deps.sh` (skopeo, docker-registry).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_e2e::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const POD_PATHS: [&str; 2] = ["/etc/egress/", "/var/lib/egress/"];

fn ctl(dir: &Path, args: &[&str]) -> Output {
    let out = egressctl()
        .unwrap()
        .current_dir(dir)
        .args(args)
        .env("EGRESS_FILTER_WASM", filter_wasm())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "egressctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn config(listen: u16, plain: u16, mtls: u16, pki: &Pki) -> String {
    format!(
        "http:\n  addr: \"0.0.0.0:{listen}\"\negress:\n  targets:\n    inventory:\n      url: \"http://127.0.0.1:{plain}/v1\"\n    audit:\n      url: \"https://localhost:{mtls}\"\n      auth: {{type: mtls}}\n      tls: {{ca_cert: \"{}\", client_cert: \"{}\", client_key: \"{}\"}}\n  routes:\n    - {{path_prefix: /egress/inventory, target: inventory, strip_prefix: /egress/inventory}}\n    - {{path_prefix: /egress/audit, target: audit, strip_prefix: /egress/audit}}\nendpoints:\n  health: /healthz\n  ready: /readyz\n",
        pki.ca_cert().display(),
        pki.client().cert.display(),
        pki.client().key.display(),
    )
}

fn yaml(p: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn objects(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files.iter().map(|f| yaml(f)).collect()
}

/// Rewrites the pod's loopback ports (admin 9901, push 9902) to free ones: this "pod" shares
/// the host's network namespace with other tests.
fn remap_ports(v: &mut Value, admin: u16, push: u16) {
    match v {
        Value::Object(m) => {
            if m.get("address").and_then(Value::as_str) == Some("127.0.0.1") {
                match m.get("port_value").and_then(Value::as_u64) {
                    Some(9901) => {
                        m.insert("port_value".into(), admin.into());
                    }
                    Some(9902) => {
                        m.insert("port_value".into(), push.into());
                    }
                    _ => {}
                }
            }
            m.values_mut().for_each(|x| remap_ports(x, admin, push));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| remap_ports(x, admin, push)),
        _ => {}
    }
}

/// The one intended difference: `compile` seals secrets at rest on the host and lets the
/// module read the unsealing key (`EGRESS_SECRETS_KEY` in `host_env_keys`); in a pod the
/// credentials come from a Secret as plain environment variables, so there is no key.
fn unseal(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(keys)) = m.get_mut("host_env_keys") {
                keys.retain(|k| k != "EGRESS_SECRETS_KEY");
            }
            m.values_mut().for_each(unseal);
        }
        Value::Array(a) => a.iter_mut().for_each(unseal),
        _ => {}
    }
}

/// Writes each ConfigMap/Secret key where the Deployment mounts it, under `root`.
fn mount(objs: &[Value], root: &Path) {
    let dep = objs.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let pod = &dep["spec"]["template"]["spec"];
    let envoy = &pod["containers"][0];
    for m in envoy["volumeMounts"].as_array().unwrap() {
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        let dir = root.join(m["mountPath"].as_str().unwrap().trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let (kind, name, field) = if let Some(n) = vol["configMap"]["name"].as_str() {
            ("ConfigMap", n, "data")
        } else if let Some(n) = vol["secret"]["secretName"].as_str() {
            ("Secret", n, "stringData")
        } else {
            continue; // the module image: written by the caller
        };
        let obj = objs
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap();
        for (k, v) in obj[field].as_object().unwrap() {
            let mut text = v.as_str().unwrap().to_string();
            for p in POD_PATHS {
                text = text.replace(p, &format!("{}{p}", root.display()));
            }
            std::fs::write(dir.join(k), text).unwrap();
        }
    }
}

fn parsed_config_dir(dir: &Path, admin: u16, push: u16) -> Vec<Value> {
    ["envoy.yaml", "lds.json", "cds.yaml"]
        .iter()
        .map(|f| {
            let mut v = yaml(&dir.join(f));
            remap_ports(&mut v, admin, push);
            // JSON is YAML: Envoy reads it back under the same name.
            std::fs::write(dir.join(f), serde_json::to_vec(&v).unwrap()).unwrap();
            v
        })
        .collect()
}

#[test]
fn configmap_envoy_config_equals_compile_output_and_serves_real_upstreams() {
    let pki = Pki::generate().unwrap();
    let plain = Standin::start(StandinOpts::new("inventory")).unwrap();
    let mtls = Standin::start(
        StandinOpts::new("audit")
            .tls(pki.server())
            .client_ca(pki.client_ca_cert()),
    )
    .unwrap();
    let listen = free_port().unwrap();
    let work = scratch_dir().unwrap();
    let w = work.path();
    std::fs::write(
        w.join("config.yaml"),
        config(listen, plain.port(), mtls.port(), pki),
    )
    .unwrap();
    let wasm = filter_wasm();
    let wasm_arg = wasm.display().to_string();
    ctl(
        w,
        &[
            "render",
            "k8s",
            "config.yaml",
            "--out",
            "k8s",
            "--module-image",
            "registry.test/egress/filter",
            "--wasm",
            &wasm_arg,
        ],
    );
    let objs = objects(&w.join("k8s"));

    // The kubelet's part: mounts under root, the module image's plugin.wasm.
    let root = w.join("pod");
    mount(&objs, &root);
    let module = root.join("var/lib/egress/module/plugin.wasm");
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::copy(&wasm, &module).unwrap();
    let config_dir = root.join("etc/egress/config");
    let (admin, push) = (free_port().unwrap(), free_port().unwrap());
    let from_configmap = parsed_config_dir(&config_dir, admin, push);

    // `compile` with the same module, the same push key and the pod's admin address.
    std::fs::create_dir_all(w.join("state")).unwrap();
    std::fs::copy(w.join("k8s/push.key"), w.join("state/push.key")).unwrap();
    let module_arg = module.display().to_string();
    let compiled = egressctl()
        .unwrap()
        .current_dir(w)
        .args([
            "compile",
            "config.yaml",
            "--out",
            "state",
            "--wasm",
            &module_arg,
            "--admin",
            "127.0.0.1:9901",
            "--push-addr",
            "127.0.0.1:9902",
            "--system-ca",
            "/etc/ssl/certs/ca-certificates.crt",
            // `render k8s` renders the wasm engine, so compile must too.
            "--engine",
            "wasm",
        ])
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    // The files compile names (its state dir, the PKI) are the pod's mounts in the ConfigMap.
    let state = w.join("state").canonicalize().unwrap();
    let mut map: Vec<(String, String)> = vec![(
        format!("{}/", state.display()),
        format!("{}/", config_dir.display()),
    )];
    map.push((
        pki.ca_cert().display().to_string(),
        root.join("etc/egress/ca/ca-1.crt").display().to_string(),
    ));
    let tls_dir = std::fs::read_dir(root.join("etc/egress/tls"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    map.push((
        pki.client().cert.display().to_string(),
        tls_dir.join("tls.crt").display().to_string(),
    ));
    map.push((
        pki.client().key.display().to_string(),
        tls_dir.join("tls.key").display().to_string(),
    ));
    let from_compile: Vec<Value> = ["envoy.yaml", "lds.json", "cds.yaml"]
        .iter()
        .map(|f| {
            let mut text = std::fs::read_to_string(state.join(f)).unwrap();
            for (a, b) in &map {
                text = text.replace(a.as_str(), b);
            }
            let mut v: Value = serde_yaml::from_str(&text).unwrap();
            remap_ports(&mut v, admin, push);
            unseal(&mut v);
            v
        })
        .collect();
    assert_eq!(
        from_configmap, from_compile,
        "the ConfigMap's Envoy config is not compile's"
    );

    // Run it.
    let envoy = Envoy::start(&config_dir.join("envoy.yaml"), &[]).unwrap();
    envoy.wait_ready(&format!("127.0.0.1:{admin}")).unwrap();
    let base = format!("http://127.0.0.1:{listen}");
    let r = get(&format!("{base}/readyz")).unwrap();
    assert_eq!(r.status, 200);
    let e = get(&format!("{base}/egress/inventory/items/7"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(e["service"], "inventory", "{e}");
    assert_eq!(e["path"], "/v1/items/7");
    let e = get(&format!("{base}/egress/audit/log"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(e["service"], "audit");
    assert_eq!(
        e["client_cert"], "egress-proxy",
        "the client certificate from the Secret"
    );
}

struct Registry {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> Registry {
    let dir = scratch_dir().unwrap();
    let port = free_port().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .args(["serve", cfg.to_str().unwrap()])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("docker-registry (bash tests/support/install-fleet-deps.sh)");
    let reg = Registry {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + patience();
    loop {
        if get(&format!("http://127.0.0.1:{port}/v2/")).is_ok_and(|r| r.status == 200) {
            return reg;
        }
        assert!(
            Instant::now() < deadline,
            "docker-registry did not answer on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn skopeo(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_packaged_module_round_trips_through_a_registry_and_runs_in_envoy() {
    let work = scratch_dir().unwrap();
    let w = work.path();
    let wasm = filter_wasm();
    let out = ctl(
        w,
        &[
            "package",
            "--wasm",
            wasm.to_str().unwrap(),
            "--out",
            "oci",
            "--tag",
            "v1",
        ],
    );
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let reg = start_registry();
    let repo = format!("127.0.0.1:{}/egress/filter", reg.port);
    skopeo(
        w,
        &[
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "oci:oci:v1",
            &format!("docker://{repo}:v1"),
        ],
    );
    let inspected: Value = serde_json::from_str(&skopeo(
        w,
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{repo}:v1"),
        ],
    ))
    .unwrap();
    assert_eq!(
        inspected["Digest"],
        digest.as_str(),
        "the registry's digest"
    );

    // Pull back by digest, as the rendered manifests reference it.
    skopeo(
        w,
        &[
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{repo}@{digest}"),
            "oci:pulled:p",
        ],
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(w.join("pulled/index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    let blobs = w.join("pulled/blobs/sha256");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blobs.join(digest.trim_start_matches("sha256:"))).unwrap(),
    )
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blobs.join(
        layers[0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let unpacked = w.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let tar = Command::new("tar")
        .arg("xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(tar.success());
    let entries: Vec<_> = std::fs::read_dir(&unpacked)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("plugin.wasm")]);
    let pulled = unpacked.join("plugin.wasm");
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&wasm).unwrap()
    );

    // The pulled module in real Envoy.
    let upstream = Standin::start(StandinOpts::new("inventory")).unwrap();
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    std::fs::write(
        w.join("config.yaml"),
        format!("http:\n  addr: \"127.0.0.1:{listen}\"\negress:\n  targets:\n    inventory:\n      url: \"http://127.0.0.1:{}\"\n  routes:\n    - {{path_prefix: /egress/inventory, target: inventory, strip_prefix: /egress/inventory}}\n", upstream.port()),
    )
    .unwrap();
    let admin_arg = format!("127.0.0.1:{admin}");
    ctl(
        w,
        &[
            "compile",
            "config.yaml",
            "--out",
            "state",
            "--wasm",
            pulled.to_str().unwrap(),
            "--admin",
            &admin_arg,
            // The pulled module must serve the route (auto would route natively).
            "--engine",
            "wasm",
        ],
    );
    let envoy = Envoy::start(&w.join("state/envoy.yaml"), &[]).unwrap();
    envoy.wait_ready(&admin_arg).unwrap();
    let e = get(&format!("http://127.0.0.1:{listen}/egress/inventory/x"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(e["service"], "inventory", "{e}");
    assert_eq!(e["path"], "/x");
}
