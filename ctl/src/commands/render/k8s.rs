//! `egressctl render k8s`: Envoy with the filter as a Deployment.
//!
//! The Envoy config is what `compile` renders ([`crate::envoy::render`], the same bootstrap,
//! listeners and clusters), with the files it names moved to where the pod mounts them:
//! `/etc/egress/config` (the ConfigMap: envoy.yaml, lds.yaml, cds.yaml), `/etc/egress/ca`
//! (CA certificates, a ConfigMap), `/etc/egress/tls/<cluster>` (client certificates and keys,
//! one `kubernetes.io/tls` Secret each) and `/var/lib/egress/module/plugin.wasm` (the module
//! image, mounted as an `image` volume pinned by digest).
//!
//! With `token_store: redis` the filter fetches nothing: `egressctl token refresh --watch`
//! runs as its own Deployment (`<name>-token-refresher`) and pushes each token to every Envoy
//! pod, found through the headless Service `<name>-push` (`--proxy-dns`); the push listener
//! binds the pod's addresses, signed pushes only, and the NetworkPolicy admits only the
//! refresher pods to it.

use super::objects::{self, dns_part, label_pair, labels, meta, Object};
use super::{credential_env_pairs, input, refuse_inlined_credentials, K8sArgs};
use crate::envoy::{self, PushListener, RenderOptions, CLUSTER_TYPE, LISTENER_TYPE};
use crate::exit::ExitCode;
use crate::oci::sha256_digest;
use crate::state::{write_private, StateDir};
use egress_core::config::{ListenAddr, TokenStore};
use egress_core::push::PushSigner;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CONFIG_DIR: &str = "/etc/egress/config";
pub const CA_DIR: &str = "/etc/egress/ca";
pub const TLS_DIR: &str = "/etc/egress/tls";
pub const MODULE_DIR: &str = "/var/lib/egress/module";
/// The CA bundle of the Envoy image (Ubuntu's ca-certificates).
pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";
pub const ADMIN: &str = "127.0.0.1:9901";
/// Without redis no one pushes: the push listener stays on the pod's loopback.
pub const PUSH: &str = "127.0.0.1:9902";
/// With `token_store: redis` the refresher Deployment pushes to every Envoy pod through the
/// headless Service `<name>-push`: the listener takes the pod's addresses. Pushes are signed
/// (the push key), and the NetworkPolicy admits only the refresher pods to this port.
pub const PUSH_POD: &str = "0.0.0.0:9902";
pub const PUSH_PORT: u16 = 9902;
const REFRESHER_STATE: &str = "/var/run/egress";
/// `app.kubernetes.io/component` of the Envoy pods and of the refresher pods.
const PROXY: &str = "proxy";
const REFRESHER: &str = "token-refresher";

/// The Envoy config as the ConfigMap carries it, and the files it names, by mount.
pub struct EnvoyFiles {
    /// envoy.yaml, lds.yaml, cds.yaml.
    pub config: BTreeMap<String, String>,
    /// CA certificates: ConfigMap key -> PEM.
    pub ca: BTreeMap<String, String>,
    /// Client certificates: cluster -> (cert PEM, key PEM).
    pub tls: BTreeMap<String, (String, String)>,
    pub listen: ListenAddr,
}

pub fn run(a: &K8sArgs) -> anyhow::Result<ExitCode> {
    let inp = match input(&a.fleet)? {
        Ok(i) => i,
        Err(code) => return Ok(code),
    };
    let src = &inp.source;
    let listen = src.config.http.listen.clone();
    if listen.ip.is_loopback() {
        return Ok(objects::refuse(&[format!(
            "http.addr {listen} is loopback: pods are reached through a Service; listen on 0.0.0.0 (e.g. addr: \"${{EGRESS_LISTEN:-0.0.0.0:{}}}\")",
            listen.port
        )]));
    }
    let push_only = crate::commands::compile::push_only_aws_targets(src);
    if !push_only.is_empty() {
        // The refresher Deployment rendered for redis mounts no web identity token.
        return Ok(objects::refuse(
            &push_only
                .iter()
                .map(|n| format!("target {n}: aws_sigv4 with web_identity needs `egressctl token refresh --watch` with the web identity token file mounted, which this output does not render yet; use static keys with render k8s, or egressctl compile"))
                .collect::<Vec<_>>(),
        ));
    }
    let caller = match label_pair("--caller-label", &a.caller_label) {
        Ok(v) => v,
        Err(e) => return Ok(objects::refuse(&[e])),
    };
    // The push key pair: kept in DIR/push.key across renders (written only with the rest), so
    // the same config renders the same ConfigMap.
    let key_path = StateDir::new(&a.fleet.out).push_key();
    let signer = match std::fs::read_to_string(&key_path) {
        Ok(pem) => PushSigner::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not a valid push key: {e}", key_path.display()))?,
        Err(_) => PushSigner::generate(),
    };
    let redis = matches!(src.config.token_store, TokenStore::Redis(_));
    let files = match envoy_files(src, &signer, if redis { PUSH_POD } else { PUSH }) {
        Ok(f) => f,
        Err(e) => return Ok(objects::refuse(&[format!("{e:#}")])),
    };
    let raw_config = std::fs::read_to_string(&src.path)?;
    let mut public: String = files.config.values().map(String::as_str).collect();
    if redis {
        public.push_str(&raw_config);
    }
    if let Err(reasons) = refuse_inlined_credentials(src, &public) {
        return Ok(objects::refuse(&reasons));
    }
    let ns = a.fleet.namespace.clone().unwrap_or_else(|| "egress".into());
    let name = a.fleet.name.as_str();
    let env_pairs = credential_env_pairs(src)?;
    let mut objs = Vec::new();
    let mut config_data = files.config.clone();
    if redis {
        config_data.insert("config.yaml".into(), raw_config.clone());
    }
    let hash = content_hash(&config_data);
    let config_name = format!("{name}-envoy-{hash}");
    objs.push(Object::new(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": meta(&config_name, &ns, name),
        "immutable": true,
        "data": config_data,
    })));
    let mut volumes = vec![
        json!({ "name": "config", "configMap": { "name": config_name } }),
        json!({ "name": "module", "image": { "reference": inp.image_ref, "pullPolicy": "IfNotPresent" } }),
    ];
    let mut mounts = vec![
        json!({ "name": "config", "mountPath": CONFIG_DIR, "readOnly": true }),
        json!({ "name": "module", "mountPath": MODULE_DIR, "readOnly": true }),
    ];
    if !files.ca.is_empty() {
        let ca_name = format!("{name}-ca-{}", content_hash(&files.ca));
        objs.push(Object::new(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta(&ca_name, &ns, name),
            "immutable": true,
            "data": files.ca,
        })));
        volumes.push(json!({ "name": "ca", "configMap": { "name": ca_name } }));
        mounts.push(json!({ "name": "ca", "mountPath": CA_DIR, "readOnly": true }));
    }
    for (cluster, (cert, key)) in &files.tls {
        let secret = format!("{name}-tls-{}", dns_part(cluster));
        let vol = format!("tls-{}", dns_part(cluster));
        objs.push(Object::new(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": meta(&secret, &ns, name),
            "stringData": { "tls.crt": cert, "tls.key": key },
        })));
        volumes
            .push(json!({ "name": vol, "secret": { "secretName": secret, "defaultMode": 0o440 } }));
        mounts.push(json!({ "name": vol, "mountPath": format!("{TLS_DIR}/{}", dns_part(cluster)), "readOnly": true }));
    }
    let mut envoy_c = envoy_container(a, src, &files, mounts);
    if !env_pairs.is_empty() {
        let secret = format!("{name}-credentials");
        let data: Map<String, Value> = env_pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.expose().to_string())))
            .collect();
        objs.push(Object::new(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": meta(&secret, &ns, name),
            "stringData": data,
        })));
        envoy_c["envFrom"] = json!([{ "secretRef": { "name": secret } }]);
    }
    if redis {
        envoy_c["ports"].as_array_mut().into_iter().for_each(|p| {
            p.push(json!({ "name": "push", "containerPort": PUSH_PORT, "protocol": "TCP" }))
        });
        objs.extend(refresher_secrets(a, &ns, &raw_config, &signer));
    }
    let containers = vec![envoy_c];
    // Envoy and the refresher read certificate files and environment variables once, at
    // start: a changed credential changes this hash, so applying the new render rolls the pods.
    let secret_data: BTreeMap<String, String> = objs
        .iter()
        .filter(|o| o.value["kind"] == "Secret")
        .map(|o| (o.file.clone(), o.value["stringData"].to_string()))
        .collect();
    let secrets_hash = content_hash(&secret_data);
    let selector = component_selector(name, PROXY);
    let mut pod_labels = labels(name);
    pod_labels["app.kubernetes.io/component"] = json!(PROXY);
    objs.push(Object::new(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(name, &ns, name),
        "spec": {
            "replicas": a.replicas,
            "selector": { "matchLabels": selector },
            // A changed config is a new ConfigMap name: new pods start with it, and old ones go
            // only once a new one is ready.
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": { "egress.io/config-hash": hash, "egress.io/secrets-hash": secrets_hash },
                },
                "spec": {
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 101, "runAsGroup": 101, "fsGroup": 101, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    })));
    objs.push(Object::new(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": meta(name, &ns, name),
        "spec": {
            "selector": selector,
            "ports": [{ "name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP" }],
        },
    })));
    objs.push(Object::new(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": meta(name, &ns, name),
        "spec": { "maxUnavailable": 1, "selector": { "matchLabels": selector } },
    })));
    let mut ingress = vec![json!({
        "from": [{ "namespaceSelector": {}, "podSelector": { "matchLabels": caller } }],
        "ports": [{ "protocol": "TCP", "port": listen.port }],
    })];
    if redis {
        // Only the refresher pods (this namespace) reach the push port.
        ingress.push(json!({
            "from": [{ "podSelector": { "matchLabels": component_selector(name, REFRESHER) } }],
            "ports": [{ "protocol": "TCP", "port": PUSH_PORT }],
        }));
        objs.extend(refresher_objects(
            a,
            &ns,
            &config_name,
            &selector,
            &secrets_hash,
        ));
    }
    objs.push(Object::new(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": meta(name, &ns, name),
        "spec": {
            "podSelector": { "matchLabels": selector },
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    })));
    let code = objects::check_and_write(&objs, &a.fleet.out)?;
    if code == ExitCode::Success && !key_path.exists() {
        write_private(&key_path, signer.to_pem().as_bytes())?;
        println!(
            "wrote {} (the token push key; keep it with the manifests)",
            key_path.display()
        );
    }
    Ok(code)
}

/// The Envoy config `compile` renders, with the files it names mapped to the pod's mounts.
pub fn envoy_files(
    src: &crate::source::Source,
    signer: &PushSigner,
    push: &str,
) -> anyhow::Result<EnvoyFiles> {
    let admin = ListenAddr::parse(ADMIN).map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = RenderOptions {
        admin: admin.clone(),
        push: Some(PushListener {
            addr: ListenAddr::parse(push).map_err(|e| anyhow::anyhow!("{e}"))?,
            public_key_pem: signer.public_pem(),
        }),
        wasm: PathBuf::from(MODULE_DIR).join(crate::oci::MODULE_FILE),
        system_ca: Some(PathBuf::from(SYSTEM_CA)),
        // Credentials come from the pod's environment (the credentials Secret) alone.
        seal_key: None,
    };
    let rendered = envoy::render(src, &opts)?;
    let mut ca = BTreeMap::new();
    let mut ca_paths: BTreeMap<String, String> = BTreeMap::new();
    let mut tls = BTreeMap::new();
    let mut clusters = rendered.clusters.clone();
    for c in &mut clusters {
        let cluster = c["name"].as_str().unwrap_or("cluster").to_string();
        let Some(ctx) = c.pointer_mut("/transport_socket/typed_config/common_tls_context") else {
            continue;
        };
        if let Some(f) = ctx.pointer_mut("/validation_context/trusted_ca/filename") {
            let host = f.as_str().unwrap_or("").to_string();
            if host != SYSTEM_CA {
                let key = match ca_paths.get(&host) {
                    Some(k) => k.clone(),
                    None => {
                        let k = format!("ca-{}.crt", ca_paths.len() + 1);
                        ca.insert(k.clone(), read(&host)?);
                        ca_paths.insert(host, k.clone());
                        k
                    }
                };
                *f = json!(format!("{CA_DIR}/{key}"));
            }
        }
        if let Some(certs) = ctx
            .get_mut("tls_certificates")
            .and_then(Value::as_array_mut)
        {
            for tc in certs {
                let cert = read(tc["certificate_chain"]["filename"].as_str().unwrap_or(""))?;
                let key = read(tc["private_key"]["filename"].as_str().unwrap_or(""))?;
                let dir = format!("{TLS_DIR}/{}", dns_part(&cluster));
                tc["certificate_chain"]["filename"] = json!(format!("{dir}/tls.crt"));
                tc["private_key"]["filename"] = json!(format!("{dir}/tls.key"));
                tls.insert(cluster.clone(), (cert, key));
            }
        }
    }
    let dir = Path::new(CONFIG_DIR);
    let yaml = |v: &Value| serde_yaml::to_string(v);
    let mut config = BTreeMap::new();
    config.insert(
        "envoy.yaml".to_string(),
        yaml(&envoy::bootstrap(
            &admin,
            &dir.join("lds.yaml"),
            &dir.join("cds.yaml"),
        ))?,
    );
    config.insert(
        "lds.yaml".to_string(),
        yaml(&envoy::resource_file(LISTENER_TYPE, &rendered.listeners))?,
    );
    config.insert(
        "cds.yaml".to_string(),
        yaml(&envoy::resource_file(CLUSTER_TYPE, &clusters))?,
    );
    Ok(EnvoyFiles {
        config,
        ca,
        tls,
        listen: src.config.http.listen.clone(),
    })
}

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{path}: {e} (it goes into the manifests)"))
}

/// The first 10 hex digits of the sha256 of the data: a new name for new content.
fn content_hash(data: &BTreeMap<String, String>) -> String {
    let mut all = Vec::new();
    for (k, v) in data {
        all.extend_from_slice(k.as_bytes());
        all.push(0);
        all.extend_from_slice(v.as_bytes());
        all.push(0);
    }
    sha256_digest(&all)["sha256:".len()..]
        .chars()
        .take(10)
        .collect()
}

fn envoy_container(
    a: &K8sArgs,
    src: &crate::source::Source,
    files: &EnvoyFiles,
    mounts: Vec<Value>,
) -> Value {
    let ep = &src.config.endpoints;
    let probe = |path: Option<&String>| match path {
        Some(p) => json!({ "httpGet": { "path": p, "port": "http" } }),
        None => json!({ "tcpSocket": { "port": "http" } }),
    };
    let mut ready = probe(ep.ready.as_ref().or(ep.health.as_ref()));
    ready["periodSeconds"] = json!(5);
    ready["failureThreshold"] = json!(2);
    let mut live = probe(ep.health.as_ref());
    live["periodSeconds"] = json!(10);
    live["failureThreshold"] = json!(3);
    let mut startup = probe(ep.ready.as_ref().or(ep.health.as_ref()));
    startup["periodSeconds"] = json!(2);
    startup["failureThreshold"] = json!(60);
    let _ = a.replicas;
    json!({
        "name": "envoy",
        "image": a.envoy_image,
        "command": ["envoy"],
        // No hot restart in a pod: a new config is a new pod. Workers match the CPU request.
        "args": ["-c", format!("{CONFIG_DIR}/envoy.yaml"), "--log-level", "info", "--drain-time-s", "20",
                 "--disable-hot-restart", "--concurrency", "2"],
        "ports": [{ "name": "http", "containerPort": files.listen.port, "protocol": "TCP" }],
        "readinessProbe": ready,
        "livenessProbe": live,
        "startupProbe": startup,
        // Give endpoints time to drop this pod before Envoy stops accepting.
        "lifecycle": { "preStop": { "sleep": { "seconds": 5 } } },
        "resources": {
            "requests": { "cpu": "500m", "memory": "128Mi" },
            "limits": { "memory": "512Mi" },
        },
        "securityContext": { "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": { "drop": ["ALL"] } },
        "volumeMounts": mounts,
    })
}

/// The selector of one component's pods.
fn component_selector(instance: &str, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "egress",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
    })
}

/// The refresher's Secrets: the push key, and the variables the config refers to (redis
/// password, client secrets), read from this environment at render time.
fn refresher_secrets(a: &K8sArgs, ns: &str, raw_config: &str, signer: &PushSigner) -> Vec<Object> {
    let name = a.fleet.name.as_str();
    let env: Map<String, Value> = referenced_env(raw_config)
        .into_iter()
        .filter_map(|n| std::env::var(&n).ok().map(|v| (n, Value::String(v))))
        .collect();
    vec![
        Object::new(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": meta(&format!("{name}-push-key"), ns, name),
            "stringData": { "push.key": signer.to_pem() },
        })),
        Object::new(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": meta(&format!("{name}-refresher-env"), ns, name),
            "stringData": env,
        })),
    ]
}

/// `token_store: redis`: `egressctl token refresh --watch` as its own Deployment, pushing to
/// every Envoy pod the headless Service `<name>-push` resolves to (looked up again every
/// round, so new pods get the token at once); its replicas share one token per target
/// through redis (the address is in the config it mounts).
fn refresher_objects(
    a: &K8sArgs,
    ns: &str,
    config_name: &str,
    proxy_selector: &Value,
    secrets_hash: &str,
) -> Vec<Object> {
    let name = a.fleet.name.as_str();
    let push_service = format!("{name}-push");
    let refresher = format!("{name}-{REFRESHER}");
    let selector = component_selector(name, REFRESHER);
    let mut pod_labels = labels(name);
    pod_labels["app.kubernetes.io/component"] = json!(REFRESHER);
    let container = json!({
        "name": REFRESHER,
        "image": a.egressctl_image,
        "command": ["egressctl"],
        "args": ["token", "refresh", format!("{CONFIG_DIR}/config.yaml"), "--watch",
                 "--out", REFRESHER_STATE,
                 "--proxy-dns", format!("{push_service}.{ns}.svc:{PUSH_PORT}")],
        "envFrom": [{ "secretRef": { "name": format!("{name}-refresher-env") } }],
        "resources": { "requests": { "cpu": "10m", "memory": "32Mi" }, "limits": { "memory": "128Mi" } },
        "securityContext": { "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": { "drop": ["ALL"] } },
        "volumeMounts": [
            { "name": "config", "mountPath": CONFIG_DIR, "readOnly": true },
            { "name": "push-key", "mountPath": REFRESHER_STATE, "readOnly": true },
        ],
    });
    vec![
        // Every Envoy pod's address, ready or not: a pod waiting for its first token is not
        // ready, and it is exactly the one the refresher must reach.
        Object::new(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(&push_service, ns, name),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": true,
                "selector": proxy_selector,
                "ports": [{ "name": "push", "port": PUSH_PORT, "targetPort": "push", "protocol": "TCP" }],
            },
        })),
        Object::new(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta(&refresher, ns, name),
            "spec": {
                // Two, for availability: they share each token through redis (one fetch per
                // lifetime) and both push it.
                "replicas": 2,
                "selector": { "matchLabels": selector },
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        "annotations": { "egress.io/secrets-hash": secrets_hash },
                    },
                    "spec": {
                        "automountServiceAccountToken": false,
                        "securityContext": { "runAsNonRoot": true, "runAsUser": 101, "runAsGroup": 101, "fsGroup": 101, "seccompProfile": { "type": "RuntimeDefault" } },
                        "containers": [container],
                        "volumes": [
                            { "name": "config", "configMap": { "name": config_name } },
                            { "name": "push-key", "secret": { "secretName": format!("{name}-push-key"), "defaultMode": 0o440 } },
                        ],
                    },
                },
            },
        })),
    ]
}

/// The `${NAME}` and `${NAME:-default}` variables a config text refers to.
pub fn referenced_env(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let end = rest.find(['}', ':']).unwrap_or(rest.len());
        let n = &rest[..end];
        if !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !out.iter().any(|x| x == n)
        {
            out.push(n.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_env_finds_plain_and_defaulted_names_once() {
        let t = "a: ${A}\nb: ${B:-x}\nc: ${A}\nd: $${not}\ne: ${bad name}";
        assert_eq!(referenced_env(t), vec!["A", "B", "not"]);
    }
}
