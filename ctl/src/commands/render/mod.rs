//! `egressctl render k8s|istio CONFIG --out DIR`: manifests for a fleet, from the same config
//! and the same Envoy rendering `compile` uses.
//!
//! - [`k8s`]: Envoy as a Deployment (config in a ConfigMap, credentials in Secrets, module from
//!   an image volume pinned by digest), Service, PodDisruptionBudget, NetworkPolicy; with
//!   `token_store: redis` or a target needing a file on the host, the refresher Deployment
//!   ([`refresher`]) and the headless push Service.
//! - [`istio`]: the filter as a WasmPlugin or TrafficExtension on the egress gateway, a
//!   ServiceEntry and DestinationRule per target, mesh routing to the gateway.
//! - [`authz`]: `egress.callers` as the platforms can say it: an AuthorizationPolicy from the
//!   SPIFFE IDs (istio), the callers' namespaces in the NetworkPolicy (k8s).
//! - [`objects`]: what both share: names, checks before writing, writing.
//! - [`schemas`]: the published schemas every object passes before anything is written
//!   ([`istio_schemas`]: Istio's, run in an embedded JavaScript engine).

pub mod authz;
pub mod istio;
pub mod istio_schemas;
pub mod k8s;
pub mod objects;
pub mod refresher;
pub mod schemas;

use super::load_or_report;
use crate::exit::ExitCode;
use crate::oci;
use crate::source::Source;
use clap::{Args, Subcommand, ValueEnum};
use egress_core::config::Auth;
use egress_core::secret::Secret;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum RenderCommand {
    /// Plain Kubernetes: a Deployment of Envoy with the filter, its ConfigMap and Secrets, a
    /// Service, a PodDisruptionBudget and a NetworkPolicy (with `token_store: redis`, or targets
    /// whose credential needs a file on the host, also the token refresher as its own
    /// Deployment with those files mounted, pushing to every Envoy pod through a headless
    /// Service).
    #[command(after_help = K8S_AFTER)]
    K8s(K8sArgs),
    /// Istio: the filter on the egress gateway (WasmPlugin, or TrafficExtension with
    /// --plugin-kind), a ServiceEntry and DestinationRule per target (TLS origination, client
    /// certificates from `credentialName` Secrets), and routing from the mesh to the gateway.
    #[command(after_help = ISTIO_AFTER)]
    Istio(IstioArgs),
}

const K8S_AFTER: &str = "\
Example:
  DIGEST=$(egressctl package --wasm egress_filter.wasm --out build/oci)
  egressctl render k8s config.yaml --out k8s/ --module-image registry.example.com/egress/filter --module-digest \"$DIGEST\"
  kubectl apply -f k8s/

The config's http.addr must not be loopback (pods are reached through a Service), e.g.
  addr: \"${EGRESS_LISTEN:-0.0.0.0:8080}\"
Every object is checked before anything is written, against the published Kubernetes 1.35
schemas (PyPI kubernetes-validate 1.37.0, strict: unknown fields refused; embedded in
egressctl); Secrets are written readable by the owner only. A changed config gets a new ConfigMap name (content hash), so the Deployment rolls pods
one by one (maxUnavailable 0, readiness on the ready endpoint, PodDisruptionBudget).

With token_store: redis, `egressctl token refresh --watch` runs as its own Deployment
(<name>-token-refresher, --egressctl-image) and pushes signed tokens to every Envoy pod through
the headless Service <name>-push (--proxy-dns); only the refresher pods may reach port 9902.
Its Secret <name>-refresher-env holds the ${VAR}s the config names, read from the environment
render runs in.

Targets whose credential needs a file on the host (service_account_file, subject_token_file,
federated_token_file, web_identity.token_file) get the refresher too, without redis: one
replica, one container per target, each file mounted at the path the config names. A
service-account key comes from a Secret you create (<name>-sa-<target>, key key.json; never in
the output); token files are projected tokens of the ServiceAccount <name>-token-refresher
(audience: sts.amazonaws.com for web_identity, api://AzureADTokenExchange for
federated_token_file, the target's audience or token_url for token exchange; --token-audience).

Exit 0: written; 1: invalid config or a config this output cannot carry (each reason printed);
2: bad usage; 3: other failure (I/O, module not found).";

const ISTIO_AFTER: &str = "\
Example:
  egressctl render istio config.yaml --out istio/ --module-image registry.example.com/egress/filter --module-digest \"$DIGEST\"
  egressctl render istio config.yaml --out istio/ --module-image ... --plugin-kind traffic-extension
  kubectl apply -f istio/

Callers reach the proxy at http://HOST/<egress prefix>/... (HOST: --host). With
egress.callers.mtls the gateway speaks Istio mutual TLS (the filter sees each caller's mesh
SPIFFE ID) and every allow block that names only SPIFFE IDs becomes a DENY rule of the
AuthorizationPolicy <name> (notPrincipals on that route's paths); blocks naming JWT subjects
or roles are left to the filter, and render says so. Credential values
never go into the plugin config: it names environment variables the gateway reads (see
README \"Running with Istio\").

Checked before writing, nothing written if one check fails: names, labels, ports and Secret
keys for every object; Secrets against the published Kubernetes 1.35 schemas (PyPI
kubernetes-validate 1.37.0); WasmPlugin, ServiceEntry, DestinationRule, VirtualService,
Gateway and AuthorizationPolicy against Istio 1.29's CRD schemas, the validators npm @kubernetes-models/istio 3.0.1
compiles from them, embedded in egressctl and run in QuickJS; a field those kinds do not have
is refused too (as the API server's strict field validation does).
TrafficExtension has no published schema (that package predates it): only its spec.wasm is
checked, as the WasmPlugin fields of the same names, and render says so.

Exit 0: written; 1: invalid config or a config this output cannot carry; 2: bad usage; 3:
other failure.";

/// What both outputs take.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The config file (YAML).
    pub config: PathBuf,
    /// Output directory (created if missing): one YAML file per object.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Name of the objects (and their `app.kubernetes.io/instance` label).
    #[arg(long, default_value = "egress", value_name = "NAME")]
    pub name: String,
    /// Namespace of every object. Default: `egress` (k8s), `istio-system` (istio: where the
    /// egress gateway runs).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Repository of the module image `egressctl package` built, without tag or digest,
    /// e.g. registry.example.com/egress/filter.
    #[arg(long, value_name = "REPO")]
    pub module_image: String,
    /// The image digest `egressctl package` printed (sha256:...). Default: computed from
    /// --wasm (packaging is reproducible, so it is the digest `package` prints).
    #[arg(long, value_name = "DIGEST", conflicts_with = "wasm")]
    pub module_digest: Option<String>,
    /// The module to compute the digest from. Default: found as `compile` finds it
    /// ($EGRESS_FILTER_WASM, next to egressctl, this tree's target/).
    #[arg(long, value_name = "FILE")]
    pub wasm: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct K8sArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Envoy image (1.40 or later with the V8 wasm runtime). Pin it by digest in production.
    #[arg(long, default_value = "envoyproxy/envoy:v1.40.0", value_name = "IMAGE")]
    pub envoy_image: String,
    /// Image with egressctl, for the token refresher Deployment (`token_store: redis`, and
    /// targets whose credential needs a file on the host).
    #[arg(long, default_value = concat!("egressctl:", env!("CARGO_PKG_VERSION")), value_name = "IMAGE")]
    pub egressctl_image: String,
    /// Envoy replicas.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub replicas: u32,
    /// Pods carrying this label may call the proxy; the NetworkPolicy admits no one else. From
    /// any namespace, or only from those the config's SPIFFE IDs name
    /// (`spiffe://<td>/ns/<namespace>/sa/<sa>`) when every route's callers are named so.
    #[arg(
        long,
        default_value = "egress.io/caller=true",
        value_name = "KEY=VALUE"
    )]
    pub caller_label: String,
    /// The audience of a target's projected token file (repeatable). Defaults:
    /// `sts.amazonaws.com` (aws_sigv4 web_identity), `api://AzureADTokenExchange`
    /// (federated_token_file), the target's `audience` or else its token_url
    /// (oauth2_token_exchange).
    #[arg(long, value_name = "TARGET=AUDIENCE")]
    pub token_audience: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PluginKind {
    /// extensions.istio.io/v1alpha1 WasmPlugin (every supported Istio).
    WasmPlugin,
    /// extensions.istio.io/v1alpha1 TrafficExtension (Istio 1.30 and later).
    TrafficExtension,
}

#[derive(Debug, Args)]
pub struct IstioArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Which plugin resource the cluster's Istio has.
    #[arg(long, value_enum, default_value_t = PluginKind::WasmPlugin)]
    pub plugin_kind: PluginKind,
    /// Labels selecting the egress gateway's pods.
    #[arg(long, default_value = "istio=egressgateway", value_name = "KEY=VALUE")]
    pub gateway_selector: String,
    /// The egress gateway's Service, as the mesh addresses it.
    #[arg(
        long,
        default_value = "istio-egressgateway.istio-system.svc.cluster.local",
        value_name = "HOST"
    )]
    pub gateway_service: String,
    /// The host callers in the mesh use for the proxy (a ServiceEntry makes it resolvable).
    #[arg(long, default_value = "egress.mesh.internal", value_name = "HOST")]
    pub host: String,
}

pub fn run(cmd: &RenderCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RenderCommand::K8s(a) => k8s::run(a),
        RenderCommand::Istio(a) => istio::run(a),
    }
}

/// The config, loaded and validated, and the pinned module image.
pub struct Input {
    pub source: Source,
    /// `REPO@sha256:...`
    pub image_ref: String,
    pub digest: String,
}

/// Loads the config and pins the module. `Err(code)`: already reported.
pub fn input(a: &FleetArgs) -> anyhow::Result<Result<Input, ExitCode>> {
    let source = match load_or_report(&a.config) {
        Ok(s) => s,
        Err(code) => return Ok(Err(code)),
    };
    let digest = match &a.module_digest {
        Some(d) => {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                eprintln!("egressctl: error: --module-digest {d}: want sha256: and 64 lowercase hex digits");
                return Ok(Err(ExitCode::Usage));
            }
            d.clone()
        }
        None => oci::module_digest(&crate::envoy::locate::wasm(a.wasm.as_deref())?)?,
    };
    if a.module_image.contains('@')
        || a.module_image
            .rsplit('/')
            .next()
            .is_some_and(|l| l.contains(':'))
    {
        eprintln!(
            "egressctl: error: --module-image {}: give the repository only; the digest pins it",
            a.module_image
        );
        return Ok(Err(ExitCode::Usage));
    }
    Ok(Ok(Input {
        image_ref: format!("{}@{digest}", a.module_image),
        digest,
        source,
    }))
}

/// Every credential value the config holds: none of them may appear outside a Secret.
pub fn credential_values(source: &Source) -> Vec<Secret> {
    let mut out = Vec::new();
    for t in &source.config.targets {
        match &t.auth {
            Auth::ApiKey { key, .. } => out.push(key.clone()),
            Auth::Bearer { token } => out.push(token.clone()),
            Auth::Basic { password, .. } => out.push(password.clone()),
            Auth::OAuth2(o) => {
                out.extend(o.client_secret.clone());
                if let Some(p) = &o.private_key {
                    if let Ok(pem) = std::fs::read_to_string(source.resolve(p)) {
                        out.push(Secret::new(pem.trim().to_string()));
                    }
                }
            }
            Auth::AwsSigv4(a) => {
                if let egress_core::config::AwsCredentialSource::Static(k) = &a.source {
                    out.push(k.secret_access_key.clone());
                    out.extend(k.session_token.clone());
                }
            }
            Auth::None | Auth::Mtls => {}
        }
    }
    if let egress_core::config::TokenStore::Redis(r) = &source.config.token_store {
        out.extend(r.password.clone());
    }
    out.retain(|s| s.expose().len() >= 4);
    out
}

/// The credentials the compiled config reads from environment variables, as
/// (variable name, value) pairs: they go into a Secret the proxy mounts with `envFrom`. The
/// same list `compile` writes to `secrets.env` ([`crate::secrets::vars`]).
pub fn credential_env_pairs(source: &Source) -> anyhow::Result<Vec<(String, Secret)>> {
    Ok(crate::secrets::vars(source)?
        .into_iter()
        .map(|v| (v.name, v.value))
        .collect())
}

/// The filter config a gateway plugin carries (Istio's `pluginConfig`): the one `compile`
/// puts in the egress listener, with references to the variables of
/// [`credential_env_pairs`] only (no sealed values: the gateway has no seal key).
pub fn plugin_filter_config(source: &Source) -> anyhow::Result<egress_core::plan::FilterConfig> {
    Ok(egress_core::build::filter_config(
        &source.config,
        &egress_core::build::BuildOptions {
            private_keys: crate::secrets::private_keys(source)?,
            secrets: egress_core::build::SecretMode::Env,
            ..Default::default()
        },
    ))
}

/// Fails (naming the targets, never the values) when a credential of the config appears in
/// text that is not going into a Secret.
pub fn refuse_inlined_credentials(source: &Source, public_text: &str) -> Result<(), Vec<String>> {
    let mut bad = Vec::new();
    for t in &source.config.targets {
        let single = Source {
            path: source.path.clone(),
            config: egress_core::config::Config {
                targets: vec![t.clone()],
                ..source.config.clone()
            },
        };
        let leaked = credential_values(&single)
            .iter()
            .any(|s| public_text.contains(s.expose()));
        if leaked {
            bad.push(format!(
                "target {}: its credential ({}) would be written into a ConfigMap or plugin config (credentials belong in the Secret of environment variables; this is a bug, please report it)",
                t.name,
                t.auth.kind()
            ));
        }
    }
    if let egress_core::config::TokenStore::Redis(r) = &source.config.token_store {
        if r.password
            .as_ref()
            .is_some_and(|p| public_text.contains(p.expose()))
        {
            bad.push("token_store.redis.password would be written into a ConfigMap; reference it as ${VAR} in the config".into());
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad)
    }
}
