//! The command line. Each subcommand's arguments become a typed options struct that its
//! module in [`crate::commands`] executes.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const ABOUT: &str =
    "Egress credential injection for Envoy: validate the config, compile it into an \
Envoy bootstrap with the egress wasm filter, and run it.";

const AFTER: &str = "\
Exit codes: 0 success, 1 invalid config (every error is printed), 2 bad usage, 3 other failure.

Typical use:
  egressctl validate config.yaml
  egressctl routes config.yaml
  egressctl explain config.yaml POST /egress/crm/Contact
  egressctl compile config.yaml --out .egressctl
  egressctl up config.yaml
  egressctl token refresh config.yaml --watch
  egressctl status
  egressctl package --wasm egress_filter.wasm --out build/oci
  egressctl render k8s config.yaml --out k8s/ --module-image registry.example.com/egress/filter

`${VAR}` and `${VAR:-default}` in the config are read from the environment.";

#[derive(Debug, Parser)]
#[command(name = "egressctl", version, about = ABOUT, after_help = AFTER)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a config: schema, environment variables, cross-references. Prints every error as
    /// file:line:col: field.path: message.
    #[command(after_help = "Example:\n  egressctl validate examples/config.yaml && echo ok")]
    Validate(ValidateArgs),

    /// Write DIR/envoy.yaml (a complete Envoy bootstrap) and DIR/filter.json (the filter's config).
    #[command(
        after_help = "Example:\n  egressctl compile config.yaml --out build/ --admin 127.0.0.1:9901\n  envoy -c build/envoy.yaml"
    )]
    Compile(CompileArgs),

    /// Print the routing table: incoming prefix, target, outgoing URL, methods, auth type.
    #[command(
        after_help = "Example:\n  egressctl routes config.yaml\n  egressctl routes config.yaml --format json | jq ."
    )]
    Routes(RoutesArgs),

    /// Show what one request becomes: outgoing URL, credential kind and header (value redacted),
    /// or why it is refused (400, 404, 405); with `egress.callers`, whether the caller given by
    /// --spiffe-id, or --subject and --roles, may use the route, and why (401, 403).
    #[command(
        after_help = "Example:\n  egressctl explain config.yaml GET /egress/crm/Contact/42\n  egressctl explain config.yaml GET /egress/crm/Contact/42 --spiffe-id spiffe://jia.app/billing/invoices\n  egressctl explain config.yaml GET /egress/crm/Contact/42 --subject user-service --roles crm,crm-admin"
    )]
    Explain(ExplainArgs),

    /// Change a running Envoy: validate, print what changes (secrets redacted), write the new
    /// files and confirm through Envoy's admin that it accepted them.
    #[command(
        after_help = "Example:\n  egressctl apply config.yaml --dry-run\n  egressctl apply config.yaml --out .egressctl\n\nThe files written are the ones the Envoy at the admin address in DIR/state.json watches (asked through its admin); an Envoy started from another directory is refused, nothing written.\n\nExit 0: applied (or nothing to do); 1: invalid config, nothing changed; 3: Envoy rejected the change, is unreachable, or was started from another directory (the previous config keeps serving)."
    )]
    Apply(ApplyArgs),

    /// Compile into a state directory and run Envoy in the foreground. Ctrl-C stops it.
    #[command(
        after_help = "Example:\n  egressctl up config.yaml --out .egressctl --admin 127.0.0.1:9901\n\nEnvoy is found by --envoy, $ENVOY_BIN, PATH, then this repo's .venv (bash envoy/install.sh)."
    )]
    Up(UpArgs),

    /// OAuth2 tokens fetched by egressctl and pushed into running proxies.
    #[command(subcommand)]
    Token(TokenCommand),

    /// Ask running proxies about their OAuth2 tokens: source (fetched or pushed), age, time
    /// left, the last refresh result and requests served. Never shows a token.
    #[command(
        after_help = "Example:\n  egressctl status --out .egressctl\n  egressctl status --proxy http://10.0.0.5:9902 --proxy http://10.0.0.6:9902 --format json\n\nWithout --proxy, a DIR whose Envoy has no push listener (static credentials with egress.path_mode: strict, --engine auto: no wasm module) has nothing to report: it says so and exits 0.\n\nExit 0: every proxy answered and every OAuth2 target holds a valid token; 3 otherwise."
    )]
    Status(StatusArgs),

    /// Render Kubernetes or Istio manifests from the config, for a fleet of proxies.
    #[command(subcommand)]
    Render(crate::commands::render::RenderCommand),

    /// Package the filter module as an OCI image layout (one tar.gz layer holding
    /// plugin.wasm, the format Istio's and Envoy Gateway's image fetchers read, and a
    /// Kubernetes `image` volume mounts). Prints the image digest (sha256:...) on stdout.
    #[command(
        after_help = "Example:\n  DIGEST=$(egressctl package --wasm target/wasm32-wasip1/release/egress_filter.wasm --out build/oci)\n  skopeo copy oci:build/oci:latest docker://registry.example.com/egress/filter:latest\n  egressctl render k8s config.yaml --out k8s/ --module-image registry.example.com/egress/filter --module-digest \"$DIGEST\"\n\nThe same module always gives the same digest (no timestamps in the image).\nExit 0: written; 1: FILE is not a WebAssembly module; 3: I/O failure."
    )]
    Package(PackageArgs),
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// The filter module (egress_filter.wasm).
    #[arg(long, value_name = "FILE")]
    pub wasm: PathBuf,
    /// Directory for the OCI image layout (created if missing; blobs are added).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The tag recorded in the layout's index.json (`oci:DIR:TAG` for skopeo).
    #[arg(long, default_value = "latest", value_name = "TAG")]
    pub tag: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Fetch each OAuth2 target's token (client credentials, JWT bearer), and each `aws_sigv4`
    /// `web_identity` target's temporary credentials (STS AssumeRoleWithWebIdentity with the
    /// token file's current content), and push them to every proxy. Push-only targets (a key or
    /// token file on this host, or `token_store: redis`) get credentials only this way; with
    /// redis, refreshers share them.
    #[command(
        after_help = "Example:\n  egressctl token refresh config.yaml --out .egressctl\n  egressctl token refresh config.yaml --target salesforce --proxy http://10.0.0.5:9902 --proxy http://10.0.0.6:9902\n  egressctl token refresh config.yaml --watch\n  egressctl token refresh config.yaml --watch --proxy-dns egress-push.egress.svc:9902\n\nExit 0: every target's token reached every proxy (with --watch: stopped by Ctrl-C or SIGTERM); 1: invalid config; 3: a fetch or push failed (each failure is named), or Ctrl-C or SIGTERM stopped a refresh without --watch (a redis refresh lock it held is released)."
    )]
    Refresh(TokenRefreshArgs),
}

#[derive(Debug, Args)]
pub struct TokenRefreshArgs {
    /// The config file (YAML).
    pub config: PathBuf,
    /// The state directory `compile` or `up` wrote: push.key signs the pushes, state.json
    /// names the default proxy.
    #[arg(long, default_value = ".egressctl", value_name = "DIR")]
    pub out: PathBuf,
    /// Only this OAuth2 or web_identity target (default: every one).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Keep running: refresh each token ahead of its expiry, retry failures with backoff,
    /// re-push to proxies that restarted. Ctrl-C or SIGTERM stops it.
    #[arg(long)]
    pub watch: bool,
    /// A proxy's push listener, e.g. http://127.0.0.1:9902 (repeatable). Default: the push
    /// address in DIR/state.json (unless --proxy-dns is given).
    #[arg(long = "proxy", value_name = "URL")]
    pub proxies: Vec<String>,
    /// A DNS name whose every A/AAAA record is a proxy's push listener on PORT (repeatable),
    /// looked up again every round so replicas that start or go are followed, e.g. a
    /// Kubernetes headless Service: --proxy-dns egress-push.egress.svc:9902.
    #[arg(long = "proxy-dns", value_name = "NAME:PORT")]
    pub proxy_dns: Vec<crate::commands::token::targets::DnsProxy>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The state directory `compile` or `up` wrote (push.key authenticates the status call).
    #[arg(long, default_value = ".egressctl", value_name = "DIR")]
    pub out: PathBuf,
    /// A proxy's push listener, e.g. http://127.0.0.1:9902 (repeatable). Default: the proxy
    /// in DIR (request counts come from its Envoy admin).
    #[arg(long = "proxy", value_name = "URL")]
    pub proxies: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The config file (YAML).
    pub config: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct RenderArgs {
    /// Envoy admin address; keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:9901", value_name = "ADDR")]
    pub admin: String,
    /// The filter module. Default: $EGRESS_FILTER_WASM, then egress_filter.wasm next to
    /// egressctl, then this tree's target/wasm32-wasip1/release/egress_filter.wasm. Not needed
    /// when Envoy loads no module (`--engine auto`, static credentials only, `egress.path_mode:
    /// strict`).
    #[arg(long, value_name = "PATH")]
    pub wasm: Option<PathBuf>,
    /// Address of the token push listener (`egressctl token refresh` pushes there); keep it
    /// on loopback or a private interface: callers must not reach it.
    #[arg(
        long,
        env = "EGRESS_PUSH_ADDR",
        default_value = "127.0.0.1:9902",
        value_name = "ADDR"
    )]
    pub push_addr: String,
    /// CA bundle for targets without `tls.ca_cert`. Default: the system bundle.
    #[arg(long, value_name = "PATH")]
    pub system_ca: Option<PathBuf>,
    /// What serves each route. `auto`: Envoy routes, rewrites and attaches static credentials
    /// natively; the filter runs only where it adds something (OAuth2 tokens, callers, paths
    /// that are not plain; with `egress.path_mode: strict` a config of static credentials
    /// loads no module at all). `wasm`: the filter does everything (the mode for any other
    /// proxy-wasm host).
    /// Kept in the state directory: `apply` renders with it.
    #[arg(long, default_value = "auto", value_name = "auto|wasm")]
    pub engine: egress_core::native::EngineChoice,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The config file (YAML).
    pub config: PathBuf,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub render: RenderArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct RoutesArgs {
    /// The config file (YAML).
    pub config: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Which engine's view to show (`auto`: native, routed or filter per route; `wasm`: the
    /// filter serves every route).
    #[arg(long, default_value = "auto", value_name = "auto|wasm")]
    pub engine: egress_core::native::EngineChoice,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The config file (YAML).
    pub config: PathBuf,
    /// Request method, e.g. GET.
    pub method: String,
    /// Request path as the caller sends it, query included, e.g. /egress/crm/Contact/42?x=1.
    pub path: String,
    /// The caller's SPIFFE ID, as its client certificate would present it.
    #[arg(long, value_name = "ID", conflicts_with_all = ["subject", "roles"])]
    pub spiffe_id: Option<String>,
    /// The caller's JWT subject (`sub`).
    #[arg(long, value_name = "S")]
    pub subject: Option<String>,
    /// The caller's JWT roles, comma-separated.
    #[arg(long, value_name = "a,b", value_delimiter = ',')]
    pub roles: Option<Vec<String>>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Which engine's view to show (`auto`: native, routed or filter per route; `wasm`: the
    /// filter serves every route).
    #[arg(long, default_value = "auto", value_name = "auto|wasm")]
    pub engine: egress_core::native::EngineChoice,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The config file (YAML).
    pub config: PathBuf,
    /// The state directory `compile` or `up` wrote (its state.json names the admin address).
    #[arg(long, default_value = ".egressctl", value_name = "DIR")]
    pub out: PathBuf,
    /// Print what would change, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Switch the engine (`auto` or `wasm`); default: the one the state directory was compiled
    /// with. A switch changes the listener (Envoy drains the old one).
    #[arg(long, value_name = "auto|wasm")]
    pub engine: Option<egress_core::native::EngineChoice>,
    /// How long to wait for Envoy to confirm each step.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The config file (YAML).
    pub config: PathBuf,
    /// State directory the config is compiled into.
    #[arg(long, default_value = ".egressctl", value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub render: RenderArgs,
    /// The Envoy binary (else $ENVOY_BIN, PATH, then this repo's .venv/bin/envoy).
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
    /// Envoy worker threads.
    #[arg(long, default_value_t = 2)]
    pub concurrency: u16,
    /// Envoy --base-id, to run several Envoys side by side.
    #[arg(long)]
    pub base_id: Option<u32>,
}
