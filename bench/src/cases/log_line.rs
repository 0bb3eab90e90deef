//! Cases 17 and 18: the spec's request log line (section 7) grafted onto case 2 (Envoy's
//! native injector) and case 4 (the minimal wasm module), so the `auto` engine, which must
//! write that line for every request, can be compared with baselines that write it too.
//!
//! Nothing of the line is written here: the parts are read out of the listener
//! `egressctl compile --engine auto` renders for case 13's config, from the route leaf that
//! serves the measured path:
//! - the `set_filter_state` filter the leaf enables (it keeps the caller's method and path and
//!   reads the route metadata into the line's fragment), enabled for every request here;
//! - the access logger whose line prints that filter state, without its CEL filter (`auto`
//!   renders two loggers selected by CEL; one logger is the cheapest faithful form);
//! - the leaf's route metadata (`%METADATA(ROUTE:egress:...)%` reads it), set on the case's
//!   one route.

use super::{compile, egress_config, EngineSel, Kind, Setup};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::fs;
use std::path::Path;

const SET_FILTER_STATE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config";
const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.Route";

/// What the `auto` engine adds to a native leaf's request for the log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogParts {
    /// The `set_filter_state` HTTP filter (no longer `disabled`).
    pub filter: Value,
    /// The file access logger printing that filter state (no `filter`).
    pub logger: Value,
    /// The leaf route's `metadata`.
    pub route_metadata: Value,
}

/// Compiles case 13's config (`auto` engine, API-key target) under `dir` and reads the log
/// parts out of the listener it rendered.
pub fn compiled_log_parts(setup: &Setup, dir: &Path, listen: u16, admin: u16) -> Result<LogParts> {
    fs::create_dir_all(dir)?;
    let config = dir.join("egress.yaml");
    fs::write(&config, egress_config(Kind::OursApiKey, setup, listen))?;
    let out = dir.join("out");
    compile(setup, &config, &out, admin, EngineSel::Auto)?;
    let listener = read_listener(&out)?;
    log_parts(&listener).with_context(|| {
        format!(
            "reading the log line's parts out of {}",
            out.join("lds.json").display()
        )
    })
}

/// The listener file (`lds.json`) `egressctl compile` wrote into `out`, as its bootstrap names it.
pub fn read_listener(out: &Path) -> Result<Value> {
    let bootstrap = fs::read_to_string(out.join("envoy.yaml"))
        .with_context(|| format!("reading {}/envoy.yaml", out.display()))?;
    let bootstrap: Value =
        serde_yaml::from_str(&bootstrap).context("egressctl's envoy.yaml is not YAML")?;
    let lds = bootstrap
        .pointer("/dynamic_resources/lds_config/path_config_source/path")
        .and_then(Value::as_str)
        .context("egressctl's envoy.yaml names no listener file")?;
    let text = fs::read_to_string(lds).with_context(|| format!("reading {lds}"))?;
    serde_json::from_str(&text).with_context(|| format!("{lds} is not JSON"))
}

fn hcm_of_listener(listener: &Value) -> Result<&Value> {
    listener
        .pointer("/resources/0/filter_chains/0/filters/0/typed_config")
        .context("no HTTP connection manager in the listener")
}

/// Every Route (a matcher action or a `routes` entry) under `node`, in document order.
fn routes<'a>(node: &'a Value, found: &mut Vec<&'a Value>) {
    match node {
        Value::Object(o) => {
            let is_route = o.get("@type").and_then(Value::as_str) == Some(ROUTE)
                || (o.contains_key("match") && o.contains_key("route"));
            if is_route {
                found.push(node);
            }
            for child in o.values() {
                routes(child, found);
            }
        }
        Value::Array(a) => a.iter().for_each(|child| routes(child, found)),
        _ => {}
    }
}

fn format_string(filter: &Value) -> Option<&str> {
    filter
        .pointer(
            "/typed_config/on_request_headers/0/format_string/text_format_source/inline_string",
        )
        .and_then(Value::as_str)
}

fn logger_line(logger: &Value) -> Option<&str> {
    logger
        .pointer("/typed_config/log_format/text_format_source/inline_string")
        .and_then(Value::as_str)
}

/// The log parts of the first route leaf with metadata that enables a `set_filter_state`
/// filter whose fragment reads the route metadata (a native leaf of `auto`'s listener).
pub fn log_parts(listener: &Value) -> Result<LogParts> {
    let hcm = hcm_of_listener(listener)?;
    let filters = hcm
        .get("http_filters")
        .and_then(Value::as_array)
        .context("no http_filters in the connection manager")?;
    let mut found = Vec::new();
    routes(
        hcm.get("route_config")
            .context("no route_config in the connection manager")?,
        &mut found,
    );
    let leaf = found.iter().find_map(|route| {
        let metadata = route.get("metadata")?;
        let enabled = route.get("typed_per_filter_config")?.as_object()?;
        let filter = filters.iter().find(|f| {
            f.get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| enabled.contains_key(name))
                && f.pointer("/typed_config/@type").and_then(Value::as_str)
                    == Some(SET_FILTER_STATE)
                && format_string(f).is_some_and(|s| s.contains("%METADATA(ROUTE:"))
        })?;
        Some((metadata, filter))
    });
    let Some((metadata, filter)) = leaf else {
        bail!("no route leaf with metadata enables a set_filter_state filter reading it");
    };
    let key = filter
        .pointer("/typed_config/on_request_headers/0/object_key")
        .and_then(Value::as_str)
        .context("the set_filter_state filter sets no object_key")?;
    let printed = format!("%FILTER_STATE({key}:");
    let logger = hcm
        .get("access_log")
        .and_then(Value::as_array)
        .and_then(|logs| {
            logs.iter()
                .find(|l| logger_line(l).is_some_and(|line| line.contains(&printed)))
        })
        .with_context(|| format!("no access logger prints {printed}...)%"))?;
    let mut filter = filter.clone();
    if let Some(o) = filter.as_object_mut() {
        o.remove("disabled");
    }
    let mut logger = logger.clone();
    if let Some(o) = logger.as_object_mut() {
        o.remove("filter");
    }
    Ok(LogParts {
        filter,
        logger,
        route_metadata: metadata.clone(),
    })
}

/// Adds `parts` to a bootstrap of [`super::native_bootstrap`]: the filter right before the
/// router, the logger as the connection manager's only access log, the metadata on its route.
pub fn graft(bootstrap: &mut Value, parts: &LogParts) -> Result<()> {
    let hcm = bootstrap
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .context("no connection manager in the bootstrap")?;
    let filters = hcm
        .get_mut("http_filters")
        .and_then(Value::as_array_mut)
        .context("no http_filters in the bootstrap")?;
    let router = filters.len().saturating_sub(1);
    filters.insert(router, parts.filter.clone());
    hcm["access_log"] = Value::Array(vec![parts.logger.clone()]);
    let routes = hcm
        .pointer_mut("/route_config/virtual_hosts/0/routes")
        .and_then(Value::as_array_mut)
        .context("no routes in the bootstrap")?;
    if routes.len() != 1 {
        bail!("the bootstrap has {} routes, expected one", routes.len());
    }
    routes[0]["metadata"] = parts.route_metadata.clone();
    Ok(())
}

#[cfg(test)]
#[path = "log_line_tests.rs"]
mod tests;
