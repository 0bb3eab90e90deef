//! The Envoy bootstraps of the cases without our filter (1–4 and 11), written here as JSON:
//! Envoy alone, the native `credential_injector` (generic and OAuth2) and the minimal
//! proxy-wasm module.

use super::{Kind, Setup, API_KEY, CLIENT_ID, CLIENT_SECRET};
use crate::auth_cases;
use serde_json::{json, Value};

fn socket(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket(port) } }] }]
        }
    })
}

fn generic_secret(name: &str, value: &str) -> Value {
    json!({ "name": name, "generic_secret": { "secret": { "inline_string": value } } })
}

fn credential_injector(credential: Value) -> Value {
    json!({
        "name": "envoy.filters.http.credential_injector",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            "overwrite": true,
            "credential": credential
        }
    })
}

/// Cases 1–4 and 11: one listener, one route (`/egress/api/` rewritten to `/`) to the upstream,
/// the case's filter before the router (case 11: case 1 behind case 8's TLS listener).
/// Connection manager settings as `egressctl` renders them (codec AUTO, no path normalization
/// or slash merging, router without `x-envoy-*` headers).
pub fn native_bootstrap(kind: Kind, setup: &Setup, listen: u16, admin: u16) -> Value {
    let mut filters = Vec::new();
    let mut clusters = vec![static_cluster("upstream", setup.upstream_port)];
    let mut secrets = Vec::new();
    match kind {
        Kind::NativeGeneric => {
            secrets.push(generic_secret("bench-api-key", API_KEY));
            filters.push(credential_injector(json!({
                "name": "envoy.http.injected_credentials.generic",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic",
                    "credential": { "name": "bench-api-key" },
                    "header": "x-api-key"
                }
            })));
        }
        Kind::NativeOauth2 => {
            secrets.push(generic_secret("bench-client-secret", CLIENT_SECRET));
            clusters.push(static_cluster("token", setup.token_port));
            filters.push(credential_injector(json!({
                "name": "envoy.http.injected_credentials.oauth2",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.oauth2.v3.OAuth2",
                    "token_endpoint": {
                        "cluster": "token",
                        "timeout": "5s",
                        "uri": format!("http://127.0.0.1:{}/token", setup.token_port)
                    },
                    "client_credentials": {
                        "client_id": CLIENT_ID,
                        "client_secret": { "name": "bench-client-secret" }
                    }
                }
            })));
        }
        Kind::Floor => filters.push(json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "floor",
                    "root_id": "floor",
                    "fail_open": false,
                    "vm_config": {
                        "vm_id": "floor",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": { "local": { "filename": setup.floor_wasm.display().to_string() } }
                    }
                }
            }
        })),
        _ => {}
    }
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            "suppress_envoy_headers": true
        }
    }));
    let mut bootstrap = json!({
        "admin": { "address": socket(admin) },
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": socket(listen),
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "codec_type": "AUTO",
                        "merge_slashes": false,
                        "normalize_path": false,
                        "route_config": {
                            "name": "bench",
                            "virtual_hosts": [{
                                "name": "bench",
                                "domains": ["*"],
                                "routes": [{
                                    "match": { "prefix": "/egress/api/" },
                                    "route": { "cluster": "upstream", "prefix_rewrite": "/", "timeout": "30s" }
                                }]
                            }]
                        },
                        "http_filters": filters
                    }
                }] }]
            }],
            "clusters": clusters,
            "secrets": secrets
        }
    });
    if kind == Kind::LimitMtls {
        bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] =
            auth_cases::listener_tls(&setup.pki);
    }
    bootstrap
}
