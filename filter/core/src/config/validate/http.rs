//! `http` (the egress listener) and `logger`.

use super::super::error::{ConfigErrors, FieldPath};
use super::super::model::*;
use super::super::raw::*;
use super::opt_duration;
use crate::types::LogLevel;

pub(super) fn http(raw: &RawHttp, http_path: &FieldPath, errs: &mut ConfigErrors) -> HttpSettings {
    let listen = match ListenAddr::parse(&raw.addr) {
        Ok(a) if a.port == 0 => {
            errs.push(
                http_path.key("addr").as_str(),
                "port 0 would bind a random port callers cannot know; give a port from 1 to 65535",
            );
            a
        }
        Ok(a) => a,
        Err(e) => {
            errs.push(http_path.key("addr").as_str(), e.to_string());
            ListenAddr::parse(":8080").unwrap_or(ListenAddr {
                ip: [0, 0, 0, 0].into(),
                port: 8080,
            })
        }
    };
    HttpSettings {
        listen,
        read_timeout: opt_duration(&raw.read_timeout, &http_path.key("read_timeout"), errs),
        write_timeout: opt_duration(&raw.write_timeout, &http_path.key("write_timeout"), errs),
    }
}

pub(super) fn logger(raw: Option<&RawLogger>, path: &FieldPath, errs: &mut ConfigErrors) -> Logger {
    let raw = raw.cloned().unwrap_or_default();
    let level = match raw.level.as_deref() {
        None => LogLevel::Info,
        Some(l) => LogLevel::parse(l).unwrap_or_else(|| {
            errs.push(
                path.key("level").as_str(),
                format!("unknown level {l:?}; expected trace, debug, info, warn or error"),
            );
            LogLevel::Info
        }),
    };
    let format = match raw.format.as_deref() {
        None | Some("json") => LogFormat::Json,
        Some(f) => {
            errs.push(
                path.key("format").as_str(),
                format!("unknown format {f:?}; only json is supported"),
            );
            LogFormat::Json
        }
    };
    let output = match raw.output.as_deref() {
        None | Some("stdout") => LogOutput::Stdout,
        Some("stderr") => LogOutput::Stderr,
        Some("") => {
            errs.push(
                path.key("output").as_str(),
                "must be stdout, stderr or a file path",
            );
            LogOutput::Stdout
        }
        Some(p) => LogOutput::File(p.to_string()),
    };
    Logger {
        level,
        format,
        output,
    }
}
