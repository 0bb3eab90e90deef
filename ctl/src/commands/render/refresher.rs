//! The token refresher of `egressctl render k8s`: `egressctl token refresh --watch` as its own
//! Deployment (`<name>-token-refresher`), pushing each token to every Envoy pod through the
//! headless Service `<name>-push` (`--proxy-dns`). It runs when a target is push-only
//! ([`egress_core::build::push_only`]): with `token_store: redis` (two replicas sharing one
//! token per target through redis), and for every target whose credential needs a file on the
//! host (one replica, one container per such target, memory store).
//!
//! Host files are mounted at the exact paths the config names: a Google service-account key
//! from a Secret the user creates (`<name>-sa-<target>`, key `key.json`: referenced, never
//! rendered), token files (web identity, subject token, federated token) as projected
//! `serviceAccountToken`s of the refresher's own ServiceAccount (`<name>-token-refresher`),
//! with a per-type default audience ([`HostFile`]) or `--token-audience TARGET=AUDIENCE`.

use super::k8s::{CONFIG_DIR, PUSH_PORT};
use super::objects::{dns_part, labels, meta, Object};
use super::K8sArgs;
use egress_core::build::{push_only, PushOnly};
use egress_core::config::{Auth, AwsCredentialSource, Config, Grant, Target};
use egress_core::push::PushSigner;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Component, Path};

const REFRESHER_STATE: &str = "/var/run/egress";
pub const REFRESHER: &str = "token-refresher";
/// The key in a service-account key Secret.
pub const SA_KEY: &str = "key.json";
/// Projected tokens live an hour; the kubelet renews them at 80% of that.
const TOKEN_SECONDS: u32 = 3600;
/// Default audiences of the projected token files, by kind.
pub const AWS_AUDIENCE: &str = "sts.amazonaws.com";
pub const AZURE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Where one host file comes from in the refresher pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A key in a Secret the user creates.
    Secret { name: String },
    /// A projected service-account token of the refresher's ServiceAccount.
    Token { audience: String },
}

/// A file a push-only target needs, at the path the config names.
#[derive(Debug, Clone)]
pub struct HostFile {
    pub target: String,
    pub field: &'static str,
    pub path: String,
    pub source: FileSource,
}

/// The selector of one component's pods.
pub fn component_selector(instance: &str, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "egress",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
    })
}

/// Every host file of the config's push-only targets, or why they cannot be mounted.
/// `audiences`: `--token-audience TARGET=AUDIENCE`.
pub fn host_files(
    config: &Config,
    name: &str,
    audiences: &[String],
) -> Result<Vec<HostFile>, Vec<String>> {
    let mut reasons = Vec::new();
    let mut overrides = BTreeMap::new();
    for a in audiences {
        match a.split_once('=') {
            Some((t, aud)) if !t.is_empty() && !aud.is_empty() => {
                overrides.insert(t.to_string(), aud.to_string());
            }
            _ => reasons.push(format!(
                "--token-audience {a:?}: want TARGET=AUDIENCE, e.g. s3=sts.amazonaws.com"
            )),
        }
    }
    let mut out: Vec<HostFile> = Vec::new();
    for t in &config.targets {
        let Some(PushOnly::HostFile { field, path }) = push_only(config, t) else {
            continue;
        };
        let source = match &t.auth {
            Auth::OAuth2(o) => match &o.grant {
                Grant::JwtBearer(_) => FileSource::Secret {
                    name: format!("{name}-sa-{}", dns_part(&t.name)),
                },
                Grant::TokenExchange(x) => FileSource::Token {
                    audience: x.audience.clone().unwrap_or_else(|| {
                        o.token_url
                            .as_ref()
                            .map(|u| u.origin_and_base())
                            .unwrap_or_default()
                    }),
                },
                Grant::ClientCredentials => FileSource::Token {
                    audience: AZURE_AUDIENCE.into(),
                },
            },
            Auth::AwsSigv4(a) if matches!(a.source, AwsCredentialSource::WebIdentity(_)) => {
                FileSource::Token {
                    audience: AWS_AUDIENCE.into(),
                }
            }
            _ => FileSource::Token {
                audience: String::new(),
            },
        };
        let source = match (source, overrides.remove(&t.name)) {
            (FileSource::Token { .. }, Some(audience)) => FileSource::Token { audience },
            (FileSource::Secret { .. }, Some(_)) => {
                reasons.push(format!("--token-audience {}: its {field} is a service-account key (a Secret), not a token", t.name));
                continue;
            }
            (s, None) => s,
        };
        if let FileSource::Token { audience } = &source {
            if audience.is_empty() {
                reasons.push(format!(
                    "target {}: no audience for the projected token at {field} ({path}): pass --token-audience {}=AUDIENCE",
                    t.name, t.name
                ));
                continue;
            }
        }
        // Other files the refresher reads (a token endpoint's CA, a private_key_jwt key) are
        // not mounted: they must be in the refresher's image, at an absolute path (a relative
        // one resolves into the config's ConfigMap mount).
        if let Some((other, file)) = other_files(t)
            .into_iter()
            .find(|(_, f)| !Path::new(f).is_absolute())
        {
            reasons.push(format!(
                "target {}: the refresher would also read {other} ({file}), a relative path that resolves into its {CONFIG_DIR}, where no such file is: give an absolute path that exists in the refresher's image (--egressctl-image)",
                t.name
            ));
            continue;
        }
        if let Err(why) = mountable(&path) {
            reasons.push(format!(
                "target {}: {field} ({path}) cannot be mounted in the refresher pod: {why}",
                t.name
            ));
            continue;
        }
        if let Some(other) = out.iter().find(|h| h.path == path && h.source != source) {
            reasons.push(format!(
                "target {}: {field} ({path}) is also target {}'s {}, from another source: give each its own path",
                t.name, other.target, other.field
            ));
            continue;
        }
        out.push(HostFile {
            target: t.name.clone(),
            field,
            path,
            source,
        });
    }
    for t in overrides.keys() {
        reasons.push(format!(
            "--token-audience {t}: no push-only target {t} reads a token file"
        ));
    }
    if reasons.is_empty() {
        Ok(out)
    } else {
        Err(reasons)
    }
}

/// The other files `egressctl token refresh` reads for a target (a token endpoint's CA, a
/// `private_key_jwt` key): not mounted in the refresher pod.
fn other_files(t: &Target) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match &t.auth {
        Auth::OAuth2(o) => {
            if let Some(p) = &o.private_key {
                out.push(("auth.private_key", p.clone()));
            }
            // The token endpoint's TLS is the target's `tls` (as the fetcher reads it).
            let ca = o
                .tls
                .as_ref()
                .or(t.tls.as_ref())
                .and_then(|tls| tls.ca_cert.clone());
            out.extend(ca.map(|c| ("tls.ca_cert", c)));
        }
        Auth::AwsSigv4(a) => {
            if let AwsCredentialSource::WebIdentity(w) = &a.source {
                if let Some(c) = w.tls.as_ref().and_then(|tls| tls.ca_cert.as_ref()) {
                    out.push(("auth.web_identity.tls.ca_cert", c.clone()));
                }
            }
        }
        _ => {}
    }
    out
}

/// Whether a file can be mounted at `path` beside the refresher's own mounts.
fn mountable(path: &str) -> Result<(), &'static str> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err("the path must be absolute in a pod");
    }
    if p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err("the path must not contain . or ..");
    }
    let dir = p.parent().unwrap_or(Path::new("/"));
    if dir == Path::new("/") || p.file_name().is_none() {
        return Err("the file needs its own directory (a volume is mounted over it)");
    }
    for own in [CONFIG_DIR, REFRESHER_STATE] {
        let own = Path::new(own);
        if dir.starts_with(own) || own.starts_with(dir) {
            return Err(
                "its directory overlaps the refresher's /etc/egress/config or /var/run/egress",
            );
        }
    }
    Ok(())
}

/// The refresher's Secrets: the push key, and the variables the config refers to (redis
/// password, client secrets), read from this environment at render time.
pub fn secrets(name: &str, ns: &str, raw_config: &str, signer: &PushSigner) -> Vec<Object> {
    let env: Map<String, Value> = super::k8s::referenced_env(raw_config)
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

/// The host files as projected volumes (one per directory) and their mounts.
fn file_volumes(files: &[HostFile]) -> (Vec<Value>, Vec<Value>) {
    let mut by_dir: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut seen = Vec::new();
    for f in files {
        if seen.contains(&f.path) {
            continue;
        }
        seen.push(f.path.clone());
        let p = Path::new(&f.path);
        let dir = p
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = match &f.source {
            FileSource::Secret { name } => json!({ "secret": {
                "name": name, "items": [{ "key": SA_KEY, "path": file }] } }),
            FileSource::Token { audience } => json!({ "serviceAccountToken": {
                "audience": audience, "expirationSeconds": TOKEN_SECONDS, "path": file } }),
        };
        by_dir.entry(dir).or_default().push(source);
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, (dir, sources)) in by_dir.into_iter().enumerate() {
        let vol = format!("host-files-{}", i + 1);
        volumes.push(
            json!({ "name": vol, "projected": { "defaultMode": 0o440, "sources": sources } }),
        );
        mounts.push(json!({ "name": vol, "mountPath": dir, "readOnly": true }));
    }
    (volumes, mounts)
}

/// The refresher: the headless push Service, its ServiceAccount (when it mounts tokens) and
/// Deployment. With redis, one container refreshing every OAuth2 target, two replicas; without,
/// one replica and one container per host-file target (`--target`), since every other target
/// is fetched by the filter itself.
pub fn objects(
    a: &K8sArgs,
    ns: &str,
    config_name: &str,
    proxy_selector: &Value,
    secrets_hash: &str,
    redis: bool,
    files: &[HostFile],
) -> Vec<Object> {
    let name = a.fleet.name.as_str();
    let push_service = format!("{name}-push");
    let refresher = format!("{name}-{REFRESHER}");
    let selector = component_selector(name, REFRESHER);
    let mut pod_labels = labels(name);
    pod_labels["app.kubernetes.io/component"] = json!(REFRESHER);
    let (file_vols, file_mounts) = file_volumes(files);
    let mut mounts = vec![
        json!({ "name": "config", "mountPath": CONFIG_DIR, "readOnly": true }),
        json!({ "name": "push-key", "mountPath": REFRESHER_STATE, "readOnly": true }),
    ];
    mounts.extend(file_mounts);
    let container = |cname: String, only: Option<&str>| {
        let mut args = vec![
            json!("token"),
            json!("refresh"),
            json!(format!("{CONFIG_DIR}/config.yaml")),
            json!("--watch"),
            json!("--out"),
            json!(REFRESHER_STATE),
            json!("--proxy-dns"),
            json!(format!("{push_service}.{ns}.svc:{PUSH_PORT}")),
        ];
        if let Some(t) = only {
            args.extend([json!("--target"), json!(t)]);
        }
        json!({
            "name": cname,
            "image": a.egressctl_image,
            "command": ["egressctl"],
            "args": args,
            "envFrom": [{ "secretRef": { "name": format!("{name}-refresher-env") } }],
            "resources": { "requests": { "cpu": "10m", "memory": "32Mi" }, "limits": { "memory": "128Mi" } },
            "securityContext": { "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": { "drop": ["ALL"] } },
            "volumeMounts": mounts,
        })
    };
    let containers: Vec<Value> = if redis {
        vec![container(REFRESHER.to_string(), None)]
    } else {
        let mut targets: Vec<&str> = files.iter().map(|f| f.target.as_str()).collect();
        targets.dedup();
        let mut names: Vec<String> = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let n = container_name(i, t);
            // Two target names can map to one DNS label: then by position.
            names.push(if names.contains(&n) {
                format!("refresh-{}", i + 1)
            } else {
                n
            });
        }
        targets
            .into_iter()
            .zip(names)
            .map(|(t, n)| container(n, Some(t)))
            .collect()
    };
    let mut volumes = vec![
        json!({ "name": "config", "configMap": { "name": config_name } }),
        json!({ "name": "push-key", "secret": { "secretName": format!("{name}-push-key"), "defaultMode": 0o440 } }),
    ];
    volumes.extend(file_vols);
    let mut pod_spec = json!({
        "automountServiceAccountToken": false,
        "securityContext": { "runAsNonRoot": true, "runAsUser": 101, "runAsGroup": 101, "fsGroup": 101, "seccompProfile": { "type": "RuntimeDefault" } },
        "containers": containers,
        "volumes": volumes,
    });
    let mut out = vec![
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
    ];
    if files
        .iter()
        .any(|f| matches!(f.source, FileSource::Token { .. }))
    {
        // The identity the projected tokens carry: bind it to the cloud role (IRSA's
        // eks.amazonaws.com/role-arn, Azure's azure.workload.identity/client-id, a GCP
        // workload identity pool). Its token is mounted only as the files the config names.
        out.push(Object::new(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": meta(&refresher, ns, name),
            "automountServiceAccountToken": false,
        })));
        pod_spec["serviceAccountName"] = json!(refresher);
    }
    out.push(Object::new(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(&refresher, ns, name),
        "spec": {
            // With redis two, for availability: they share each token through redis (one
            // fetch per lifetime) and both push it. Without, one: each would fetch its own.
            "replicas": if redis { 2 } else { 1 },
            "selector": { "matchLabels": selector },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": { "egress.io/secrets-hash": secrets_hash },
                },
                "spec": pod_spec,
            },
        },
    })));
    out
}

/// A container name (a DNS label of at most 63 characters) per target.
fn container_name(i: usize, target: &str) -> String {
    let t: String = dns_part(target).chars().take(50).collect();
    let t = t.trim_end_matches('-');
    if t.is_empty() {
        format!("refresh-{}", i + 1)
    } else {
        format!("refresh-{t}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountable_refuses_relative_root_and_overlapping_paths() {
        assert!(mountable("/var/run/secrets/token").is_ok());
        assert!(mountable("token").is_err());
        assert!(mountable("/token").is_err());
        assert!(mountable("/var/run/../x/token").is_err());
        assert!(mountable("/etc/egress/config/sa.json").is_err());
        assert!(mountable("/var/run/egress/t").is_err());
        assert!(mountable("/var/run/t").is_err());
    }
}
