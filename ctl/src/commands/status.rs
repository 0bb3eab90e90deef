//! `egressctl status [--out DIR] [--proxy URL]... [--format table|json]`: each proxy's OAuth2
//! tokens as its push listener reports them (`GET /v1/status`, signed like a push): source,
//! age, time left, the last refresh result; plus requests served, from Envoy's admin stats
//! when the proxy is the one compiled into DIR. Never a token.
//!
//! Exit 0 when every proxy answered and every target holds a valid token; 3 otherwise.

use crate::admin;
use crate::cli::{Format, StatusArgs};
use crate::exit::ExitCode;
use crate::proxy::{self, ProxyClient, TargetStatus};
use crate::state::StateDir;
use serde_json::{json, Value};

struct ProxyReport {
    url: String,
    result: anyhow::Result<Vec<TargetStatus>>,
    /// Requests per target from the admin (only for the proxy in DIR).
    requests: Option<std::collections::BTreeMap<String, u64>>,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let dir = StateDir::new(&args.out);
    let signer = proxy::signer(&dir)?;
    let state = dir.read_state().ok();
    if args.proxies.is_empty() && state.as_ref().is_some_and(|s| !s.push_listener) {
        // Nothing to report, and nothing that could be unhealthy: Envoy holds every credential.
        match args.format {
            Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(&to_json(&[], true))?
            ),
            Format::Table => println!(
                "no push listener in {}: its config has only static credentials, which Envoy holds itself (no OAuth2 token or AWS credentials to report)",
                dir.dir.display()
            ),
        }
        return Ok(ExitCode::Success);
    }
    let urls = proxy::proxy_urls(&args.proxies, state.as_ref())?;
    // The proxy compiled into DIR: its admin gives request counts.
    let own = state.as_ref().and_then(|s| {
        s.push_addr
            .as_deref()
            .map(|p| (proxy::default_url(p), s.admin.clone()))
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reports = runtime.block_on(async {
        let client = ProxyClient::new(signer)?;
        let mut reports = Vec::new();
        for url in urls {
            let result = client.status(&url).await;
            let admin = own
                .as_ref()
                .filter(|(u, _)| *u == url)
                .map(|(_, a)| a.clone());
            let requests = match (admin, &result) {
                (Some(admin), Ok(_)) => tokio::task::spawn_blocking(move || {
                    admin::stats(&admin, "upstream_rq_total").ok()
                })
                .await
                .ok()
                .flatten(),
                _ => None,
            };
            reports.push(ProxyReport {
                url,
                result,
                requests,
            });
        }
        anyhow::Ok(reports)
    })?;

    let healthy = reports.iter().all(|r| match &r.result {
        Ok(ts) => ts.iter().all(|t| t.valid),
        Err(_) => false,
    });
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&reports, healthy))?
        ),
        Format::Table => print_table(&reports),
    }
    Ok(if healthy {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

fn requests_of(r: &ProxyReport, target: &str) -> Option<u64> {
    let stats = r.requests.as_ref()?;
    Some(
        stats
            .get(&format!("cluster.egress_target_{target}.upstream_rq_total"))
            .copied()
            .unwrap_or(0),
    )
}

fn to_json(reports: &[ProxyReport], healthy: bool) -> Value {
    let proxies: Vec<Value> = reports
        .iter()
        .map(|r| match &r.result {
            Ok(ts) => json!({
                "proxy": r.url,
                "reachable": true,
                "targets": ts.iter().map(|t| {
                    let mut v = json!({
                        "target": t.target,
                        "valid": t.valid,
                        "source": t.source,
                        "version": t.version,
                        "age_ms": t.age_ms,
                        "expires_in_ms": t.expires_in_ms,
                        "expires_at": t.expires_at,
                        "stale": t.stale,
                        "fetch_failures": t.fetch_failures,
                        "last_error": t.last_error,
                    });
                    if let (Some(n), Some(o)) = (requests_of(r, &t.target), v.as_object_mut()) {
                        o.insert("requests".into(), json!(n));
                    }
                    v
                }).collect::<Vec<_>>(),
            }),
            Err(e) => json!({ "proxy": r.url, "reachable": false, "error": format!("{e:#}") }),
        })
        .collect();
    json!({ "ok": healthy, "proxies": proxies })
}

fn secs(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 10_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => format!("{}s", ms / 1000),
    }
}

fn print_table(reports: &[ProxyReport]) {
    for r in reports {
        let ts = match &r.result {
            Ok(ts) => ts,
            Err(e) => {
                println!("{}: UNREACHABLE: {e:#}", r.url);
                continue;
            }
        };
        println!("{}:", r.url);
        if ts.is_empty() {
            println!("  (no OAuth2 targets)");
            continue;
        }
        let mut rows = vec![vec![
            "TARGET".to_string(),
            "TOKEN".into(),
            "SOURCE".into(),
            "VERSION".into(),
            "AGE".into(),
            "EXPIRES IN".into(),
            "FETCH FAILURES".into(),
            "LAST ERROR".into(),
        ]];
        let with_requests = r.requests.is_some();
        if with_requests {
            rows[0].push("REQUESTS".into());
        }
        for t in ts {
            let mut row = vec![
                t.target.clone(),
                match (t.valid, t.stale) {
                    (true, false) => "valid".into(),
                    (true, true) => "valid (stale)".into(),
                    (false, _) => "NONE".into(),
                },
                t.source.clone().unwrap_or_else(|| "-".into()),
                t.version.map_or("-".into(), |v| v.to_string()),
                secs(t.age_ms),
                match (&t.expires_at, t.valid) {
                    (Some(at), true) => format!("{} ({at})", secs(t.expires_in_ms)),
                    (Some(at), false) => format!("expired ({at})"),
                    _ => "-".into(),
                },
                t.fetch_failures.to_string(),
                t.last_error.clone().unwrap_or_else(|| "-".into()),
            ];
            if with_requests {
                row.push(requests_of(r, &t.target).unwrap_or(0).to_string());
            }
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| {
                rows.iter()
                    .map(|r| r.get(i).map_or(0, |c| c.len()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("  {}", line.join("  ").trim_end());
        }
    }
}
