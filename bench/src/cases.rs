//! The eighteen cases and their Envoy configs: cases 1–4 and 11 rendered by [`native`] (JSON
//! bootstraps), the others by `egressctl compile --engine wasm|auto` of egress configs written
//! here (what cases 8–10 add to the API-key config lives in `auth_cases`). Cases 5–10 and 12
//! are the `wasm` engine, 13–16 the `auto` engine (issue 11). Cases 17 and 18 are cases 2 and
//! 4 with the request log line the `auto` engine renders grafted on ([`log_line`]).

pub mod log_line;
mod native;

pub use native::native_bootstrap;

use crate::auth_cases;
use crate::procs::output;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The API key every API-key case injects (the upstream echoes it back for the sanity check).
pub const API_KEY: &str = "bench-api-key";
/// The OAuth2 client of cases 3 and 6 (the stand-in accepts any).
const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-client-secret";
/// Routes of cases 7 and 16, spread over this many targets.
pub const MANY_ROUTES: usize = 10_000;
pub const MANY_ROUTES_TARGETS: usize = 10;
/// Routes of cases 12 and 15 (what 10,000 routes are compared with), one target each.
pub const FEW_ROUTES: usize = 6;
/// The path every case but 7 is measured with; the upstream gets `/v1/items/42`.
const PATH: &str = "/egress/api/v1/items/42";
const UPSTREAM_PATH: &str = "/v1/items/42";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Route with `prefix_rewrite`, no filter: the limit.
    Limit,
    /// `envoy.filters.http.credential_injector` with the generic credential (API key header).
    NativeGeneric,
    /// The native injector with its OAuth2 client-credentials extension.
    NativeOauth2,
    /// The minimal proxy-wasm module (`bench/floor-module`).
    Floor,
    /// Our filter, API key target.
    OursApiKey,
    /// Our filter, OAuth2 target (token cached).
    OursOauth2,
    /// Our filter, 10,000 routes.
    OursManyRoutes,
    /// Our filter, 6 routes (the request hits the last one, as in the 10,000-route cases).
    OursFewRoutes,
    /// Our filter, API key target, callers verified by mTLS (a SPIFFE ID in the client
    /// certificate wrk presents, through `bench/wrk-client-cert`).
    OursMtlsCallers,
    /// Our filter, API key target, callers verified by an HS256 JWT (cached: same token).
    OursJwtCached,
    /// Our filter, AWS SigV4 target (static keys, payload unsigned).
    OursSigv4,
    /// Case 1 behind the TLS listener of case 8: what TLS with client certificates costs.
    LimitMtls,
    /// Case 2 plus the spec's request log line as the `auto` engine writes it for a native
    /// leaf ([`log_line`]).
    NativeGenericLogged,
    /// Case 4 plus the same log line parts.
    FloorLogged,
}

impl Kind {
    /// The case a `*Logged` kind adds the log line to.
    pub fn without_log_line(self) -> Option<Kind> {
        match self {
            Kind::NativeGenericLogged => Some(Kind::NativeGeneric),
            Kind::FloorLogged => Some(Kind::Floor),
            _ => None,
        }
    }
}

/// Which `egressctl compile --engine` renders a case of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineSel {
    /// The filter routes, rewrites and injects every request.
    Wasm,
    /// Envoy routes natively; the filter only where it adds something (issue 11).
    Auto,
}

impl EngineSel {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineSel::Wasm => "wasm",
            EngineSel::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Case {
    /// 1-based, as in the issue.
    pub id: usize,
    pub kind: Kind,
    /// `None`: a case without our filter (Envoy alone, native filters, the floor).
    pub engine: Option<EngineSel>,
    /// A short label for the chart.
    pub label: &'static str,
    /// One line for the table.
    pub what: &'static str,
}

impl Case {
    pub fn all() -> Vec<Case> {
        use Kind::*;
        let c = |id, kind: Kind, label, what| Case {
            id,
            kind,
            engine: match kind {
                Limit | NativeGeneric | NativeOauth2 | Floor | LimitMtls | NativeGenericLogged
                | FloorLogged => None,
                _ if id >= 13 => Some(EngineSel::Auto),
                _ => Some(EngineSel::Wasm),
            },
            label,
            what,
        };
        vec![
            c(
                1,
                Limit,
                "1 envoy",
                "Envoy, route with `prefix_rewrite`, no credential (the limit)",
            ),
            c(
                2,
                NativeGeneric,
                "2 native key",
                "native `credential_injector`, generic (API key header, SDS secret)",
            ),
            c(
                3,
                NativeOauth2,
                "3 native oauth",
                "native `credential_injector`, OAuth2 client credentials (token cached)",
            ),
            c(
                4,
                Floor,
                "4 wasm floor",
                "minimal proxy-wasm module: reads `:path`, sets one header",
            ),
            c(5, OursApiKey, "5 ours key", "egress filter, API key target"),
            c(
                6,
                OursOauth2,
                "6 ours oauth",
                "egress filter, OAuth2 target (token cached)",
            ),
            c(
                7,
                OursManyRoutes,
                "7 ours 10k",
                "egress filter, 10,000 routes (request hits the last one)",
            ),
            c(
                8,
                OursMtlsCallers,
                "8 ours mTLS",
                "egress filter, API key target, callers by mTLS (client certificate with an allowed SPIFFE ID)",
            ),
            c(
                9,
                OursJwtCached,
                "9 ours JWT",
                "egress filter, API key target, callers by JWT (HS256, same token: cache hit)",
            ),
            c(
                10,
                OursSigv4,
                "10 ours SigV4",
                "egress filter, AWS SigV4 target (static keys, payload unsigned)",
            ),
            c(
                11,
                LimitMtls,
                "11 envoy mTLS",
                "case 1 behind case 8's TLS listener (client certificate required): TLS alone, no filter",
            ),
            c(
                12,
                OursFewRoutes,
                "12 wasm 6 routes",
                "egress filter (`wasm` engine), 6 routes (request hits the last one)",
            ),
            c(
                13,
                OursApiKey,
                "13 auto key",
                "`auto` engine, API key target",
            ),
            c(
                14,
                OursOauth2,
                "14 auto oauth",
                "`auto` engine, OAuth2 target (token cached)",
            ),
            c(
                15,
                OursFewRoutes,
                "15 auto 6 routes",
                "`auto` engine, 6 routes (request hits the last one)",
            ),
            c(
                16,
                OursManyRoutes,
                "16 auto 10k",
                "`auto` engine, 10,000 routes (request hits the last one)",
            ),
            c(
                17,
                NativeGenericLogged,
                "17 native key+log",
                "case 2 + the spec's log line as `auto` writes it for a native leaf (its `set_filter_state` filter, route metadata; one logger, the cheapest form)",
            ),
            c(
                18,
                FloorLogged,
                "18 wasm floor+log",
                "case 4 + the same log line parts as case 17",
            ),
        ]
    }

    /// The request path wrk sends.
    pub fn path(&self) -> String {
        match self.kind {
            Kind::OursManyRoutes => format!(
                "/egress/{}/v1/items/42",
                many_route_segment(MANY_ROUTES - 1)
            ),
            Kind::OursFewRoutes => {
                format!("/egress/{}/v1/items/42", many_route_segment(FEW_ROUTES - 1))
            }
            _ => PATH.to_owned(),
        }
    }

    /// Whether the upstream's echo (`<uri> key=<x-api-key> auth=<authorization>`) shows this
    /// case's rewrite and credential.
    pub fn upstream_saw_credential(&self, echo: &str) -> bool {
        let Some(rest) = echo.trim().strip_prefix(UPSTREAM_PATH) else {
            return false;
        };
        let key = format!(" key={API_KEY} auth=");
        match self.kind {
            Kind::Limit | Kind::LimitMtls => rest == " key= auth=",
            // Case 9: the caller's JWT must not reach the upstream (`auth=` empty).
            Kind::NativeGeneric
            | Kind::Floor
            | Kind::NativeGenericLogged
            | Kind::FloorLogged
            | Kind::OursApiKey
            | Kind::OursManyRoutes
            | Kind::OursFewRoutes
            | Kind::OursMtlsCallers
            | Kind::OursJwtCached => rest == key,
            Kind::OursSigv4 => rest
                .strip_prefix(" key= auth=")
                .is_some_and(auth_cases::is_sigv4),
            Kind::NativeOauth2 | Kind::OursOauth2 => rest
                .strip_prefix(" key= auth=Bearer ")
                .is_some_and(|token| token.starts_with("tokens-token-")),
        }
    }

    pub fn uses_token_server(&self) -> bool {
        matches!(self.kind, Kind::NativeOauth2 | Kind::OursOauth2)
    }

    /// Whether this case's listener speaks TLS and wants the load's client certificate.
    pub fn uses_client_cert(&self) -> bool {
        matches!(self.kind, Kind::OursMtlsCallers | Kind::LimitMtls)
    }

    /// Header lines every request of this case carries.
    pub fn headers(&self, setup: &Setup) -> Vec<String> {
        match self.kind {
            Kind::OursJwtCached => vec![format!("Authorization: Bearer {}", setup.jwt)],
            _ => Vec::new(),
        }
    }
}

/// Route `i` of case 7: `svc00000` … `svc09999` (one segment, as `api` in the other cases).
fn many_route_segment(i: usize) -> String {
    format!("svc{i:05}")
}

/// Everything the configs point at.
#[derive(Debug, Clone)]
pub struct Setup {
    pub egressctl: PathBuf,
    pub filter_wasm: PathBuf,
    pub floor_wasm: PathBuf,
    pub upstream_port: u16,
    pub token_port: u16,
    /// The callers' PKI of case 8 (`auth_cases::make_pki`).
    pub pki: PathBuf,
    /// The JWT case 9's requests carry.
    pub jwt: String,
}

/// A case's Envoy config, ready to run.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub envoy_config: PathBuf,
    pub listen: u16,
    pub admin: u16,
}

/// Writes the case's config under `dir` and returns the bootstrap to run.
pub fn render(case: &Case, setup: &Setup, dir: &Path, listen: u16, admin: u16) -> Result<Rendered> {
    fs::create_dir_all(dir)?;
    let envoy_config = match case.kind {
        Kind::Limit | Kind::NativeGeneric | Kind::NativeOauth2 | Kind::Floor | Kind::LimitMtls => {
            let path = dir.join("envoy.json");
            let bootstrap = native_bootstrap(case.kind, setup, listen, admin);
            fs::write(&path, serde_json::to_string_pretty(&bootstrap)?)?;
            path
        }
        Kind::NativeGenericLogged | Kind::FloorLogged => {
            let base = case.kind.without_log_line().unwrap_or(case.kind);
            let parts = log_line::compiled_log_parts(setup, &dir.join("auto"), listen, admin)?;
            let mut bootstrap = native_bootstrap(base, setup, listen, admin);
            log_line::graft(&mut bootstrap, &parts)
                .with_context(|| format!("case {}: grafting the log line", case.id))?;
            let path = dir.join("envoy.json");
            fs::write(&path, serde_json::to_string_pretty(&bootstrap)?)?;
            path
        }
        Kind::OursApiKey
        | Kind::OursOauth2
        | Kind::OursManyRoutes
        | Kind::OursFewRoutes
        | Kind::OursMtlsCallers
        | Kind::OursJwtCached
        | Kind::OursSigv4 => {
            let config = dir.join("egress.yaml");
            fs::write(&config, egress_config(case.kind, setup, listen))?;
            let engine = case.engine.unwrap_or(EngineSel::Wasm);
            compile(setup, &config, &dir.join("out"), admin, engine)?;
            dir.join("out/envoy.yaml")
        }
    };
    Ok(Rendered {
        envoy_config,
        listen,
        admin,
    })
}

/// Cases 5–10: the egress config (`egressctl` YAML). Request lines go to /dev/null (they are
/// still formatted and written: that is part of what the filter costs).
pub fn egress_config(kind: Kind, setup: &Setup, listen: u16) -> String {
    let upstream = format!("http://127.0.0.1:{}", setup.upstream_port);
    let mut targets = String::new();
    let mut routes = String::new();
    let mut callers = String::new();
    match kind {
        Kind::OursOauth2 => {
            targets.push_str(&format!(
                "    api:\n      url: \"{upstream}\"\n      auth:\n        type: oauth2_client_credentials\n        \
                 token_url: \"http://127.0.0.1:{}/token\"\n        client_id: {CLIENT_ID}\n        \
                 client_secret: {CLIENT_SECRET}\n",
                setup.token_port
            ));
            routes.push_str(&route("/egress/api", "api"));
        }
        Kind::OursManyRoutes | Kind::OursFewRoutes => {
            let (count, target_count) = if kind == Kind::OursManyRoutes {
                (MANY_ROUTES, MANY_ROUTES_TARGETS)
            } else {
                (FEW_ROUTES, FEW_ROUTES)
            };
            for t in 0..target_count {
                targets.push_str(&api_key_target(&format!("t{t}"), &upstream));
            }
            // Route i goes to target i / (routes per target): the last route to the last target.
            let per_target = count.div_ceil(target_count);
            for i in 0..count {
                let prefix = format!("/egress/{}", many_route_segment(i));
                routes.push_str(&route(&prefix, &format!("t{}", i / per_target)));
            }
        }
        Kind::OursMtlsCallers => {
            callers = auth_cases::mtls_callers(&setup.pki);
            targets.push_str(&api_key_target("api", &upstream));
            targets.push_str(&auth_cases::allow_spiffe());
            routes.push_str(&route("/egress/api", "api"));
        }
        Kind::OursJwtCached => {
            callers = auth_cases::jwt_callers();
            targets.push_str(&api_key_target("api", &upstream));
            targets.push_str(&auth_cases::allow_role());
            routes.push_str(&route("/egress/api", "api"));
        }
        Kind::OursSigv4 => {
            targets.push_str(&auth_cases::sigv4_target("api", &upstream));
            routes.push_str(&route("/egress/api", "api"));
        }
        _ => {
            targets.push_str(&api_key_target("api", &upstream));
            routes.push_str(&route("/egress/api", "api"));
        }
    }
    format!(
        "# Written by egress-bench.\nhttp:\n  addr: \"127.0.0.1:{listen}\"\n\negress:\n  enabled: true\n\
         {callers}  targets:\n{targets}  routes:\n{routes}\nlogger:\n  level: info\n  format: json\n  output: /dev/null\n"
    )
}

fn api_key_target(name: &str, url: &str) -> String {
    format!(
        "    {name}:\n      url: \"{url}\"\n      auth:\n        type: api_key\n        \
         header: X-API-Key\n        key: {API_KEY}\n"
    )
}

fn route(prefix: &str, target: &str) -> String {
    format!("    - path_prefix: \"{prefix}\"\n      target: {target}\n      strip_prefix: \"{prefix}\"\n")
}

/// `egressctl compile CONFIG --out DIR --admin 127.0.0.1:ADMIN --wasm WASM --engine ENGINE`;
/// returns how long it took.
pub fn compile(
    setup: &Setup,
    config: &Path,
    out: &Path,
    admin: u16,
    engine: EngineSel,
) -> Result<Duration> {
    let mut cmd = Command::new(&setup.egressctl);
    cmd.arg("compile").arg(config).arg("--out").arg(out);
    cmd.arg("--engine").arg(engine.as_str());
    cmd.arg("--admin").arg(format!("127.0.0.1:{admin}"));
    cmd.arg("--wasm").arg(&setup.filter_wasm);
    let start = Instant::now();
    output(cmd).with_context(|| format!("egressctl compile {}", config.display()))?;
    let took = start.elapsed();
    if !out.join("envoy.yaml").is_file() {
        bail!(
            "egressctl compile wrote no {}",
            out.join("envoy.yaml").display()
        );
    }
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_setup() -> Setup {
        Setup {
            egressctl: PathBuf::new(),
            filter_wasm: PathBuf::new(),
            floor_wasm: PathBuf::new(),
            upstream_port: 1,
            token_port: 2,
            pki: PathBuf::from("/pki"),
            jwt: "h.p.s".into(),
        }
    }

    #[test]
    fn echo_check_matches_each_case() {
        let cases = Case::all();
        let limit = &cases[0];
        let key = &cases[1];
        let oauth = &cases[5];
        assert!(limit.upstream_saw_credential("/v1/items/42 key= auth=\n"));
        assert!(!limit.upstream_saw_credential("/egress/api/v1/items/42 key= auth=\n"));
        assert!(key.upstream_saw_credential("/v1/items/42 key=bench-api-key auth=\n"));
        assert!(!key.upstream_saw_credential("/v1/items/42 key= auth=\n"));
        assert!(oauth.upstream_saw_credential("/v1/items/42 key= auth=Bearer tokens-token-1\n"));
        assert!(!oauth.upstream_saw_credential("/v1/items/42 key= auth=\n"));
        // Cases 17 and 18 inject as cases 2 and 4 do (the log line changes no request).
        for logged in &cases[16..18] {
            assert!(logged.upstream_saw_credential("/v1/items/42 key=bench-api-key auth=\n"));
            assert!(!logged.upstream_saw_credential("/v1/items/42 key= auth=\n"));
            assert!(!logged
                .upstream_saw_credential("/egress/api/v1/items/42 key=bench-api-key auth=\n"));
            assert_eq!(logged.path(), key.path());
        }
    }

    #[test]
    fn many_routes_config_has_every_route_and_the_measured_one_last() {
        let setup = test_setup();
        let yaml = egress_config(Kind::OursManyRoutes, &setup, 3);
        assert_eq!(yaml.matches("- path_prefix:").count(), MANY_ROUTES);
        assert!(yaml.contains("path_prefix: \"/egress/svc09999\"\n      target: t9\n"));
        let case = &Case::all()[6];
        assert_eq!(case.path(), "/egress/svc09999/v1/items/42");
    }

    #[test]
    fn few_routes_config_mirrors_the_many_routes_one() {
        let yaml = egress_config(Kind::OursFewRoutes, &test_setup(), 3);
        assert_eq!(yaml.matches("- path_prefix:").count(), FEW_ROUTES);
        assert!(yaml.contains("path_prefix: \"/egress/svc00005\"\n      target: t5\n"));
        let case = Case::all().into_iter().find(|c| c.id == 15).unwrap();
        assert_eq!(case.path(), "/egress/svc00005/v1/items/42");
    }

    #[test]
    fn engines_per_case() {
        let engine = |id: usize| {
            Case::all()
                .into_iter()
                .find(|c| c.id == id)
                .and_then(|c| c.engine)
        };
        for id in [1, 2, 3, 4, 11] {
            assert_eq!(engine(id), None, "case {id}");
        }
        for id in 5..=10 {
            assert_eq!(engine(id), Some(EngineSel::Wasm), "case {id}");
        }
        assert_eq!(engine(12), Some(EngineSel::Wasm));
        for id in 13..=16 {
            assert_eq!(engine(id), Some(EngineSel::Auto), "case {id}");
        }
        for id in [17, 18] {
            assert_eq!(engine(id), None, "case {id}");
        }
        let ids: Vec<usize> = Case::all().iter().map(|c| c.id).collect();
        assert_eq!(ids, (1..=18).collect::<Vec<_>>());
    }
}
