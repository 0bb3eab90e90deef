//! `egress.callers` in the rendered Envoy config: the egress listener's TLS context (server
//! certificate, client CA, whether a client certificate is required) and the issuers' key
//! files read into the filter config (the filter has no file system).

use super::RenderError;
use crate::source::Source;
use egress_core::callers::jwt::Issuer;
use egress_core::callers::KeySource;
use egress_core::plan::FilterConfig;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The egress listener's `transport_socket` when `egress.callers.mtls` is set. Envoy verifies
/// every client certificate presented against `client_ca` (an unverified one fails the
/// handshake, whether or not certificates are required), so the URI SAN the filter reads
/// (`connection.uri_san_peer_certificate`) is always from a verified peer.
pub fn listener_tls(source: &Source, files: &mut Vec<PathBuf>) -> Option<Value> {
    let mtls = source.config.callers.as_ref()?.mtls.as_ref()?;
    let cert = source.resolve(&mtls.server_cert);
    let key = source.resolve(&mtls.server_key);
    let ca = source.resolve(&mtls.client_ca);
    files.extend([cert.clone(), key.clone(), ca.clone()]);
    Some(json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": mtls.require_client_cert,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": { "filename": cert.display().to_string() },
                    "private_key": { "filename": key.display().to_string() },
                }],
                "validation_context": {
                    "trusted_ca": { "filename": ca.display().to_string() },
                },
            },
        },
    }))
}

/// Puts the TLS context on the egress listener's filter chain.
pub fn secure_listener(listener: &mut Value, source: &Source, files: &mut Vec<PathBuf>) {
    if let Some(tls) = listener_tls(source, files) {
        if let Some(chain) = listener.get_mut("filter_chains").and_then(|c| c.get_mut(0)) {
            chain["transport_socket"] = tls;
        }
    }
}

/// Reads each issuer's `public_key` or `jwks_file` into the filter config and checks that the
/// keys build for the listed algorithms (the same check the filter makes at load).
pub fn attach_caller_keys(source: &Source, fc: &mut FilterConfig) -> Result<(), RenderError> {
    let Some(callers) = fc.callers.as_mut() else {
        return Ok(());
    };
    for issuer in &mut callers.jwt {
        let name = issuer.issuer.clone();
        let (file, slot) = match &mut issuer.keys {
            KeySource::PublicKey { file, pem } => (file.clone(), pem),
            KeySource::JwksFile { file, jwks } => (file.clone(), jwks),
            KeySource::Secret { .. } | KeySource::JwksUrl { .. } => continue,
        };
        let full = source.resolve(&file);
        let text = std::fs::read_to_string(&full).map_err(|e| RenderError::CallerKey {
            issuer: name.clone(),
            reason: format!("{}: {e}", full.display()),
        })?;
        *slot = Some(text);
        Issuer::new(issuer).map_err(|e| RenderError::CallerKey {
            issuer: name.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}
