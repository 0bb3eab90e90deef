//! Who may call: `allow` blocks, SPIFFE ID patterns, and the evaluation of a caller against
//! a target's and a route's `allow`.

use serde::{Deserialize, Serialize};

/// `allow` on a target or a route: the caller must match any one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Exact SPIFFE IDs, or `spiffe://td/path/*` for every ID below that path.
    #[serde(default)]
    pub spiffe_ids: Vec<String>,
    /// JWT `sub` values.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Any one of these in the JWT's roles claim.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A verified JWT's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtCaller {
    pub issuer: String,
    pub subject: String,
    pub roles: Vec<String>,
}

/// The identities a request proved: a verified client certificate's SPIFFE ID, a verified
/// JWT, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub spiffe_id: Option<String>,
    pub jwt: Option<JwtCaller>,
}

impl Caller {
    pub fn is_anonymous(&self) -> bool {
        self.spiffe_id.is_none() && self.jwt.is_none()
    }

    /// The log name: the SPIFFE ID, else `<iss>/<sub>`.
    pub fn log_name(&self) -> Option<String> {
        if let Some(id) = &self.spiffe_id {
            return Some(id.clone());
        }
        self.jwt
            .as_ref()
            .map(|j| format!("{}/{}", j.issuer, j.subject))
    }
}

/// Which entry of an `allow` block admitted a caller (for `egressctl explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched {
    SpiffeId(String),
    Subject(String),
    Role(String),
}

impl std::fmt::Display for Matched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matched::SpiffeId(p) => write!(f, "spiffe_ids entry {p:?}"),
            Matched::Subject(s) => write!(f, "subjects entry {s:?}"),
            Matched::Role(r) => write!(f, "roles entry {r:?}"),
        }
    }
}

impl Allow {
    pub fn is_empty(&self) -> bool {
        self.spiffe_ids.is_empty() && self.subjects.is_empty() && self.roles.is_empty()
    }

    /// The first entry the caller matches, if any.
    pub fn admits(&self, caller: &Caller) -> Option<Matched> {
        if let Some(id) = &caller.spiffe_id {
            if let Some(p) = self.spiffe_ids.iter().find(|p| spiffe_matches(p, id)) {
                return Some(Matched::SpiffeId(p.clone()));
            }
        }
        if let Some(jwt) = &caller.jwt {
            if let Some(s) = self.subjects.iter().find(|s| **s == jwt.subject) {
                return Some(Matched::Subject(s.clone()));
            }
            if let Some(r) = self.roles.iter().find(|r| jwt.roles.contains(r)) {
                return Some(Matched::Role(r.clone()));
            }
        }
        None
    }
}

/// The verdict of a target's and a route's `allow` on one caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; the entries that matched (target's, route's), `None` where there is no block.
    Allowed {
        target: Option<Matched>,
        route: Option<Matched>,
    },
    /// Refused by the target's block (`route: false`) or the route's (`route: true`).
    Refused { by_route: bool },
}

/// A request must pass the target's `allow` and the route's `allow` where they exist.
pub fn evaluate(target: Option<&Allow>, route: Option<&Allow>, caller: &Caller) -> Verdict {
    let t = match target {
        Some(a) => match a.admits(caller) {
            Some(m) => Some(m),
            None => return Verdict::Refused { by_route: false },
        },
        None => None,
    };
    let r = match route {
        Some(a) => match a.admits(caller) {
            Some(m) => Some(m),
            None => return Verdict::Refused { by_route: true },
        },
        None => None,
    };
    Verdict::Allowed {
        target: t,
        route: r,
    }
}

/// Whether `id` is a well-formed SPIFFE ID: `spiffe://<trust domain>/<path>`, a lower-case
/// trust domain of letters, digits, `.`, `-`, `_`, and path segments that are not empty, `.`
/// or `..` and use only letters, digits, `.`, `-`, `_`. An ID failing this is no identity.
pub fn valid_spiffe_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return false;
    };
    let (td, path) = match rest.split_once('/') {
        Some((td, path)) => (td, Some(path)),
        None => (rest, None),
    };
    if td.is_empty()
        || !td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
    {
        return false;
    }
    match path {
        None => true,
        Some(path) => path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        }),
    }
}

/// Whether an `allow.spiffe_ids` entry is well-formed: a valid SPIFFE ID, optionally
/// followed by `/*`.
pub fn valid_spiffe_pattern(pattern: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(base) => valid_spiffe_id(base),
        None => valid_spiffe_id(pattern),
    }
}

/// `spiffe://td/path/*` matches IDs below that path at a segment boundary; any other pattern
/// matches exactly. An ID that is not well-formed matches nothing.
pub fn spiffe_matches(pattern: &str, id: &str) -> bool {
    if !valid_spiffe_id(id) {
        return false;
    }
    match pattern.strip_suffix("/*") {
        Some(base) => id
            .strip_prefix(base)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')),
        None => pattern == id,
    }
}

impl std::fmt::Display for Allow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (name, list) in [
            ("spiffe_ids", &self.spiffe_ids),
            ("subjects", &self.subjects),
            ("roles", &self.roles),
        ] {
            if !list.is_empty() {
                parts.push(format!("{name}: {}", list.join(", ")));
            }
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// Who may call a route, in words (`egressctl routes`): `identified` is whether
/// `egress.callers` is set.
pub fn describe(target: Option<&Allow>, route: Option<&Allow>, identified: bool) -> String {
    if !identified {
        return "anyone (callers not identified)".into();
    }
    match (target, route) {
        (None, None) => "any authenticated caller".into(),
        (Some(t), None) => t.to_string(),
        (None, Some(r)) => r.to_string(),
        (Some(t), Some(r)) => format!("({t}) and ({r})"),
    }
}

/// Why a caller is admitted or refused, in words (`egressctl explain`).
pub fn explain_verdict(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Allowed { target, route } => {
            let mut why = Vec::new();
            match target {
                Some(m) => why.push(format!("the target's allow matches by its {m}")),
                None => why.push("the target has no allow block".to_string()),
            }
            match route {
                Some(m) => why.push(format!("the route's allow matches by its {m}")),
                None => why.push("the route has no allow block".to_string()),
            }
            why.join("; ")
        }
        Verdict::Refused { by_route: false } => {
            "no entry of the target's allow matches this caller".into()
        }
        Verdict::Refused { by_route: true } => {
            "the target admits this caller, but no entry of the route's allow matches".into()
        }
    }
}
