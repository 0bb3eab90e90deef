//! `egressctl render k8s`: Envoy with the filter as a Deployment.
//!
//! The Envoy config is what `compile` renders ([`crate::envoy::render`], the same bootstrap,
//! listeners and clusters), with the files it names moved to where the pod mounts them:
//! `/etc/egress/config` (the ConfigMap: envoy.yaml, lds.json, cds.yaml), `/etc/egress/ca`
//! (CA certificates, a ConfigMap), `/etc/egress/tls/<cluster>` (client certificates and keys,
//! one `kubernetes.io/tls` Secret each) and `/var/lib/egress/module/plugin.wasm` (the module
//! image, mounted as an `image` volume pinned by digest).
//!
//! With `token_store: redis`, and for targets whose credential needs a file on the host
//! (push-only, [`egress_core::build::push_only`]), the filter fetches nothing for them:
//! `egressctl token refresh --watch` runs as its own Deployment (`<name>-token-refresher`, see
//! [`super::refresher`], which mounts those files) and pushes each token to every Envoy pod,
//! found through the headless Service `<name>-push` (`--proxy-dns`); the push listener binds
//! the pod's addresses, signed pushes only, and the NetworkPolicy admits only the refresher
//! pods to it.
//!
//! Callers: the NetworkPolicy admits pods with `--caller-label`, and with `egress.callers` only
//! from the namespaces the SPIFFE IDs name when every route's callers are named by
//! Kubernetes-form IDs (no JWT issuer, see [`super::authz::k8s_namespaces`]). Service accounts
//! cannot be said in a NetworkPolicy: the filter checks them.

use super::objects::{self, dns_part, label_pair, labels, meta, Object};
use super::refresher::{self, component_selector, REFRESHER};
use super::{credential_env_pairs, input, refuse_inlined_credentials, K8sArgs};
use crate::envoy::{self, PushListener, RenderOptions, CDS_FILE, CLUSTER_TYPE, LDS_FILE};
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
/// Without a refresher no one pushes: the push listener stays on the pod's loopback.
pub const PUSH: &str = "127.0.0.1:9902";
/// With `token_store: redis` the refresher Deployment pushes to every Envoy pod through the
/// headless Service `<name>-push`: the listener takes the pod's addresses. Pushes are signed
/// (the push key), and the NetworkPolicy admits only the refresher pods to this port.
pub const PUSH_POD: &str = "0.0.0.0:9902";
pub const PUSH_PORT: u16 = 9902;
/// `app.kubernetes.io/component` of the Envoy pods and of the refresher pods.
const PROXY: &str = "proxy";

/// The Envoy config as the ConfigMap carries it, and the files it names, by mount.
pub struct EnvoyFiles {
    /// envoy.yaml, [`envoy::LDS_FILE`], [`envoy::CDS_FILE`].
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
    let host_files = match refresher::host_files(&src.config, &a.fleet.name, &a.token_audience) {
        Ok(f) => f,
        Err(reasons) => return Ok(objects::refuse(&reasons)),
    };
    let caller = match label_pair("--caller-label", &a.caller_label) {
        Ok(v) => v,
        Err(e) => return Ok(objects::refuse(&[e.to_string()])),
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
    // The refresher runs for redis, and for targets whose credential needs a file on the host.
    let pushed = redis || !host_files.is_empty();
    let files = match envoy_files(src, &signer, if pushed { PUSH_POD } else { PUSH }) {
        Ok(f) => f,
        Err(e) => return Ok(objects::refuse(&[format!("{e:#}")])),
    };
    let raw_config = std::fs::read_to_string(&src.path)?;
    let mut public: String = files.config.values().map(String::as_str).collect();
    if pushed {
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
    if pushed {
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
    if pushed {
        envoy_c["ports"].as_array_mut().into_iter().for_each(|p| {
            p.push(json!({ "name": "push", "containerPort": PUSH_PORT, "protocol": "TCP" }))
        });
        objs.extend(refresher::secrets(name, &ns, &raw_config, &signer));
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
    // Callers: pods with --caller-label, from the namespaces the config's SPIFFE IDs name
    // where it names them all (a NetworkPolicy cannot see service accounts).
    let namespaces = match super::authz::k8s_namespaces(&src.config) {
        Ok(nss) => json!({ "matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "In", "values": nss }] }),
        Err(why) => {
            if src.config.callers.is_some() {
                eprintln!("egressctl: note: NetworkPolicy {name}: callers from any namespace (with --caller-label): {why}");
            }
            json!({})
        }
    };
    let mut ingress = vec![json!({
        "from": [{ "namespaceSelector": namespaces, "podSelector": { "matchLabels": caller } }],
        "ports": [{ "protocol": "TCP", "port": listen.port }],
    })];
    if pushed {
        // Only the refresher pods (this namespace) reach the push port.
        ingress.push(json!({
            "from": [{ "podSelector": { "matchLabels": component_selector(name, REFRESHER) } }],
            "ports": [{ "protocol": "TCP", "port": PUSH_PORT }],
        }));
        objs.extend(refresher::objects(
            a,
            &ns,
            &config_name,
            &selector,
            &secrets_hash,
            redis,
            &host_files,
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
    if code == ExitCode::Success {
        for f in &host_files {
            match &f.source {
                refresher::FileSource::Secret { name: secret } => println!(
                    "target {}: {} ({}) is mounted from Secret {secret} (key {}), which this output references and never holds: kubectl -n {ns} create secret generic {secret} --from-file={}=KEY.json",
                    f.target, f.field, f.path, refresher::SA_KEY, refresher::SA_KEY
                ),
                refresher::FileSource::Token { audience } => println!(
                    "target {}: {} ({}) is a projected token of ServiceAccount {name}-{} (audience {audience})",
                    f.target, f.field, f.path, refresher::REFRESHER
                ),
            }
        }
    }
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
        wasm: Ok(PathBuf::from(MODULE_DIR).join(crate::oci::MODULE_FILE)),
        system_ca: Some(PathBuf::from(SYSTEM_CA)),
        // Credentials come from the pod's environment (the credentials Secret) alone.
        seal_key: None,
        // Fleet output keeps the filter doing everything (any proxy-wasm host).
        engine: egress_core::native::EngineChoice::Wasm,
        sds_dir: None,
    };
    let rendered = envoy::render(src, &opts)?;
    let mut files = MountedFiles::default();
    let mut clusters = rendered.clusters.clone();
    for c in &mut clusters {
        let cluster = c["name"].as_str().unwrap_or("cluster").to_string();
        if let Some(ctx) = c.pointer_mut("/transport_socket/typed_config/common_tls_context") {
            files.relocate(ctx, &cluster)?;
        }
    }
    // The egress listener's own TLS (`egress.callers.mtls`): its certificate and key in a
    // Secret like a target's client certificate, `client_ca` with the other CAs.
    let mut listeners = rendered.listeners.clone();
    for l in &mut listeners {
        let owner = format!("listener-{}", l["name"].as_str().unwrap_or("listener"));
        let Some(chains) = l.get_mut("filter_chains").and_then(Value::as_array_mut) else {
            continue;
        };
        for fc in chains {
            if let Some(ctx) = fc.pointer_mut("/transport_socket/typed_config/common_tls_context") {
                files.relocate(ctx, &owner)?;
            }
        }
    }
    let MountedFiles { ca, tls, .. } = files;
    let dir = Path::new(CONFIG_DIR);
    let yaml = |v: &Value| serde_yaml::to_string(v);
    let mut config = BTreeMap::new();
    config.insert(
        "envoy.yaml".to_string(),
        yaml(&envoy::bootstrap(
            &admin,
            &dir.join(LDS_FILE),
            &dir.join(CDS_FILE),
        ))?,
    );
    config.insert(LDS_FILE.to_string(), envoy::listener_file_text(&listeners)?);
    config.insert(
        CDS_FILE.to_string(),
        yaml(&envoy::resource_file(CLUSTER_TYPE, &clusters))?,
    );
    Ok(EnvoyFiles {
        config,
        ca,
        tls,
        listen: src.config.http.listen.clone(),
    })
}

/// The files a TLS context names, moved to the pod's mounts.
#[derive(Default)]
struct MountedFiles {
    /// Key in the CA ConfigMap -> content.
    ca: BTreeMap<String, String>,
    /// Host path -> key in the CA ConfigMap.
    ca_paths: BTreeMap<String, String>,
    /// Owner (cluster, `listener-<name>`) -> certificate and key.
    tls: BTreeMap<String, (String, String)>,
}

impl MountedFiles {
    /// Reads the files `ctx` (a `common_tls_context`) names and points it at the mounts.
    fn relocate(&mut self, ctx: &mut Value, owner: &str) -> anyhow::Result<()> {
        if let Some(f) = ctx.pointer_mut("/validation_context/trusted_ca/filename") {
            let host = f.as_str().unwrap_or("").to_string();
            if host != SYSTEM_CA {
                let key = match self.ca_paths.get(&host) {
                    Some(k) => k.clone(),
                    None => {
                        let k = format!("ca-{}.crt", self.ca_paths.len() + 1);
                        self.ca.insert(k.clone(), read(&host)?);
                        self.ca_paths.insert(host, k.clone());
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
                let dir = format!("{TLS_DIR}/{}", dns_part(owner));
                tc["certificate_chain"]["filename"] = json!(format!("{dir}/tls.crt"));
                tc["private_key"]["filename"] = json!(format!("{dir}/tls.key"));
                self.tls.insert(owner.to_string(), (cert, key));
            }
        }
        Ok(())
    }
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
    // With `callers.mtls` the listener speaks TLS: the kubelet probes over HTTPS (it does not
    // verify the certificate), or, when a client certificate is required (the kubelet has
    // none), only opens a connection.
    let mtls = src.config.callers.as_ref().and_then(|c| c.mtls.as_ref());
    let http_probes = !mtls.is_some_and(|m| m.require_client_cert);
    let probe = |path: Option<&String>| match path {
        Some(p) if http_probes => {
            let mut get = json!({ "path": p, "port": "http" });
            if mtls.is_some() {
                get["scheme"] = json!("HTTPS");
            }
            json!({ "httpGet": get })
        }
        _ => json!({ "tcpSocket": { "port": "http" } }),
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
