//! Rendering the Envoy bootstrap from a validated config.
//!
//! - [`listener`]: the egress listener, its routes (one per target, picked by the header the
//!   filter sets), the wasm filter and the access log.
//! - [`clusters`]: one cluster per target (DNS or static, TLS, mTLS) and per token endpoint.
//! - [`locate`]: where the Envoy binary, the wasm module and the system CA bundle are.

pub mod access_log;
pub mod callers;
pub mod clusters;
pub mod credentials;
pub mod limits;
pub mod listener;
pub mod local_reply;
pub mod locate;
pub mod native;

use crate::source::Source;
use egress_core::build::{self, host_env_keys, secret_env, BuildOptions, SecretMode, SecretVar};
use egress_core::config::ListenAddr;
use egress_core::native::EngineChoice;
use egress_core::plan::{FilterConfig, Role};
use egress_core::secret_ref::SealKey;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// What rendering needs besides the config.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub admin: ListenAddr,
    /// The push listener and the public key it verifies pushes with.
    pub push: Option<PushListener>,
    /// The filter module, or why none was found: an error only when the listeners load it
    /// (a static-only `auto` config with `egress.path_mode: strict` does not).
    pub wasm: Result<PathBuf, locate::LocateError>,
    /// CA bundle for TLS targets without `ca_cert`; `None` when none was found (then such a
    /// target is an error).
    pub system_ca: Option<PathBuf>,
    /// Seals every credential value into the filter config (what `egressctl` runs with); `None`:
    /// references only, the values come from the environment alone (Kubernetes).
    pub seal_key: Option<SealKey>,
    /// `--engine`: what serves each route (see [`egress_core::native`]).
    pub engine: EngineChoice,
    /// Where the `auto` engine's static credentials are (`<state dir>/sds`, see
    /// [`credentials`]); `None`: no native injection (the filter injects them).
    pub sds_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct PushListener {
    pub addr: ListenAddr,
    pub public_key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("target {target}: TLS verification needs a CA bundle, and no system bundle was found; set tls.ca_cert or pass --system-ca")]
    NoCaBundle { target: String },
    #[error(transparent)]
    Module(#[from] locate::LocateError),
    #[error(transparent)]
    PrivateKey(#[from] crate::secrets::PrivateKeyError),
    #[error("egress.callers.jwt issuer {issuer:?}: {reason}")]
    CallerKey { issuer: String, reason: String },
    #[error("the filter refuses this config: {0}")]
    Engine(#[from] egress_core::engine::EngineError),
    #[error("cannot serialize the filter config: {0}")]
    Json(#[from] serde_json::Error),
}

/// What `compile` writes: the listeners and clusters Envoy loads from watched files, and the
/// filter config inside the listener.
pub struct Rendered {
    pub listeners: Vec<Value>,
    pub clusters: Vec<Value>,
    pub filter_config: FilterConfig,
    /// The credential variables the listeners name (`secrets.env`).
    pub secret_vars: Vec<SecretVar>,
    /// Files the bootstrap references that do not exist (yet): printed as warnings.
    pub missing_files: Vec<PathBuf>,
    /// The static credentials Envoy injects itself (`auto` engine): the SDS files to write
    /// before the listeners.
    pub credentials: Vec<credentials::StaticCredential>,
    /// Whether Envoy loads the wasm module (and the push listener is rendered): `false` for an
    /// `auto` config of static credentials with `egress.path_mode: strict`.
    pub loads_module: bool,
}

pub fn render(source: &Source, opts: &RenderOptions) -> Result<Rendered, RenderError> {
    let config = &source.config;
    let private_keys = crate::secrets::private_keys(source)?;
    let secret_vars = secret_env(config, &private_keys);
    let env_keys = host_env_keys(&secret_vars, opts.seal_key.is_some());
    let build = |role: Role, push_public_key: Option<String>| {
        build::filter_config(
            config,
            &BuildOptions {
                role,
                push_public_key,
                private_keys: private_keys.clone(),
                secrets: match &opts.seal_key {
                    Some(k) => SecretMode::Sealed(k.clone()),
                    None => SecretMode::Env,
                },
                ..Default::default()
            },
        )
    };
    // Static credentials Envoy injects itself (auto engine): their values stay out of the
    // filter configs (see `credentials`).
    let credentials = match (&opts.engine, &opts.sds_dir) {
        (EngineChoice::Auto, Some(_)) => credentials::static_credentials(config),
        _ => Vec::new(),
    };
    let mut filter_config = build(Role::Egress, None);
    credentials::leave_to_envoy(&mut filter_config, &credentials);
    callers::attach_caller_keys(source, &mut filter_config)?;
    let mut files = Vec::new();
    let mut clusters = clusters::target_clusters(source, opts, &mut files)?;
    clusters.extend(clusters::token_clusters(source, opts, &mut files)?);
    clusters.extend(clusters::jwks_clusters(source, opts, &mut files)?);
    clusters.push(clusters::admin_cluster(&opts.admin));
    // Without a module the listeners are rendered all the same, and refused below if they
    // load it.
    let no_module = PathBuf::new();
    let wasm = listener::WasmModule {
        path: opts.wasm.as_ref().unwrap_or(&no_module),
        env_keys: &env_keys,
    };
    let egress_json = serde_json::to_string(&filter_config)?;
    let (mut egress, loads_module) = match opts.engine {
        EngineChoice::Wasm => (listener::egress_listener(config, &egress_json, &wasm), true),
        EngineChoice::Auto => {
            let routed_json = if native::needs_routed_role(&filter_config) {
                let mut routed = build(Role::Routed, None);
                credentials::leave_to_envoy(&mut routed, &credentials);
                callers::attach_caller_keys(source, &mut routed)?;
                Some(serde_json::to_string(&routed)?)
            } else {
                None
            };
            let native = native::egress_listener(
                config,
                &filter_config,
                &native::Filters {
                    egress_json: &egress_json,
                    routed_json: routed_json.as_deref(),
                    wasm: &wasm,
                },
            )?;
            (native.listener, native.loads_module)
        }
    };
    if loads_module {
        files.push(opts.wasm.clone()?);
    }
    callers::secure_listener(&mut egress, source, &mut files);
    if let Some(sds_dir) = opts.sds_dir.as_deref().filter(|_| !credentials.is_empty()) {
        credentials::attach(&mut egress, &credentials, sds_dir);
    }
    let mut listeners = vec![egress];
    // Without the module on the egress listener nothing takes pushed credentials (no OAuth2
    // or `aws_sigv4` target), and the push listener would load it for nothing.
    let push_listener = opts.push.as_ref().filter(|_| loads_module);
    if let Some(push) = push_listener {
        let mut push_config = build(Role::Push, Some(push.public_key_pem.clone()));
        credentials::leave_to_envoy(&mut push_config, &credentials);
        callers::attach_caller_keys(source, &mut push_config)?;
        listeners.push(listener::push_listener(
            &push.addr,
            &serde_json::to_string(&push_config)?,
            &wasm,
        ));
    }
    let missing_files = files
        .into_iter()
        .filter(|f| !Path::new(f).exists())
        .collect();
    Ok(Rendered {
        listeners,
        clusters,
        filter_config,
        secret_vars,
        missing_files,
        credentials,
        loads_module,
    })
}

/// The bootstrap: admin, and listeners and clusters from files Envoy watches (file-based xDS).
/// Replacing a file by a rename makes Envoy load it again, without a restart.
pub fn bootstrap(admin: &ListenAddr, lds: &Path, cds: &Path) -> Value {
    let source = |p: &Path| {
        json!({
            "resource_api_version": "V3",
            "path_config_source": { "path": p.display().to_string() },
        })
    };
    json!({
        "node": { "id": "egress", "cluster": "egress" },
        "admin": { "address": socket_address(admin) },
        "overload_manager": limits::overload_manager(),
        "dynamic_resources": { "lds_config": source(lds), "cds_config": source(cds) },
    })
}

/// The listener file the bootstrap names (`lds_config.path_config_source`), in the state
/// directory and in the Kubernetes ConfigMap. JSON, and named so: Envoy picks the parser of a
/// watched file by its extension, and its YAML parser needs minutes and gigabytes for the auto
/// engine's matcher tree of 10,000 routes, where its JSON parser needs seconds.
pub const LDS_FILE: &str = "lds.json";
/// The cluster file the bootstrap names (small: YAML).
pub const CDS_FILE: &str = "cds.yaml";

/// The text of the listener file [`LDS_FILE`]: one line of compact JSON (no comment: JSON has
/// none). Serialized from the listeners in place (no copy: the auto engine's listener can be
/// tens of megabytes), with the same text [`resource_file`] would give.
pub fn listener_file_text(listeners: &[Value]) -> serde_json::Result<String> {
    let file = ResourceFile {
        type_url: LISTENER_TYPE,
        resources: listeners,
    };
    let mut text = serde_json::to_string(&file)?;
    text.push('\n');
    Ok(text)
}

/// `{"resources": [...]}` with each resource's `@type` set to `type_url`, borrowed.
struct ResourceFile<'a> {
    type_url: &'a str,
    resources: &'a [Value],
}

/// One resource of a [`ResourceFile`]: `@type` first (where the sorted map puts it), then the
/// resource's own keys.
struct Typed<'a> {
    type_url: &'a str,
    resource: &'a Value,
}

impl serde::Serialize for ResourceFile<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Resources<'a>(&'a ResourceFile<'a>);
        impl serde::Serialize for Resources<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.resources.len()))?;
                for resource in self.0.resources {
                    seq.serialize_element(&Typed {
                        type_url: self.0.type_url,
                        resource,
                    })?;
                }
                seq.end()
            }
        }
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("resources", &Resources(self))?;
        map.end()
    }
}

impl serde::Serialize for Typed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(obj) = self.resource.as_object() else {
            return self.resource.serialize(s);
        };
        let mut map = s.serialize_map(None)?;
        let mut typed = false;
        for (k, v) in obj {
            if !typed && k.as_str() > "@type" {
                map.serialize_entry("@type", self.type_url)?;
                typed = true;
            }
            if k != "@type" {
                map.serialize_entry(k, v)?;
            }
        }
        if !typed {
            map.serialize_entry("@type", self.type_url)?;
        }
        map.end()
    }
}

/// A file-based xDS resource file.
pub fn resource_file(type_url: &str, resources: &[Value]) -> Value {
    let typed: Vec<Value> = resources
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(obj) = r.as_object_mut() {
                obj.insert("@type".into(), Value::String(type_url.to_string()));
            }
            r
        })
        .collect();
    let mut file = serde_json::Map::new();
    file.insert("resources".into(), Value::Array(typed));
    Value::Object(file)
}

pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

pub fn socket_address(a: &ListenAddr) -> Value {
    json!({ "socket_address": { "address": a.ip.to_string(), "port_value": a.port } })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATIC_STRICT: &str = r#"
http: {addr: "127.0.0.1:8080"}
egress:
  path_mode: strict
  targets:
    notify:
      url: "http://127.0.0.1:9000"
      auth: {type: api_key, header: X-API-Key, key: "k-123"}
  routes:
    - {path_prefix: /egress/notify, target: notify}
"#;

    fn source(yaml: &str) -> Source {
        Source {
            path: PathBuf::from("config.yaml"),
            config: egress_core::config::load::load_str(yaml, &|_| None).unwrap(),
        }
    }

    /// Rendering options as `compile` makes them when it finds no module by default.
    fn without_module(engine: EngineChoice) -> RenderOptions {
        RenderOptions {
            admin: ListenAddr::parse("127.0.0.1:9901").unwrap(),
            push: None,
            wasm: Err(locate::LocateError::Wasm {
                tree: "/nowhere/egress_filter.wasm".to_string(),
            }),
            system_ca: None,
            seal_key: Some(SealKey::from_bytes([7; 32])),
            engine,
            sds_dir: Some(PathBuf::from("/state/sds")),
        }
    }

    /// Regression: a config that loads no module needed the module file all the same.
    #[test]
    fn a_config_that_loads_no_module_renders_without_the_module_file() {
        let rendered = render(&source(STATIC_STRICT), &without_module(EngineChoice::Auto)).unwrap();
        assert!(!rendered.loads_module);
        assert!(!listener_file_text(&rendered.listeners)
            .unwrap()
            .contains("envoy.filters.http.wasm"));
    }

    #[test]
    fn a_config_that_loads_the_module_is_refused_without_the_module_file() {
        let canonicalize = STATIC_STRICT.replace("  path_mode: strict\n", "");
        for (yaml, engine) in [
            (STATIC_STRICT, EngineChoice::Wasm),
            (canonicalize.as_str(), EngineChoice::Auto),
        ] {
            let err = render(&source(yaml), &without_module(engine))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains("the filter module was not found") && err.contains("--wasm PATH"),
                "{engine:?}: {err}"
            );
        }
    }

    /// Regression: the listener file is serialized in place (no copy of a listener that can be
    /// tens of megabytes); its text must stay what the copied resource file gives.
    #[test]
    fn listener_file_text_is_the_resource_file_serialized_without_a_copy() {
        let listeners = vec![
            json!({ "name": "egress", "address": {"x": 1}, "!first": true, "z": [1, {"b": 2}] }),
            json!({ "@type": "old", "name": "push" }),
            json!({}),
            json!("not an object"),
        ];
        let expected = serde_json::to_string(&resource_file(LISTENER_TYPE, &listeners)).unwrap();
        assert_eq!(
            listener_file_text(&listeners).unwrap(),
            format!("{expected}\n")
        );
        assert!(expected.contains(r#"{"!first":true,"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","address""#));
        assert!(expected.contains(
            r#"{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"push"}"#
        ));
    }
}
