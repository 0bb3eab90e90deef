//! Clusters: one per target, one per OAuth2 token endpoint, one per `jwks_url` issuer, and
//! the admin (for metrics).

use super::{socket_address, RenderError, RenderOptions};
use crate::source::Source;
use egress_core::callers::{jwks, KeySource};
use egress_core::config::{Auth, ListenAddr, TlsSettings};
use egress_core::duration::envoy_duration;
use egress_core::plan::wire;
use egress_core::target_url::TargetUrl;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn target_clusters(
    source: &Source,
    opts: &RenderOptions,
    files: &mut Vec<PathBuf>,
) -> Result<Vec<Value>, RenderError> {
    source
        .config
        .targets
        .iter()
        .map(|t| {
            cluster(
                &wire::target_cluster(&t.name),
                &t.name,
                &t.url,
                t.timeout,
                t.tls.as_ref(),
                source,
                opts,
                files,
            )
        })
        .collect()
}

pub fn token_clusters(
    source: &Source,
    opts: &RenderOptions,
    files: &mut Vec<PathBuf>,
) -> Result<Vec<Value>, RenderError> {
    let mut out = Vec::new();
    for t in &source.config.targets {
        // A token URL that only a key file names (push-only) needs no cluster.
        if let Some((o, token_url)) = oauth2_token_url(&t.auth) {
            out.push(cluster(
                &wire::token_cluster(&t.name),
                &t.name,
                token_url,
                o.token_timeout,
                o.tls.as_ref(),
                source,
                opts,
                files,
            )?);
        }
    }
    Ok(out)
}

fn oauth2_token_url(
    auth: &Auth,
) -> Option<(
    &egress_core::config::OAuth2Settings,
    &egress_core::target_url::TargetUrl,
)> {
    match auth {
        Auth::OAuth2(o) => o.token_url.as_ref().map(|u| (o, u)),
        _ => None,
    }
}

/// One cluster per `jwks_url` issuer ([`wire::jwks_cluster`]): TLS verified against the
/// issuer's `jwks_ca` or the system bundle, for the URL's host.
pub fn jwks_clusters(
    source: &Source,
    opts: &RenderOptions,
    files: &mut Vec<PathBuf>,
) -> Result<Vec<Value>, RenderError> {
    let mut out = Vec::new();
    let Some(callers) = &source.config.callers else {
        return Ok(out);
    };
    for (i, issuer) in callers.jwt.iter().enumerate() {
        let KeySource::JwksUrl { url, ca_cert } = &issuer.keys else {
            continue;
        };
        let url = TargetUrl::parse(url).map_err(|e| RenderError::CallerKey {
            issuer: issuer.issuer.clone(),
            reason: format!("jwks_url: {e}"),
        })?;
        let tls = TlsSettings {
            insecure_skip_verify: false,
            ca_cert: ca_cert.clone(),
            client_cert: None,
            server_name: url.host.clone(),
        };
        out.push(cluster(
            &wire::jwks_cluster(i),
            &format!("jwks_url of issuer {:?}", issuer.issuer),
            &url,
            Duration::from_millis(jwks::FETCH_TIMEOUT_MS),
            Some(&tls),
            source,
            opts,
            files,
        )?);
    }
    Ok(out)
}

/// Envoy's admin, so the egress listener can serve `endpoints.metrics`.
pub fn admin_cluster(admin: &ListenAddr) -> Value {
    let ip = if admin.ip.is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        admin.ip
    };
    json!({
        "name": super::listener::ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": super::listener::ADMIN_CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(&ListenAddr { ip, port: admin.port }) } }] }],
        },
    })
}

#[allow(clippy::too_many_arguments)]
fn cluster(
    name: &str,
    target: &str,
    url: &TargetUrl,
    timeout: Duration,
    tls: Option<&TlsSettings>,
    source: &Source,
    opts: &RenderOptions,
    files: &mut Vec<PathBuf>,
) -> Result<Value, RenderError> {
    let static_ip = url.host_is_ip();
    let mut c = json!({
        "name": name,
        "type": if static_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": envoy_duration(timeout.min(MAX_CONNECT_TIMEOUT)),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": url.host, "port_value": url.port },
            } } }] }],
        },
    });
    if !static_ip {
        c["dns_lookup_family"] = json!("V4_PREFERRED");
    }
    if let Some(tls) = tls {
        c["transport_socket"] = tls_socket(target, tls, source, opts, files)?;
    }
    Ok(c)
}

fn tls_socket(
    target: &str,
    tls: &TlsSettings,
    source: &Source,
    opts: &RenderOptions,
    files: &mut Vec<PathBuf>,
) -> Result<Value, RenderError> {
    let mut common = json!({});
    if !tls.insecure_skip_verify {
        let ca = match &tls.ca_cert {
            Some(p) => source.resolve(p),
            None => opts
                .system_ca
                .clone()
                .ok_or_else(|| RenderError::NoCaBundle {
                    target: target.to_string(),
                })?,
        };
        files.push(ca.clone());
        let san_type = if tls.server_name.parse::<std::net::IpAddr>().is_ok() {
            "IP_ADDRESS"
        } else {
            "DNS"
        };
        common["validation_context"] = json!({
            "trusted_ca": { "filename": ca.display().to_string() },
            "match_typed_subject_alt_names": [{ "san_type": san_type, "matcher": { "exact": tls.server_name } }],
        });
    }
    if let Some(cc) = &tls.client_cert {
        let cert = source.resolve(&cc.cert);
        let key = source.resolve(&cc.key);
        files.push(cert.clone());
        files.push(key.clone());
        common["tls_certificates"] = json!([{
            "certificate_chain": { "filename": cert.display().to_string() },
            "private_key": { "filename": key.display().to_string() },
        }]);
    }
    let mut ctx = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": common,
    });
    if tls.server_name.parse::<std::net::IpAddr>().is_err() {
        ctx["sni"] = json!(tls.server_name);
    }
    Ok(json!({ "name": "envoy.transport_sockets.tls", "typed_config": ctx }))
}
