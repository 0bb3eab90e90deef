//! Envoy's admin API, as `apply` and `status` use it: plain HTTP on loopback.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("Envoy's admin at {addr} is unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("Envoy's admin at {addr} answered {status} to {path}")]
    Status {
        addr: String,
        path: String,
        status: u16,
    },
}

/// The xDS files a running Envoy watches: the `path_config_source` of its bootstrap's
/// listeners and clusters (`None` when it names none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchedFiles {
    pub lds: Option<PathBuf>,
    pub cds: Option<PathBuf>,
}

/// What the running Envoy was started to watch, from its config dump (only the bootstrap's
/// `dynamic_resources`: the dump of a 10,000-route listener is large).
pub fn watched_files(addr: &str) -> Result<WatchedFiles, AdminError> {
    let body = get(addr, WATCHED_PATH)?;
    Ok(parse_watched(&body))
}

const WATCHED_PATH: &str = "/config_dump?mask=bootstrap.dynamic_resources";

/// The watched files in a `/config_dump` answer (the `BootstrapConfigDump` entry).
pub fn parse_watched(body: &str) -> WatchedFiles {
    let dump: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let dynamic = dump
        .get("configs")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|c| c.pointer("/bootstrap/dynamic_resources"));
    let path = |source: &str| {
        dynamic
            .and_then(|d| d.get(source))
            .and_then(|s| s.pointer("/path_config_source/path"))
            .and_then(serde_json::Value::as_str)
            .map(PathBuf::from)
    };
    WatchedFiles {
        lds: path("lds_config"),
        cds: path("cds_config"),
    }
}

/// GET on the admin; the body as text.
pub fn get(addr: &str, path: &str) -> Result<String, AdminError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let unreachable = |e: &dyn std::fmt::Display| AdminError::Unreachable {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    let mut resp = agent.get(&url).call().map_err(|e| unreachable(&e))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(AdminError::Status {
            addr: addr.to_string(),
            path: path.to_string(),
            status,
        });
    }
    let mut body = String::new();
    resp.body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .map_err(|e| unreachable(&e))?;
    Ok(body)
}

/// Counters and gauges whose names match `filter` (a regex Envoy applies), by name.
pub fn stats(addr: &str, filter: &str) -> Result<BTreeMap<String, u64>, AdminError> {
    let body = get(addr, &format!("/stats?filter={filter}"))?;
    Ok(parse_stats(&body))
}

/// Parses Envoy's text stats (`name: value` lines; histograms are skipped).
pub fn parse_stats(body: &str) -> BTreeMap<String, u64> {
    body.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_and_skips_histograms() {
        let s = parse_stats(
            "cluster_manager.cds.update_success: 3\nlistener_manager.lds.update_rejected: 0\nhttp.egress.rq_time: P0(nan,1)\n",
        );
        assert_eq!(s.get("cluster_manager.cds.update_success"), Some(&3));
        assert_eq!(s.get("listener_manager.lds.update_rejected"), Some(&0));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn watched_files_come_from_the_bootstrap_of_the_config_dump() {
        // Envoy 1.40's answer to `/config_dump?mask=bootstrap.dynamic_resources`.
        let body = r#"{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump","bootstrap":{"dynamic_resources":{"lds_config":{"resource_api_version":"V3","path_config_source":{"path":"/s/lds.json"}},"cds_config":{"resource_api_version":"V3","path_config_source":{"path":"/s/cds.yaml"}}}}}]}"#;
        assert_eq!(
            parse_watched(body),
            WatchedFiles {
                lds: Some(PathBuf::from("/s/lds.json")),
                cds: Some(PathBuf::from("/s/cds.yaml")),
            }
        );
    }

    #[test]
    fn an_envoy_watching_no_files_or_garbage_watches_nothing() {
        assert_eq!(parse_watched(r#"{"configs":[]}"#), WatchedFiles::default());
        assert_eq!(parse_watched("not json"), WatchedFiles::default());
        let static_only =
            r#"{"configs":[{"bootstrap":{"dynamic_resources":{"lds_config":{"ads":{}}}}}]}"#;
        assert_eq!(parse_watched(static_only), WatchedFiles::default());
    }
}
