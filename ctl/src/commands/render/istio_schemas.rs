//! Istio's CRD schemas, run inside `egressctl`.
//!
//! The registry package with them, npm `@kubernetes-models/istio`, ships Istio's CRD schemas
//! (`crd-all.gen.yaml`, openAPIV3Schema) only as the JavaScript validators ajv compiled from
//! them, not as JSON Schema. `ctl/schemas/generate-istio.sh` bundles the validators of the
//! kinds `render istio` emits, unchanged, with their runtime (formats, English messages), into
//! `ctl/schemas/istio/validators.js` (see its SOURCE file; a test regenerates it from the
//! pinned package and compares). Here it runs in QuickJS (the `rquickjs` crate), so the
//! verdict is exactly that package's: same code, same schema. The CRD schemas do not forbid
//! unknown fields (the API server prunes them, or refuses them under strict field
//! validation), so the bundle also refuses any field the kind's type declarations in that
//! package (generated from the same schemas) do not have; fields the CRD leaves open
//! (`x-kubernetes-preserve-unknown-fields`, e.g. WasmPlugin's `pluginConfig`) stay open.
//!
//! TrafficExtension has no schema in that package (its Istio 1.29 CRDs predate it): only its
//! `spec.wasm` is checked, against the WasmPlugin fields of the same names (the fields
//! `render` writes there are WasmPlugin's); the rest of it is unchecked.

use rquickjs::{Context, Ctx, Function, Runtime};
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::OnceCell;

const BUNDLE: &str = include_str!("../../../schemas/istio/validators.js");
const SOURCE_FILE: &str = include_str!("../../../schemas/istio/SOURCE");

/// Where the validators come from (the first line of their SOURCE file), for messages.
pub fn source() -> &'static str {
    SOURCE_FILE
        .lines()
        .next()
        .unwrap_or("npm @kubernetes-models/istio")
}

pub const TRAFFIC_EXTENSION: (&str, &str) = ("extensions.istio.io/v1alpha1", "TrafficExtension");
const WASM_PLUGIN: (&str, &str) = ("extensions.istio.io/v1alpha1", "WasmPlugin");

/// The engine or the embedded script failed (never the object: that is a problem list).
#[derive(Debug, thiserror::Error)]
#[error("the embedded Istio validators ({}) {what}: {detail}", source())]
pub struct EngineError {
    what: &'static str,
    detail: String,
}

#[derive(Deserialize)]
struct Problem {
    path: String,
    message: String,
}

struct Engine {
    ctx: Context,
    kinds: Vec<(String, String)>,
}

/// The script's exception (or the engine's error) as text.
fn describe(ctx: &Ctx<'_>, e: rquickjs::Error) -> String {
    if e.is_exception() {
        let ex = ctx.catch();
        if let Some(ex) = ex.as_exception() {
            return format!(
                "{} {}",
                ex.message().unwrap_or_default(),
                ex.stack().unwrap_or_default()
            );
        }
        return format!("{ex:?}");
    }
    e.to_string()
}

impl Engine {
    fn load() -> Result<Self, EngineError> {
        let fail = |what| {
            move |e: rquickjs::Error| EngineError {
                what,
                detail: e.to_string(),
            }
        };
        let rt = Runtime::new().map_err(fail("cannot start QuickJS"))?;
        rt.set_memory_limit(256 << 20);
        // Well under the smallest native stack it runs on (2 MiB: Rust's spawned threads),
        // so QuickJS throws before the thread overflows.
        rt.set_max_stack_size(1 << 20);
        let ctx = Context::full(&rt).map_err(fail("cannot start QuickJS"))?;
        let kinds = ctx.with(|ctx| {
            let r = ctx.eval::<(), _>(BUNDLE).and_then(|()| {
                let f: Function = ctx.globals().get("egressIstioKinds")?;
                f.call::<_, String>(())
            });
            r.map_err(|e| EngineError {
                what: "do not load",
                detail: describe(&ctx, e),
            })
        })?;
        let kinds = kinds
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, k)| (a.to_string(), k.to_string()))
            .collect();
        Ok(Self { ctx, kinds })
    }

    /// `None`: no validator for this kind. Else every problem (empty: valid).
    fn run(
        &self,
        api: &str,
        kind: &str,
        object: &Value,
    ) -> Result<Option<Vec<Problem>>, EngineError> {
        let text = self.ctx.with(|ctx| {
            let r = ctx
                .globals()
                .get::<_, Function>("egressIstioValidate")
                .and_then(|f| f.call::<_, Option<String>>((api, kind, object.to_string())));
            r.map_err(|e| EngineError {
                what: "failed",
                detail: describe(&ctx, e),
            })
        })?;
        let Some(text) = text else { return Ok(None) };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EngineError {
                what: "answered something else than problems",
                detail: e.to_string(),
            })
    }
}

thread_local! {
    static ENGINE: OnceCell<Result<Engine, EngineError>> = const { OnceCell::new() };
}

fn with_engine<R>(f: impl FnOnce(&Engine) -> Result<R, EngineError>) -> Result<R, EngineError> {
    ENGINE.with(|cell| match cell.get_or_init(Engine::load) {
        Ok(e) => f(e),
        Err(e) => Err(EngineError {
            what: e.what,
            detail: e.detail.clone(),
        }),
    })
}

/// The (apiVersion, kind) pairs the embedded validators check.
pub fn kinds() -> Result<Vec<(String, String)>, EngineError> {
    with_engine(|e| Ok(e.kinds.clone()))
}

fn format(problems: Vec<Problem>, path: impl Fn(&str) -> String, note: &str) -> Vec<String> {
    problems
        .into_iter()
        .map(|p| {
            let at = path(&p.path);
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("{at}: {}{note} (schema {})", p.message, source())
        })
        .collect()
}

/// `None`: the kind has no validator here. Else every way `object` fails its kind's CRD
/// schema, each with the field path (empty: it passes).
pub fn validate(object: &Value) -> Option<Vec<String>> {
    let api = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    if (api, kind) != TRAFFIC_EXTENSION {
        return match with_engine(|e| e.run(api, kind, object)) {
            Ok(None) => None,
            Ok(Some(p)) => Some(format(p, str::to_string, "")),
            Err(e) => Some(vec![e.to_string()]),
        };
    }
    // TrafficExtension: only spec.wasm, as the WasmPlugin spec fields of the same names.
    let Some(wasm) = object["spec"]["wasm"].as_object() else {
        return Some(vec!["/spec/wasm: missing or not an object".to_string()]);
    };
    let plugin = json!({ "apiVersion": WASM_PLUGIN.0, "kind": WASM_PLUGIN.1,
                         "metadata": object["metadata"], "spec": wasm });
    let path = |p: &str| match p.strip_prefix("/spec") {
        Some(rest) => format!("/spec/wasm{rest}"),
        None => p.to_string(),
    };
    match with_engine(|e| e.run(WASM_PLUGIN.0, WASM_PLUGIN.1, &plugin)) {
        Ok(p) => Some(format(
            p.unwrap_or_default(),
            path,
            " (checked as the WasmPlugin field of that name)",
        )),
        Err(e) => Some(vec![e.to_string()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::render::objects::{check, Object};

    fn service_entry() -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": { "name": "egress-crm", "namespace": "istio-system" },
            "spec": { "hosts": ["crm.example.com"], "location": "MESH_EXTERNAL", "resolution": "DNS",
                      "ports": [{ "number": 443, "name": "http", "protocol": "HTTP" }] },
        })
    }

    fn wasm_plugin() -> Value {
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": { "name": "egress", "namespace": "istio-system" },
            "spec": { "selector": { "matchLabels": { "istio": "egressgateway" } },
                      "url": "oci://r.example.com/f@sha256:00", "phase": "AUTHN",
                      "failStrategy": "FAIL_CLOSE", "pluginConfig": { "any": ["thing"] },
                      "vmConfig": { "env": [{ "name": "A", "valueFrom": "HOST" }] } },
        })
    }

    #[test]
    fn the_validators_load_and_carry_every_kind_render_istio_emits() {
        let ks = kinds().unwrap();
        for k in [
            "WasmPlugin",
            "ServiceEntry",
            "DestinationRule",
            "VirtualService",
            "Gateway",
        ] {
            assert!(ks.iter().any(|(_, kind)| kind == k), "{k}: {ks:?}");
        }
        assert!(
            source().starts_with("npm @kubernetes-models/istio@"),
            "{}",
            source()
        );
    }

    #[test]
    fn valid_objects_pass_and_other_kinds_are_not_ours() {
        assert_eq!(validate(&service_entry()), Some(vec![]));
        assert_eq!(validate(&wasm_plugin()), Some(vec![]));
        assert_eq!(
            validate(&json!({ "apiVersion": "v1", "kind": "Secret" })),
            None
        );
    }

    #[test]
    fn a_broken_service_entry_is_refused_with_the_object_and_field_paths() {
        let mut se = service_entry();
        se["spec"]["resolution"] = json!("DNS_PLEASE");
        se["spec"]["ports"][0]["number"] = json!("443");
        let p = check(&[Object::new(se)]).join("\n");
        assert!(
            p.contains("ServiceEntry egress-crm: fails its published schema at /spec/resolution: must be equal to one of the allowed values: NONE, STATIC, DNS"),
            "{p}"
        );
        assert!(p.contains("/spec/ports/0/number: must be integer"), "{p}");
        assert!(p.contains("@kubernetes-models/istio@3.0.1"), "{p}");
    }

    #[test]
    fn a_broken_wasm_plugin_is_refused_with_the_field_path() {
        let mut wp = wasm_plugin();
        wp["spec"]["failStrategy"] = json!("FAIL_SOMETIMES");
        wp["spec"]["vmConfig"]["env"][0]["valueFrom"] = json!("SECRET");
        let p = validate(&wp).unwrap().join("\n");
        assert!(
            p.contains("/spec/failStrategy: must be equal to one of the allowed values"),
            "{p}"
        );
        assert!(p.contains("/spec/vmConfig/env/0/valueFrom"), "{p}");
        // A oneOf of the CRD: a Gateway server's port needs a number.
        let gw = json!({ "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": { "name": "g" },
            "spec": { "servers": [{ "port": { "name": "http", "protocol": "HTTP" }, "hosts": ["a"] }] } });
        let p = validate(&gw).unwrap().join("\n");
        assert!(p.contains("/spec/servers/0/port"), "{p}");
    }

    #[test]
    fn unknown_fields_are_refused_except_where_the_crd_leaves_them_open() {
        let dr = json!({ "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": { "name": "d", "labelz": {} },
            "spec": { "host": "a.example.com",
                      "trafficPolicy": { "tls": { "mode": "SIMPLE", "sniName": "a" } } } });
        let p = validate(&dr).unwrap().join("\n");
        assert!(
            p.contains("/spec/trafficPolicy/tls/sniName: unknown field"),
            "{p}"
        );
        assert!(p.contains("/metadata/labelz: unknown field"), "{p}");
        // Maps take any key; pluginConfig (preserve-unknown-fields) any shape.
        let mut wp = wasm_plugin();
        wp["metadata"]["labels"] = json!({ "a.example/b~c": "d" });
        wp["spec"]["pluginConfig"] = json!({ "targets": [{ "deep": { "x": 1 } }] });
        assert_eq!(validate(&wp), Some(vec![]));
        wp["spec"]["vmConfig"]["env"][0]["valuefrom"] = json!("HOST");
        let p = validate(&wp).unwrap().join("\n");
        assert!(
            p.contains("/spec/vmConfig/env/0/valuefrom: unknown field"),
            "{p}"
        );
    }

    #[test]
    fn traffic_extension_is_checked_on_its_wasm_fields_only() {
        let mut te = json!({
            "apiVersion": TRAFFIC_EXTENSION.0, "kind": TRAFFIC_EXTENSION.1,
            "metadata": { "name": "egress" },
            "spec": { "selector": { "matchLabels": { "a": "b" } }, "phase": "ANYTHING",
                      "wasm": { "url": "oci://r/f@sha256:00", "imagePullPolicy": "IfNotPresent" } },
        });
        assert_eq!(validate(&te), Some(vec![]));
        te["spec"]["wasm"]["imagePullPolicy"] = json!("Sometimes");
        let p = validate(&te).unwrap().join("\n");
        assert!(
            p.contains("/spec/wasm/imagePullPolicy: must be equal to one of the allowed values"),
            "{p}"
        );
        assert!(p.contains("checked as the WasmPlugin field"), "{p}");
        te["spec"]["wasm"] = json!("x");
        assert!(!validate(&te).unwrap().is_empty());
    }
}
