//! `endpoints`: the egress prefix and the paths the proxy answers itself.

use super::super::error::{ConfigErrors, FieldPath};
use super::super::model::*;
use super::super::raw::*;
use crate::routing::path::{is_boundary_prefix, validate_prefix};
use std::collections::HashMap;

fn endpoint_path(v: &Option<String>, path: &FieldPath, errs: &mut ConfigErrors) -> Option<String> {
    let p = v.as_ref()?;
    match validate_prefix(p) {
        Ok(n) => Some(n),
        Err(e) => {
            errs.push(path.as_str(), e.to_string());
            None
        }
    }
}

pub(super) fn endpoints(
    raw: Option<&RawEndpoints>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Endpoints {
    let raw = raw.cloned().unwrap_or_default();
    let egress =
        endpoint_path(&raw.egress, &path.key("egress"), errs).unwrap_or_else(|| "/egress".into());
    let e = Endpoints {
        health: endpoint_path(&raw.health, &path.key("health"), errs),
        ready: endpoint_path(&raw.ready, &path.key("ready"), errs),
        metrics: endpoint_path(&raw.metrics, &path.key("metrics"), errs),
        egress,
    };
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (name, p) in [
        ("health", &e.health),
        ("ready", &e.ready),
        ("metrics", &e.metrics),
    ] {
        let Some(p) = p else { continue };
        if is_boundary_prefix(&e.egress, p) {
            errs.push(
                path.key(name).as_str(),
                format!("{p:?} lies under the egress prefix {:?}", e.egress),
            );
        }
        if let Some(other) = seen.insert(p.as_str(), name) {
            errs.push(
                path.key(name).as_str(),
                format!("{p:?} is already used by endpoints.{other}"),
            );
        }
    }
    e
}
