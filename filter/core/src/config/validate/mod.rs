//! [`RawConfig`] to [`Config`]: parse every string, resolve every reference, report every
//! problem with its field path (locations are added by the loader).
//!
//! One file per part of the config: [`http`] (listener and logger), [`token_store`],
//! [`targets`] (defaults and targets), [`tls`], [`auth`] (one file per auth family),
//! [`endpoints`], [`routes`], [`callers`] (`egress.callers` and `allow`).
//!
//! Checks that hold for every string whatever its field (no control characters) are made by
//! the loader while it expands `${VAR}` (`load.rs`), so a new field is covered without a line
//! here; file fields naming folders are checked there too (`files.rs`, list new ones).

mod auth;
mod callers;
mod endpoints;
mod http;
mod routes;
mod targets;
mod tls;
mod token_store;

use super::error::{ConfigErrors, FieldPath};
use super::model::*;
use super::raw::*;
use crate::duration::parse_duration;
use crate::types::PathMode;
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(250);

/// Validates a raw config, returning every problem found.
pub fn validate(raw: &RawConfig) -> Result<Config, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let root = FieldPath::root();
    let config = build(raw, &root, &mut errs);
    if errs.is_empty() {
        Ok(config)
    } else {
        Err(errs)
    }
}

fn build(raw: &RawConfig, root: &FieldPath, errs: &mut ConfigErrors) -> Config {
    let http = http::http(&raw.http, &root.key("http"), errs);

    let egress = &raw.egress;
    let egress_path = root.key("egress");
    let token_store = token_store::token_store(
        egress.token_store.as_ref(),
        &egress_path.key("token_store"),
        errs,
    );
    let defaults = targets::defaults(egress.defaults.as_ref(), &egress_path.key("defaults"), errs);

    let targets: Vec<Target> = egress
        .targets
        .iter()
        .map(|(name, t)| {
            targets::target(
                name,
                t,
                &defaults,
                &egress_path.key("targets").key(name),
                errs,
            )
        })
        .collect();

    let endpoints = endpoints::endpoints(raw.endpoints.as_ref(), &root.key("endpoints"), errs);
    let routes = routes::routes(
        &egress.routes,
        &targets,
        &endpoints,
        &egress_path.key("routes"),
        errs,
    );
    let logger = http::logger(raw.logger.as_ref(), &root.key("logger"), errs);
    let callers = callers::callers(&raw.egress, &root.key("egress"), errs);

    Config {
        http,
        enabled: egress.enabled,
        path_mode: path_mode(
            egress.path_mode.as_deref(),
            &egress_path.key("path_mode"),
            errs,
        ),
        token_store,
        defaults,
        targets,
        routes,
        endpoints,
        logger,
        callers,
    }
}

fn path_mode(text: Option<&str>, path: &FieldPath, errs: &mut ConfigErrors) -> PathMode {
    let Some(text) = text else {
        return PathMode::default();
    };
    PathMode::parse(text).unwrap_or_else(|| {
        errs.push(
            path.as_str(),
            format!("unknown path mode {text:?} (expected canonicalize or strict)"),
        );
        PathMode::default()
    })
}

pub(super) fn opt_duration(
    v: &Option<String>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<Duration> {
    let text = v.as_ref()?;
    match parse_duration(text) {
        Ok(d) if d.is_zero() => {
            errs.push(path.as_str(), "must be greater than zero");
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(path.as_str(), e.to_string());
            None
        }
    }
}
