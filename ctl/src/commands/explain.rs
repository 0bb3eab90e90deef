//! `egressctl explain CONFIG METHOD PATH`: what one request becomes, credentials redacted.

use super::load_or_report;
use crate::cli::{ExplainArgs, Format};
use crate::exit::ExitCode;
use egress_core::engine::{Decision, Engine};
use egress_core::plan::{wire, FilterConfig};
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
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
        removed_headers: Vec<String>,
    },
    Reply {
        status: u16,
        error: String,
        body: String,
    },
    Ready,
    Passthrough,
}

pub fn explain(engine: &Engine, method: &str, path: &str) -> Explanation {
    match engine.decide(method, path) {
        Decision::Forward(fwd) => {
            let Some(target) = engine.target(fwd.target) else {
                return Explanation::Passthrough;
            };
            let credential = target.kind.to_string();
            let mut removed = vec![
                "authorization".to_string(),
                "proxy-authorization".to_string(),
            ];
            if let Some(h) = target.injection.header_name() {
                if !removed.iter().any(|r| r == h) {
                    removed.push(h.to_string());
                }
            }
            removed.push(format!("{}*", wire::INTERNAL_HEADER_PREFIX));
            Explanation::Forward {
                target: target.name.clone(),
                method: method.to_string(),
                outgoing_url: fwd.target_url.clone(),
                outgoing_path: fwd.path.clone(),
                credential,
                credential_header: target.injection.header_name().map(str::to_string),
                removed_headers: removed,
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
    let engine = Engine::new(&FilterConfig::from_config(&source.config))?;
    let e = explain(&engine, &args.method, &args.path);
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
        } => {
            s += &format!("  target:      {target}\n");
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
            s += &format!("  removed:     {}\n", removed_headers.join(", "));
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
