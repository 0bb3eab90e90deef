//! `egress.routes[i]`: prefixes, their target, rewrites and methods.

use super::super::error::{ConfigErrors, FieldPath};
use super::super::model::*;
use super::super::raw::*;
use crate::routing::path::{is_boundary_prefix, validate_prefix};
use crate::types::Method;
use std::collections::HashMap;

pub(super) fn routes(
    raw: &[RawRoute],
    targets: &[Target],
    endpoints: &Endpoints,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Vec<Route> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let rp = path.index(i);
        // A bad prefix is reported with the route's other problems, not instead of them.
        let prefix = validate_prefix(&r.path_prefix)
            .map_err(|e| errs.push(rp.key("path_prefix").as_str(), e.to_string()))
            .ok();
        if let Some(prefix) = &prefix {
            if !is_boundary_prefix(&endpoints.egress, prefix) {
                errs.push(
                    rp.key("path_prefix").as_str(),
                    format!(
                        "{prefix:?} is not under endpoints.egress {:?}",
                        endpoints.egress
                    ),
                );
            }
            if let Some(first) = seen.insert(prefix.clone(), i) {
                errs.push(
                    rp.key("path_prefix").as_str(),
                    format!("duplicate prefix {prefix:?}: egress.routes[{first}] has it already"),
                );
            }
        }
        if !targets.iter().any(|t| t.name == r.target) {
            let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
            errs.push(
                rp.key("target").as_str(),
                format!(
                    "unknown target {:?}; known targets: {}",
                    r.target,
                    known.join(", ")
                ),
            );
        }
        let strip_prefix = match &r.strip_prefix {
            None => None,
            Some(s) => {
                match validate_prefix(s) {
                    // Without a valid path_prefix there is nothing to compare with.
                    Ok(s) if prefix.as_ref().is_none_or(|p| is_boundary_prefix(&s, p)) => Some(s),
                    Ok(s) => {
                        errs.push(
                            rp.key("strip_prefix").as_str(),
                            format!(
                                "{s:?} is not a prefix of path_prefix {:?} at a segment boundary",
                                prefix.as_deref().unwrap_or_default()
                            ),
                        );
                        None
                    }
                    Err(e) => {
                        errs.push(rp.key("strip_prefix").as_str(), e.to_string());
                        None
                    }
                }
            }
        };
        let rewrite_prefix = match &r.rewrite_prefix {
            None => None,
            Some(s) => match validate_prefix(s) {
                Ok(s) => Some(s),
                Err(e) => {
                    errs.push(rp.key("rewrite_prefix").as_str(), e.to_string());
                    None
                }
            },
        };
        let methods = r.methods.as_ref().map(|ms| {
            if ms.is_empty() {
                errs.push(
                    rp.key("methods").as_str(),
                    "must list at least one method (omit it to allow all)",
                );
            }
            let mut parsed: Vec<Method> = Vec::new();
            for (j, m) in ms.iter().enumerate() {
                match Method::parse(m) {
                    Some(pm) if parsed.contains(&pm) => {
                        errs.push(
                            rp.key("methods").index(j).as_str(),
                            format!("{m} is listed twice"),
                        );
                    }
                    Some(pm) => parsed.push(pm),
                    None => {
                        let names: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
                        errs.push(
                            rp.key("methods").index(j).as_str(),
                            format!("invalid method {m:?}; expected one of {}", names.join(", ")),
                        );
                    }
                }
            }
            parsed
        });
        let allow = super::callers::allow(r.allow.as_ref(), &rp.key("allow"), errs);
        let Some(path_prefix) = prefix else { continue };
        out.push(Route {
            path_prefix,
            target: r.target.clone(),
            strip_prefix,
            rewrite_prefix,
            methods,
            allow,
        });
    }
    out
}
