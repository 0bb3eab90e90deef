//! `egressctl routes CONFIG`: the routing table of the spec's section 5.

use super::load_or_report;
use crate::cli::{Format, RoutesArgs};
use crate::exit::ExitCode;
use egress_core::config::Config;
use egress_core::native::{leaf_kind, EngineChoice, LeafKind};
use egress_core::plan::FilterConfig;
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RouteRow {
    pub path_prefix: String,
    pub target: String,
    /// The URL a request to the prefix itself goes to; sub-paths are appended.
    pub outgoing_url: String,
    pub methods: Vec<String>,
    pub auth: String,
    /// Who may call the route (the target's `allow` and the route's).
    pub callers: String,
    /// What serves the route with `--engine`: `native` (Envoy alone), `routed` (Envoy routes,
    /// the filter attaches the token or checks the caller) or `filter` (the filter does it
    /// all). Paths with percent escapes or dot segments always go through the filter.
    pub engine: String,
}

/// How `engine` serves config route `index` (the core decides: [`leaf_kind`]).
pub fn served_by(plan: &FilterConfig, index: usize, engine: EngineChoice) -> &'static str {
    match engine {
        EngineChoice::Wasm => LeafKind::Full.as_str(),
        EngineChoice::Auto => leaf_kind(plan, index).unwrap_or(LeafKind::Full).as_str(),
    }
}

/// One row per route, longest prefix first (the order matching uses).
pub fn rows(config: &Config, engine: EngineChoice) -> Vec<RouteRow> {
    let plan = FilterConfig::from_config(config);
    let mut rows: Vec<RouteRow> = config
        .routes
        .iter()
        .enumerate()
        .filter_map(|(index, r)| {
            let t = config.target(&r.target)?;
            let outgoing = egress_core::routing::path::rewrite(
                &r.path_prefix,
                None,
                r.strip_prefix.as_deref(),
                r.rewrite_prefix.as_deref(),
                &t.url.base_path,
            );
            Some(RouteRow {
                path_prefix: r.path_prefix.clone(),
                target: t.name.clone(),
                outgoing_url: t.url.url_for(&outgoing),
                methods: match &r.methods {
                    Some(ms) => ms.iter().map(|m| m.as_str().to_string()).collect(),
                    None => vec!["*".to_string()],
                },
                auth: t.auth.kind().to_string(),
                callers: egress_core::callers::allow::describe(
                    t.allow.as_ref(),
                    r.allow.as_ref(),
                    config.callers.is_some(),
                ),
                engine: served_by(&plan, index, engine).to_string(),
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        b.path_prefix
            .len()
            .cmp(&a.path_prefix.len())
            .then(a.path_prefix.cmp(&b.path_prefix))
    });
    rows
}

pub fn run(args: &RoutesArgs) -> anyhow::Result<ExitCode> {
    let source = match load_or_report(&args.config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let rows = rows(&source.config, args.engine);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => print!("{}", table(&rows)),
    }
    Ok(ExitCode::Success)
}

pub fn table(rows: &[RouteRow]) -> String {
    let header = [
        "INCOMING PREFIX",
        "TARGET",
        "OUTGOING URL",
        "METHODS",
        "AUTH",
        "CALLERS",
        "ENGINE",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.path_prefix.clone(),
                r.target.clone(),
                format!("{}/...", r.outgoing_url.trim_end_matches('/')),
                r.methods.join(","),
                r.auth.clone(),
                r.callers.clone(),
                r.engine.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[&str]| {
        let parts: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &cells {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&refs);
    }
    out
}
