//! Envoy's admin API, as `apply` and `status` use it: plain HTTP on loopback.

use std::collections::BTreeMap;
use std::io::Read;
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
}
