//! `egressctl render istio`: the filter on Istio's egress gateway.
//!
//! - the plugin (WasmPlugin or TrafficExtension) on the gateway's pods, the module pulled from
//!   the image pinned by digest, its config the filter config `compile` renders;
//! - mesh routing: a ServiceEntry makes `--host` resolvable, a VirtualService bound to `mesh`
//!   sends it to the egress gateway, a Gateway opens port 80 there;
//! - on the gateway, the filter picks the target (the `x-egress-target` header and the
//!   target's authority); a VirtualService routes each target to its ServiceEntry, whose
//!   DestinationRule originates TLS (client certificates from a `credentialName` Secret).
//!
//! Callers (`egress.callers`): with `mtls`, the gateway's server speaks Istio mutual TLS
//! (`ISTIO_MUTUAL`, and a DestinationRule makes the mesh's clients use it), so the filter reads
//! each caller's mesh SPIFFE ID; the `allow` blocks that name SPIFFE IDs only also become an
//! AuthorizationPolicy on the gateway ([`super::authz`]). The plugin runs in the `STATS` phase,
//! after Istio's authorization, so that policy sees the caller's path before the filter
//! rewrites it.

use super::authz;
use super::objects::{self, dns_part, label_pair, meta, Object};
use super::{
    credential_env_pairs, input, plugin_filter_config, refuse_inlined_credentials, IstioArgs,
    PluginKind,
};
use crate::exit::ExitCode;
use egress_core::config::{Auth, Target};
use egress_core::plan::wire;
use egress_core::target_url::Scheme;
use serde_json::{json, Value};

/// After Istio's authorization filters: the AuthorizationPolicy judges the request as the
/// caller sent it, before the filter rewrites its path.
const PHASE: &str = "STATS";

/// The gateway's port for callers (the Gateway server; the Service's port 80 targets it).
const GATEWAY_PORT: u16 = 8080;

pub fn run(a: &IstioArgs) -> anyhow::Result<ExitCode> {
    let inp = match input(&a.fleet)? {
        Ok(i) => i,
        Err(code) => return Ok(code),
    };
    let src = &inp.source;
    let mut reasons = Vec::new();
    for t in &src.config.targets {
        // Istio's gateway runs no token refresher and has no push listener: nothing could
        // bring a push-only credential to it (render k8s renders the refresher).
        match egress_core::build::push_only(&src.config, t) {
            Some(egress_core::build::PushOnly::HostFile { field, path }) => reasons.push(format!(
                "target {}: {} needs {field} ({path}), a file the filter cannot read: `egressctl token refresh` must fetch it and push, and Istio's gateway has no push listener nor refresher; use `render k8s`, which renders the refresher with the file mounted",
                t.name,
                t.auth.kind()
            )),
            _ if matches!(t.auth, Auth::OAuth2(_)) => reasons.push(format!(
                "target {}: {} needs the token endpoint clusters and the token push listener `compile` adds to Envoy; Istio's gateway has neither: use `render k8s` for OAuth2 targets",
                t.name,
                t.auth.kind()
            )),
            _ => {}
        }
    }
    let selector = match label_pair("--gateway-selector", &a.gateway_selector) {
        Ok(v) => v,
        Err(e) => {
            reasons.push(e.to_string());
            json!({})
        }
    };
    if !reasons.is_empty() {
        return Ok(objects::refuse(&reasons));
    }
    let filter_config = plugin_filter_config(src)?;
    let plugin_config = serde_json::to_value(&filter_config)?;
    if let Err(r) = refuse_inlined_credentials(src, &plugin_config.to_string()) {
        return Ok(objects::refuse(&r));
    }
    let ns = a
        .fleet
        .namespace
        .clone()
        .unwrap_or_else(|| "istio-system".into());
    let name = a.fleet.name.as_str();
    let gateway_name = format!("{name}-gateway");
    let mut objs = Vec::new();

    // The plugin.
    let env: Vec<Value> = credential_env_pairs(src)?
        .iter()
        .map(|(n, _)| json!({ "name": n, "valueFrom": "HOST" }))
        .collect();
    let hex = inp.digest.trim_start_matches("sha256:");
    let url = format!("oci://{}", inp.image_ref);
    let mut wasm = json!({
        "url": url,
        "sha256": hex,
        "imagePullPolicy": "IfNotPresent",
        "pluginName": "egress",
        "failStrategy": "FAIL_CLOSE",
        "pluginConfig": plugin_config,
        "vmConfig": { "env": env },
    });
    if env.is_empty() {
        if let Some(o) = wasm.as_object_mut() {
            o.remove("vmConfig");
        }
    }
    let plugin = match a.plugin_kind {
        PluginKind::WasmPlugin => {
            let mut spec = wasm;
            spec["selector"] = json!({ "matchLabels": selector });
            spec["phase"] = json!(PHASE);
            spec["match"] = json!([{ "mode": "SERVER", "ports": [{ "number": GATEWAY_PORT }] }]);
            json!({ "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
                    "metadata": meta(name, &ns, name), "spec": spec })
        }
        PluginKind::TrafficExtension => {
            if let Some(o) = wasm.as_object_mut() {
                o.remove("failStrategy");
            }
            json!({ "apiVersion": "extensions.istio.io/v1alpha1", "kind": "TrafficExtension",
                    "metadata": meta(name, &ns, name),
                    "spec": { "selector": { "matchLabels": selector }, "phase": PHASE, "wasm": wasm } })
        }
    };
    objs.push(Object::new(plugin));

    // From the mesh to the gateway.
    objs.push(Object::new(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": meta(&format!("{name}-entry"), &ns, name),
        "spec": {
            "hosts": [a.host],
            "location": "MESH_INTERNAL",
            "resolution": "DNS",
            "ports": [{ "number": 80, "name": "http", "protocol": "HTTP", "targetPort": 8080 }],
            "endpoints": [{ "address": a.gateway_service }],
        },
    })));
    objs.push(Object::new(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": meta(&format!("{name}-mesh"), &ns, name),
        "spec": {
            "hosts": [a.host],
            "gateways": ["mesh"],
            "http": [{ "name": "to-egress-gateway", "route": [{ "destination": { "host": a.gateway_service, "port": { "number": 80 } } }] }],
        },
    })));
    let mut hosts = vec![a.host.clone()];
    for t in &src.config.targets {
        if !hosts.contains(&t.url.host) {
            hosts.push(t.url.host.clone());
        }
    }
    let mutual = src
        .config
        .callers
        .as_ref()
        .is_some_and(|c| c.mtls.is_some());
    let server = if mutual {
        // The caller's mesh identity reaches the gateway (and the filter) only over Istio's
        // mutual TLS; the clients' sidecars use it for the gateway's Service.
        objs.push(Object::new(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": meta(&gateway_name, &ns, name),
            "spec": {
                "host": a.gateway_service,
                "trafficPolicy": { "portLevelSettings": [{
                    "port": { "number": 80 },
                    "tls": { "mode": "ISTIO_MUTUAL", "sni": a.host },
                }] },
            },
        })));
        json!({ "port": { "number": GATEWAY_PORT, "name": "https", "protocol": "HTTPS" },
                "tls": { "mode": "ISTIO_MUTUAL" }, "hosts": hosts })
    } else {
        json!({ "port": { "number": GATEWAY_PORT, "name": "http", "protocol": "HTTP" }, "hosts": hosts })
    };
    objs.push(Object::new(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": meta(&gateway_name, &ns, name),
        "spec": { "selector": selector, "servers": [server] },
    })));
    let authz = authz::istio_policy(&src.config, name, &ns, &selector, GATEWAY_PORT);
    for n in &authz.notes {
        eprintln!("egressctl: note: callers: {n}");
    }
    if let Some(p) = authz.policy {
        objs.push(Object::new(p));
    }

    // On the gateway: each target to its ServiceEntry.
    let mut routes = Vec::new();
    for t in &src.config.targets {
        routes.push(json!({
            "name": dns_part(&t.name),
            "match": [{ "headers": { wire::TARGET_HEADER: { "exact": t.name } } }],
            "route": [{ "destination": { "host": t.url.host, "port": { "number": t.url.port } } }],
            "timeout": duration(t.timeout),
            "headers": { "request": { "remove": [wire::TARGET_HEADER] } },
        }));
        objs.extend(target_objects(t, src, &ns, name)?);
    }
    routes.push(json!({
        "name": "no-target",
        "directResponse": { "status": 404, "body": { "string": "{\"error\":\"route_not_found\",\"message\":\"no egress route matches this path\"}" } },
    }));
    objs.push(Object::new(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": meta(&format!("{name}-targets"), &ns, name),
        "spec": { "hosts": hosts, "gateways": [gateway_name], "http": routes },
    })));
    objects::check_and_write(&objs, &a.fleet.out)
}

/// ServiceEntry and DestinationRule (and the client certificate Secret) for one target.
fn target_objects(
    t: &Target,
    src: &crate::source::Source,
    ns: &str,
    instance: &str,
) -> anyhow::Result<Vec<Object>> {
    let n = format!("{instance}-{}", dns_part(&t.name));
    let resolution = if t.url.host_is_ip() { "STATIC" } else { "DNS" };
    let mut se = json!({
        "hosts": [t.url.host],
        "location": "MESH_EXTERNAL",
        "resolution": resolution,
        "ports": [{ "number": t.url.port, "name": "http", "protocol": "HTTP" }],
    });
    if t.url.host_is_ip() {
        se["addresses"] = json!([t.url.host]);
        se["endpoints"] = json!([{ "address": t.url.host }]);
    }
    let mut out = vec![Object::new(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": meta(&n, ns, instance), "spec": se,
    }))];
    let Some(tls) = t.tls.as_ref().filter(|_| t.url.scheme == Scheme::Https) else {
        return Ok(out);
    };
    let mut tls_policy = json!({
        "mode": if tls.client_cert.is_some() { "MUTUAL" } else { "SIMPLE" },
        "sni": tls.server_name,
        "insecureSkipVerify": tls.insecure_skip_verify,
    });
    let mut data = serde_json::Map::new();
    if let Some(ca) = &tls.ca_cert {
        data.insert("ca.crt".into(), json!(read(src, ca)?));
    }
    if let Some(cc) = &tls.client_cert {
        data.insert("tls.crt".into(), json!(read(src, &cc.cert)?));
        data.insert("tls.key".into(), json!(read(src, &cc.key)?));
    }
    if !data.is_empty() {
        let secret = format!("{n}-tls");
        tls_policy["credentialName"] = json!(secret);
        out.push(Object::new(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": meta(&secret, ns, instance), "stringData": data,
        })));
    }
    out.push(Object::new(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": meta(&n, ns, instance),
        "spec": { "host": t.url.host, "trafficPolicy": { "tls": tls_policy } },
    })));
    Ok(out)
}

/// A protobuf JSON duration (`15s`, `0.250s`), the form Istio's fields take.
fn duration(d: std::time::Duration) -> String {
    match d.subsec_millis() {
        0 => format!("{}s", d.as_secs()),
        ms => format!("{}.{ms:03}s", d.as_secs()),
    }
}

fn read(src: &crate::source::Source, p: &str) -> anyhow::Result<String> {
    let path = src.resolve(p);
    std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
