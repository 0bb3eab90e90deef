//! Reading `config.yaml`: YAML syntax, `${VAR}` expansion, schema, validation, and a line and
//! column for every error.

use super::env::{expand, ExpandError};
use super::error::{ConfigError, ConfigErrors, FieldPath};
use super::files::check_files;
use super::raw::RawConfig;
use super::text::control_char_problem;
use super::validate::validate;
use super::Config;
use serde_path_to_error::Segment;
use serde_yaml::Value;
use std::path::Path;

pub use super::positions::{Positions, MAX_DEPTH};

/// Loads a config from YAML text, looking `${VAR}` up with `lookup`. File paths are not
/// checked against the file system (see [`load_bytes`]).
pub fn load_str(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    load_text(text, None, lookup)
}

/// Loads a config file's bytes: they must be UTF-8 (a leading byte order mark is skipped).
/// With `base_dir` (the config file's folder, against which relative paths resolve), file
/// fields that name a folder are errors too.
pub fn load_bytes(
    bytes: &[u8],
    base_dir: Option<&Path>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let text = decode(bytes)?;
    load_text(text, base_dir, lookup)
}

/// [`load_bytes`] with the process environment.
pub fn load_bytes_from_env(bytes: &[u8], base_dir: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_bytes(bytes, base_dir, &|name| std::env::var(name).ok())
}

/// The 1-based line and column (in characters) of byte offset `at` of `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, col)
}

/// The text of a config file, or an error at the first byte that is not UTF-8.
fn decode(bytes: &[u8]) -> Result<&str, ConfigErrors> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
        let good = std::str::from_utf8(good).unwrap_or_default();
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            location: Some(line_col(good, good.len())),
            message: "the file is not valid UTF-8 (save it as UTF-8)".into(),
        }])
    })
}

fn load_text(
    text: &str,
    base_dir: Option<&Path>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let (raw, mut errs, positions) = parse_raw(text, lookup)?;
    // Unknown keys and missing variables do not stop validation: report everything at once.
    let result = validate(&raw);
    if let Some(base) = base_dir {
        check_files(&raw, base, &mut errs);
    }
    match result {
        Ok(config) if errs.is_empty() => Ok(config),
        Ok(_) => {
            positions.locate(&mut errs);
            Err(errs)
        }
        Err(more) => {
            errs.0.extend(more.0);
            positions.locate(&mut errs);
            Err(errs)
        }
    }
}

/// Loads a config from YAML text with the process environment.
pub fn load_str_from_env(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, &|name| std::env::var(name).ok())
}

/// YAML to [`RawConfig`], with every schema problem (unknown keys, wrong types, missing
/// variables) reported, and the position index for later errors.
pub fn load_raw(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(RawConfig, Positions), ConfigErrors> {
    let (raw, errs, positions) = parse_raw(text, lookup)?;
    if errs.is_empty() {
        Ok((raw, positions))
    } else {
        Err(errs)
    }
}

/// Like [`load_raw`], but a config that deserialized is returned with the problems found so
/// far (unknown keys, missing variables), so validation can add its own.
fn parse_raw(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(RawConfig, ConfigErrors, Positions), ConfigErrors> {
    // A byte order mark (editors on Windows write one) is not part of the document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(at) = text.find('\u{feff}') {
        // libyaml reads one as the start of another stream: say what it is and where.
        return Err(ConfigErrors(vec![ConfigError {
            path: String::new(),
            location: Some(line_col(text, at)),
            message:
                "a byte order mark (U+FEFF) inside the file; only the first character may be one"
                    .into(),
        }]));
    }
    let positions = Positions::index(text).map_err(|e| ConfigErrors(vec![e]))?;
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| {
        let location = e
            .location()
            .map(|l| (l.line(), l.column()))
            .or_else(|| positions.find(""))
            .or(Some((1, 1)));
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            location,
            message: format!("invalid YAML: {e}"),
        }])
    })?;
    if value.is_null() {
        return Err(ConfigErrors(vec![ConfigError::new(
            "",
            "the config file is empty",
        )]));
    }
    let mut errs = ConfigErrors::default();
    expand_tree(&mut value, &FieldPath::root(), lookup, &mut errs);

    // A value of the wrong type stops serde at the first one: record it, cut that value out
    // and try again, so one run reports every independent mistake.
    let mut unknown: Vec<String> = Vec::new();
    let mut cut: Vec<Vec<Segment>> = Vec::new();
    let mut raw = None;
    for _ in 0..MAX_SCHEMA_ERRORS {
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(value.clone(), &mut track);
        let result: Result<RawConfig, _> = serde_ignored::deserialize(de, |path| {
            let p = ignored_path(&path);
            if !unknown.contains(&p) {
                unknown.push(p);
            }
        });
        match result {
            Ok(r) => {
                raw = Some(r);
                break;
            }
            Err(e) => {
                let at = track.path();
                let segments: Vec<Segment> = at.iter().cloned().collect();
                let path = at.to_string();
                let path = if path == "." { String::new() } else { path };
                let missing = e.to_string().starts_with("missing field");
                let (path, message) = schema_error(path, e.to_string());
                // A required field that was cut out comes back as missing: not a new mistake.
                let after_cut = missing && errs.iter().any(|e| e.path == path);
                if !after_cut {
                    errs.push(path, message);
                }
                if missing || !cut_out(&mut value, &segments) {
                    break;
                }
                cut.push(segments);
            }
        }
    }
    for p in unknown {
        let (parent, key) = match p.rsplit_once('.') {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => (String::new(), p.clone()),
        };
        let place = if parent.is_empty() {
            "the top level".to_string()
        } else {
            parent
        };
        errs.push(p.clone(), format!("unknown field `{key}` in {place}"));
    }
    positions.locate(&mut errs);
    match raw {
        // Validating without a target or the egress prefix would only add false errors.
        Some(raw) if !cut.iter().any(|c| hides_references(c)) => Ok((raw, errs, positions)),
        _ => Err(errs),
    }
}

/// At most this many values of the wrong type are reported (and cut out) in one run.
const MAX_SCHEMA_ERRORS: usize = 32;

/// Removes the value at `path` (a sequence element: its whole sequence, so indexes stay those
/// of the file). False when there is nothing to remove.
fn cut_out(value: &mut Value, path: &[Segment]) -> bool {
    let mut path = path;
    while let [rest @ .., Segment::Seq { .. }] = path {
        path = rest;
    }
    let [parents @ .., Segment::Map { key }] = path else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        let next = match (seg, node) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Sequence(s)) => s.get_mut(*index),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match node {
        Value::Mapping(m) => m.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// Whether cutting `path` out leaves other fields pointing at nothing: a whole target (routes
/// name it), the targets, or the egress prefix (routes must lie under it).
fn hides_references(path: &[Segment]) -> bool {
    let keys: Vec<&str> = path
        .iter()
        .map(|s| match s {
            Segment::Map { key } => key.as_str(),
            _ => "",
        })
        .collect();
    matches!(
        keys.as_slice(),
        ["egress"]
            | ["egress", "targets"]
            | ["egress", "targets", _]
            | ["endpoints"]
            | ["endpoints", "egress"]
    )
}

/// A serde error in our terms: a missing field is named by its own path, and the schema's
/// type names (`struct RawTarget`) read as what the file should hold.
fn schema_error(path: String, message: String) -> (String, String) {
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        let full = FieldPath::root();
        let full = if path.is_empty() {
            full.key(field)
        } else {
            FieldPath::root().key(&path).key(field)
        };
        return (full.as_str().to_string(), "is required".to_string());
    }
    let message = match message.find("expected struct Raw") {
        Some(i) => format!("{}expected a mapping", message.get(..i).unwrap_or_default()),
        None => message,
    };
    (path, message)
}

/// `serde_ignored` paths rendered like ours: `egress.routes[2].foo`.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => {
            let p = ignored_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

fn expand_tree(
    v: &mut Value,
    path: &FieldPath,
    lookup: &dyn Fn(&str) -> Option<String>,
    errs: &mut ConfigErrors,
) {
    match v {
        Value::String(s) => match expand(s, lookup) {
            Ok(new) => {
                // Every string may end up in a header, a form or Envoy's config, where a control
                // character breaks every request (a newline read with `${VAR}` is the usual case).
                let from_variable = !s.contains(char::is_control);
                if let Some(msg) = control_char_problem(&new, from_variable) {
                    errs.push(path.as_str(), msg);
                }
                // A value that was only a variable reference keeps string type, so `key: ${X}`
                // with X=123 stays the string "123" the schema expects.
                *s = new;
            }
            Err(list) => {
                for e in list {
                    let msg = match &e {
                        ExpandError::Missing(name) => {
                            format!("environment variable {name} is not set (use ${{{name}:-default}} for a default)")
                        }
                        other => other.to_string(),
                    };
                    errs.push(path.as_str(), msg);
                }
            }
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &path.index(i), lookup, errs);
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                let key = match k {
                    Value::String(s) if s.contains(char::is_control) => {
                        errs.push(
                            path.as_str(),
                            "a key contains a control character; keys must be plain text",
                        );
                        s.clone()
                    }
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                expand_tree(item, &path.key(&key), lookup, errs);
            }
        }
        Value::Tagged(t) => expand_tree(&mut t.value, path, lookup, errs),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
