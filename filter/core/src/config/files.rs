//! Config fields that name files (certificates, keys, the log file), checked against the file
//! system when the config's folder is known (`egressctl`; relative paths resolve against it).
//!
//! A path that does not exist is not an error here (validate may run on another machine than
//! the proxy); a path naming a folder is, since it can never work.

use super::error::{ConfigErrors, FieldPath};
use super::raw::RawConfig;
use std::path::{Path, PathBuf};

/// Every file-valued field that is set: its field path and the path as written.
pub fn file_fields(raw: &RawConfig) -> Vec<(FieldPath, &str)> {
    let mut out = Vec::new();
    let targets = FieldPath::root().key("egress").key("targets");
    for (name, t) in &raw.egress.targets {
        let tp = targets.key(name);
        if let Some(tls) = &t.tls {
            for (field, v) in [
                ("client_cert", &tls.client_cert),
                ("client_key", &tls.client_key),
                ("ca_cert", &tls.ca_cert),
            ] {
                if let Some(v) = v {
                    out.push((tp.key("tls").key(field), v.as_str()));
                }
            }
        }
        if let Some(k) = t.auth.as_ref().and_then(|a| a.private_key.as_ref()) {
            out.push((tp.key("auth").key("private_key"), k.as_str()));
        }
        if let Some(k) = t
            .auth
            .as_ref()
            .and_then(|a| a.service_account_file.as_ref())
        {
            out.push((tp.key("auth").key("service_account_file"), k.as_str()));
        }
        for (field, v) in t.auth.iter().flat_map(|a| {
            [
                ("subject_token_file", &a.subject_token_file),
                ("federated_token_file", &a.federated_token_file),
            ]
        }) {
            if let Some(v) = v {
                out.push((tp.key("auth").key(field), v.as_str()));
            }
        }
    }
    if let Some(c) = &raw.egress.callers {
        let cp = FieldPath::root().key("egress").key("callers");
        if let Some(m) = &c.mtls {
            for (field, v) in [
                ("server_cert", Some(&m.server_cert)),
                ("server_key", Some(&m.server_key)),
                ("client_ca", m.client_ca.as_ref()),
            ] {
                if let Some(v) = v {
                    out.push((cp.key("mtls").key(field), v.as_str()));
                }
            }
        }
        for (i, j) in c.jwt.iter().flatten().enumerate() {
            for (field, v) in [
                ("public_key", &j.public_key),
                ("jwks_file", &j.jwks_file),
                ("jwks_ca", &j.jwks_ca),
            ] {
                if let Some(v) = v {
                    out.push((cp.key("jwt").index(i).key(field), v.as_str()));
                }
            }
        }
    }
    if let Some(out_path) = raw.logger.as_ref().and_then(|l| l.output.as_ref()) {
        if !matches!(out_path.as_str(), "stdout" | "stderr") {
            out.push((
                FieldPath::root().key("logger").key("output"),
                out_path.as_str(),
            ));
        }
    }
    out
}

/// `p` as the proxy will open it: absolute, or relative to `base`.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Reports each file field that names a folder.
pub fn check_files(raw: &RawConfig, base: &Path, errs: &mut ConfigErrors) {
    for (path, written) in file_fields(raw) {
        if written.trim().is_empty() || written.chars().any(char::is_control) {
            continue; // reported by validation
        }
        let full = resolve(base, written);
        if full.is_dir() {
            errs.push(
                path.as_str(),
                format!("{} is a folder; name the file itself", full.display()),
            );
        }
    }
}
