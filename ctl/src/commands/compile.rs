//! `egressctl compile CONFIG --out DIR`

use super::load_or_report;
use crate::cli::{CompileArgs, RenderArgs};
use crate::envoy::{self, locate, PushListener, RenderOptions, Rendered};
use crate::exit::ExitCode;
use crate::source::Source;
use crate::state::{State, StateDir};
use anyhow::Context;
use egress_core::config::ListenAddr;
use std::path::Path;

pub fn run(args: &CompileArgs) -> anyhow::Result<ExitCode> {
    let source = match load_or_report(&args.config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let (dir, rendered) = compile(&source, &args.render, &args.out)?;
    for f in [
        dir.envoy_yaml(),
        dir.lds(),
        dir.cds(),
        dir.filter_json(),
        dir.secrets_env(),
        dir.state_json(),
    ] {
        println!("wrote {}", f.display());
    }
    for c in &rendered.credentials {
        println!(
            "wrote {} (the {} header Envoy injects for target {})",
            c.sds_path(&dir.sds_dir()).display(),
            c.header,
            c.target
        );
    }
    for t in &source.config.targets {
        if let Some(why) = egress_core::build::push_only(&source.config, t) {
            println!(
                "target {}: push-only ({why}): the proxy never fetches its credential; run `egressctl token refresh {} --out {}` where its files are",
                t.name,
                args.config.display(),
                args.out.display()
            );
        }
    }
    println!(
        "run: env $(grep -v '^#' {}) envoy -c {}  (or egressctl up: Envoy needs the variables of secrets.env)",
        dir.secrets_env().display(),
        dir.envoy_yaml().display()
    );
    for name in push_only_aws_targets(&source) {
        eprintln!(
            "egressctl: note: target {name} (aws_sigv4 with web_identity) is push-only: the proxy signs with temporary credentials that `egressctl token refresh --watch {} --out {}` fetches from STS and pushes; until they arrive its requests get 503 credentials_unavailable",
            args.config.display(),
            args.out.display()
        );
    }
    Ok(ExitCode::Success)
}

/// `aws_sigv4` targets whose credentials only arrive by push (`web_identity`).
pub fn push_only_aws_targets(source: &Source) -> Vec<&str> {
    source
        .config
        .targets
        .iter()
        .filter(|t| {
            matches!(&t.auth, egress_core::config::Auth::AwsSigv4(a)
                if matches!(a.source, egress_core::config::AwsCredentialSource::WebIdentity(_)))
        })
        .map(|t| t.name.as_str())
        .collect()
}

/// The options rendering needs, from the command line (compile, up) or the state file (apply).
pub fn render_options(render: &RenderArgs, dir: &StateDir) -> anyhow::Result<RenderOptions> {
    let admin = ListenAddr::parse(&render.admin).map_err(|e| anyhow::anyhow!("--admin: {e}"))?;
    let push = PushListener {
        addr: ListenAddr::parse(&render.push_addr)
            .map_err(|e| anyhow::anyhow!("--push-addr: {e}"))?,
        public_key_pem: dir.push_signer()?.public_pem(),
    };
    let wasm = match locate::wasm(render.wasm.as_deref()) {
        Ok(p) => Ok(std::path::absolute(&p).unwrap_or(p)),
        // Not found where it is looked for by default: an error only if the listeners load it.
        Err(e @ locate::LocateError::Wasm { .. }) => Err(e),
        // `--wasm` or `$EGRESS_FILTER_WASM` names a file that is not there.
        Err(e) => return Err(e.into()),
    };
    let system_ca = match &render.system_ca {
        Some(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        None => locate::system_ca(),
    };
    Ok(RenderOptions {
        admin,
        push: Some(push),
        wasm,
        system_ca,
        seal_key: Some(dir.seal_key()?),
        engine: render.engine,
        sds_dir: Some(dir.sds_dir()),
    })
}

/// Renders and warns about referenced files that do not exist.
pub fn render(source: &Source, opts: &RenderOptions) -> anyhow::Result<Rendered> {
    let rendered = envoy::render(source, opts)?;
    for f in &rendered.missing_files {
        eprintln!(
            "egressctl: warning: {} does not exist; Envoy will refuse the config until it does",
            f.display()
        );
    }
    Ok(rendered)
}

/// Writes the whole state directory (see [`crate::state`]); what was rendered.
pub fn compile(
    source: &Source,
    render_args: &RenderArgs,
    out: &Path,
) -> anyhow::Result<(StateDir, Rendered)> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let dir = StateDir::new(out);
    let opts = render_options(render_args, &dir)?;
    let rendered = render(source, &opts)?;
    dir.write_clusters(&rendered)?;
    // The listeners name the SDS files: Envoy refuses a listener whose file does not exist.
    dir.write_sds(&rendered.credentials)?;
    dir.write_listeners(&dir.lds(), &rendered)?;
    dir.remove_stale_sds(&rendered.credentials)?;
    dir.write_bootstrap(&opts.admin)?;
    // The new bootstrap names `lds.json`: an older egressctl's `lds.yaml` is no longer read.
    dir.remove_legacy_lds()?;
    dir.write_filter_config(&rendered.filter_config)?;
    if let Some(key) = &opts.seal_key {
        dir.write_secrets(&rendered.secret_vars, key)?;
    }
    dir.write_state(&State {
        admin: opts.admin.to_string(),
        wasm: opts.wasm.ok(),
        system_ca: opts.system_ca,
        config: std::path::absolute(&source.path).unwrap_or_else(|_| source.path.clone()),
        push_addr: opts.push.as_ref().map(|p| p.addr.to_string()),
        engine: opts.engine,
        push_listener: opts.push.is_some() && rendered.loads_module,
    })?;
    Ok((dir, rendered))
}
