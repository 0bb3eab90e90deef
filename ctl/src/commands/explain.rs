//! `egressctl explain CONFIG METHOD PATH`: what one request becomes, credentials redacted.

use super::load_or_report;
use crate::cli::{ExplainArgs, Format};
use crate::exit::ExitCode;
use egress_core::callers::allow::{explain_verdict, Verdict};
use egress_core::callers::{Caller, JwtCaller};
use egress_core::engine::{Decision, Engine};
use egress_core::native::{EngineChoice, LeafKind};
use egress_core::plan::FilterConfig;
use egress_core::routing::path::is_plain;
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one per `egressctl explain` run
pub enum Explanation {
    Forward {
        target: String,
        method: String,
        outgoing_url: String,
        /// The outgoing `:path`, query included.
        outgoing_path: String,
        credential: String,
        /// Header carrying the credential (value never shown).
        credential_header: Option<String>,
        /// Caller headers removed before the request leaves, as the engine's rules print
        /// (`x-envoy-*` is a prefix).
        removed_headers: Vec<String>,
        /// Headers the proxy sets, as the engine sets them (the credential `<redacted>`).
        set_headers: Vec<SetHeader>,
        /// With `egress.callers`: whether the given caller may use the route, and why.
        #[serde(skip_serializing_if = "Option::is_none")]
        caller: Option<CallerCheck>,
        /// What serves the route (`native`, `routed` or `filter`, see `egressctl routes`).
        engine: &'static str,
        /// Set when the proxy never fetches the credential: why, and who does
        /// ([`egress_core::build::push_only`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        push_only: Option<String>,
    },
    Reply {
        status: u16,
        error: String,
        body: String,
    },
    Ready,
    Passthrough,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SetHeader {
    pub name: String,
    pub value: String,
}

/// The engine's verdict on one caller for one route.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CallerCheck {
    pub allowed: bool,
    /// The refusal the proxy would send (401 or 403); absent when allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub reason: String,
}

/// The caller described on the command line; `None` when no identity was given.
pub fn caller_from(
    spiffe_id: Option<&str>,
    subject: Option<&str>,
    roles: Option<&[String]>,
) -> Option<Caller> {
    if spiffe_id.is_none() && subject.is_none() && roles.is_none() {
        return None;
    }
    Some(Caller {
        spiffe_id: spiffe_id.map(str::to_string),
        jwt: (subject.is_some() || roles.is_some()).then(|| JwtCaller {
            issuer: String::new(),
            subject: subject.unwrap_or_default().to_string(),
            roles: roles.map(<[String]>::to_vec).unwrap_or_default(),
        }),
    })
}

fn check(
    engine: &Engine,
    fwd: &egress_core::engine::Forward,
    caller: Option<&Caller>,
) -> Option<CallerCheck> {
    if !engine.has_callers() {
        return None;
    }
    let Some(caller) = caller else {
        return Some(CallerCheck {
            allowed: false,
            status: Some(401),
            reason: "no identity given: the proxy answers 401 unauthenticated (pass --spiffe-id, or --subject and --roles)".into(),
        });
    };
    let verdict = engine.verdict(fwd, caller);
    Some(CallerCheck {
        allowed: matches!(verdict, Verdict::Allowed { .. }),
        status: matches!(verdict, Verdict::Refused { .. }).then_some(403),
        reason: explain_verdict(&verdict),
    })
}

pub fn explain(engine: &Engine, method: &str, path: &str, caller: Option<&Caller>) -> Explanation {
    match engine.decide(method, path) {
        Decision::Forward(fwd) => {
            let Some(target) = engine.target(fwd.target) else {
                return Explanation::Passthrough;
            };
            // Both lists come from the engine: what the filter does is what is shown.
            let removed_headers = engine
                .remove_rules(fwd.target)
                .map(|r| r.to_string())
                .collect();
            let set_headers = engine
                .describe_set(&fwd)
                .into_iter()
                .map(|(name, value)| SetHeader { name, value })
                .collect();
            Explanation::Forward {
                target: target.name.clone(),
                method: method.to_string(),
                outgoing_url: fwd.target_url.clone(),
                outgoing_path: fwd.path.clone(),
                credential: match &target.sigv4 {
                    Some(c) if c.keys.is_none() => format!(
                        "{} (web_identity: push-only, signed with temporary credentials pushed by `egressctl token refresh`; 503 credentials_unavailable until they arrive)",
                        target.kind
                    ),
                    _ => target.kind.to_string(),
                },
                credential_header: target.injection.header_name().map(str::to_string),
                removed_headers,
                set_headers,
                caller: check(engine, &fwd, caller),
                engine: egress_core::native::LeafKind::Full.as_str(),
                push_only: None,
            }
        }
        Decision::Respond(r) => Explanation::Reply {
            status: r.status,
            error: r.code.to_string(),
            body: r.body,
        },
        Decision::Ready => Explanation::Ready,
        Decision::Pass => Explanation::Passthrough,
    }
}

pub fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let source = match load_or_report(&args.config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let mut plan = FilterConfig::from_config(&source.config);
    crate::envoy::callers::attach_caller_keys(&source, &mut plan)?;
    let engine = Engine::new(&plan)?;
    let caller = caller_from(
        args.spiffe_id.as_deref(),
        args.subject.as_deref(),
        args.roles.as_deref(),
    );
    let mut e = explain(&engine, &args.method, &args.path, caller.as_ref());
    if let Explanation::Forward {
        target,
        push_only,
        engine: served,
        ..
    } = &mut e
    {
        if let Decision::Forward(fwd) = engine.decide(&args.method, &args.path) {
            *served = if args.engine == EngineChoice::Auto && !is_plain(&args.path) {
                // The slow route: the filter canonicalises and routes it (`path_mode: strict`
                // refuses it instead, never a forward).
                LeafKind::Full.as_str()
            } else {
                super::routes::served_by(&plan, fwd.route, args.engine)
            };
        }
        *push_only = source
            .config
            .target(target)
            .and_then(|t| egress_core::build::push_only(&source.config, t))
            .map(|why| format!("{why}: only `egressctl token refresh` obtains it and pushes it"));
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&e)?),
        Format::Table => print!("{}", render(&args.method, &args.path, &e)),
    }
    Ok(ExitCode::Success)
}

fn render(method: &str, path: &str, e: &Explanation) -> String {
    let mut s = format!("{method} {path}\n");
    match e {
        Explanation::Forward {
            target,
            method,
            outgoing_url,
            outgoing_path,
            credential,
            credential_header,
            removed_headers,
            set_headers,
            caller,
            engine,
            push_only,
        } => {
            s += &format!("  target:      {target}\n");
            s += &format!("  served by:   {engine}\n");
            s += &format!("  outgoing:    {method} {outgoing_url}\n");
            s += &format!("  :path        {outgoing_path}\n");
            let header = match credential_header {
                Some(h) => format!("{h}: <redacted>"),
                None if credential == "mtls" => {
                    "client certificate presented by the cluster".to_string()
                }
                None => "none".to_string(),
            };
            s += &format!("  credential:  {credential} ({header})\n");
            if let Some(why) = push_only {
                s += &format!("  push-only:   {why}\n");
            }
            s += "  set:\n";
            for h in set_headers {
                s += &format!("    {}: {}\n", h.name, h.value);
            }
            s += &format!("  removed:     {}\n", removed_headers.join(", "));
            if let Some(c) = caller {
                let verdict = match c.status {
                    None => "allowed".to_string(),
                    Some(401) => "refused (401 unauthenticated)".to_string(),
                    Some(s) => format!("refused ({s} forbidden)"),
                };
                s += &format!("  caller:      {verdict}: {}\n", c.reason);
            }
        }
        Explanation::Reply {
            status,
            error,
            body,
        } => {
            s += &format!("  refused:     {status} {error}\n  body:        {body}\n");
        }
        Explanation::Ready => {
            s += "  answered by the proxy: readiness (200 when every OAuth2 target holds a token)\n"
        }
        Explanation::Passthrough => s += "  left to Envoy (metrics endpoint)\n",
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_core::engine::Decision;

    fn seed_engine() -> Engine {
        let yaml = include_str!("../../../examples/config.yaml");
        let env = |name: &str| Some(format!("{name}-value"));
        let config = egress_core::config::load::load_str(yaml, &env).unwrap();
        Engine::new(&FilterConfig::from_config(&config)).unwrap()
    }

    /// Regression: explain hard-coded its own list and missed `host`; now it prints the
    /// engine's rules, and those remove exactly what the filter removes.
    #[test]
    fn removed_and_set_headers_are_what_the_engine_does() {
        let engine = seed_engine();
        let names = [
            "host",
            "x-forwarded-for",
            "x-envoy-retry-on",
            "x_api_key",
            "x-http-method-override",
            "x-api-key",
            "authorization",
            "accept",
        ];
        for (method, path) in [
            ("POST", "/egress/notify/email"),
            ("GET", "/egress/analytics/stats?x=1"),
            ("GET", "/egress/erp/customers"),
        ] {
            let Explanation::Forward {
                removed_headers,
                set_headers,
                ..
            } = explain(&engine, method, path, None)
            else {
                panic!("{path} is not forwarded");
            };
            for must in [
                "host",
                "x-envoy-*",
                "x-forwarded-*",
                "forwarded",
                "x-real-ip",
            ] {
                assert!(removed_headers.iter().any(|r| r == must), "{path}: {must}");
            }
            let Decision::Forward(fwd) = engine.decide(method, path) else {
                panic!("{path}");
            };
            let (edits, _) = engine.header_edits(&fwd, names, Some("t"));
            let rules: Vec<_> = engine.remove_rules(fwd.target).collect();
            for name in names {
                let shown = rules.iter().any(|r| r.matches(name));
                let removed = edits.remove.iter().any(|r| r == name);
                // A header the forward sets is replaced, not removed first (a set replaces
                // every value: one host call instead of two).
                let replaced = edits.set.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
                assert!(!(removed && replaced), "{path}: {name} removed and set");
                assert_eq!(removed || (shown && replaced), shown, "{path}: {name}");
            }
            let set: Vec<&str> = set_headers.iter().map(|h| h.name.as_str()).collect();
            let done: Vec<&str> = edits.set.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(set, done, "{path}");
            for h in &set_headers {
                assert!(
                    !h.value.ends_with("-value"),
                    "{path}: {} shows a secret",
                    h.name
                );
            }
        }
    }

    #[test]
    fn the_table_shows_set_and_removed_headers_without_secrets() {
        let engine = seed_engine();
        let e = explain(&engine, "POST", "/egress/notify/email", None);
        let text = render("POST", "/egress/notify/email", &e);
        assert!(
            text.contains("    :authority: notify.internal.svc\n"),
            "{text}"
        );
        assert!(text.contains("    x-api-key: <redacted>\n"), "{text}");
        assert!(text.contains("x-envoy-*"), "{text}");
        assert!(!text.contains("NOTIFICATION_API_KEY-value"), "{text}");
    }
}
