//! The header changes of a forward: what is removed from the caller's request and what is
//! set (`:path`, `:authority`, the routing header, the credential). The filter applies them on
//! every request; `egressctl explain` prints them from the same code.

use super::headers::{self, RemoveRule, ALWAYS_REMOVED, FORWARDED_PROTO};
use super::{CompiledTarget, Engine, Forward};
use crate::credentials::{bearer, Injection};
use crate::plan::wire;
use std::borrow::Cow;

/// Header changes for a forward (see [`Engine::header_edits`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Names to remove (every value), as they arrived; a name also in `set` is not listed
    /// (setting replaces every value).
    pub remove: Vec<String>,
    /// Headers to set, replacing any value.
    pub set: Vec<(String, String)>,
}

impl std::fmt::Display for HeaderEdits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are not shown: one of them is a credential.
        let set: Vec<&str> = self.set.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "remove {:?}, set {:?}", self.remove, set)
    }
}

/// [`HeaderEdits`] borrowing the engine's, the forward's and the request's strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EditList<'a> {
    /// Names to remove (every value), as they arrived; a name also in `set` is not listed.
    pub remove: Vec<&'a str>,
    /// Headers to set, replacing any value.
    pub set: Vec<(&'a str, Cow<'a, str>)>,
}

impl EditList<'_> {
    pub fn to_owned_edits(&self) -> HeaderEdits {
        HeaderEdits {
            remove: self.remove.iter().map(|r| r.to_string()).collect(),
            set: self
                .set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// Whether [`Engine::edit_headers`] could attach the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edited {
    Complete,
    /// An OAuth2 target and no token yet: everything else is done; add
    /// `Authorization: Bearer <token>` once one is there.
    NeedsToken,
}

impl Engine {
    /// What a forward changes in the request headers, given the names it arrived with: the
    /// headers to remove (the caller's credentials, internal `x-egress-*` headers, the target's
    /// own credential header) and the headers to set, replacing any value (`:path`,
    /// `:authority`, the routing header, the credential). `oauth2_token` is the token of an
    /// OAuth2 target; without one, everything but the credential is there and
    /// [`Edited::NeedsToken`] says so.
    ///
    /// The filter applies these with one host call each: far cheaper in Envoy than replacing
    /// the whole header map. (It asks [`Engine::header_edit_list`], the same edits borrowed.)
    pub fn header_edits<'h>(
        &self,
        fwd: &Forward,
        names: impl IntoIterator<Item = &'h str>,
        oauth2_token: Option<&str>,
    ) -> (HeaderEdits, Edited) {
        let (list, edited) = self.header_edit_list(fwd, names, oauth2_token);
        (list.to_owned_edits(), edited)
    }

    /// [`Engine::header_edits`] without a copy of any name or value (the request path runs
    /// this on every request; only an OAuth2 `Bearer` value is built).
    pub fn header_edit_list<'a, 'h: 'a>(
        &'a self,
        fwd: &'a Forward,
        names: impl IntoIterator<Item = &'h str>,
        oauth2_token: Option<&str>,
    ) -> (EditList<'a>, Edited) {
        let mut edits = EditList {
            remove: Vec::new(),
            set: Vec::with_capacity(6),
        };
        let Some(target) = self.targets.get(fwd.target) else {
            return (edits, Edited::NeedsToken);
        };
        for name in names {
            if self.removes(target, name)
                && !edits.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
            {
                edits.remove.push(name);
            }
        }
        edits.set.push((":path", Cow::Borrowed(fwd.path.as_str())));
        edits
            .set
            .push((":authority", Cow::Borrowed(target.authority.as_str())));
        edits
            .set
            .push((wire::TARGET_HEADER, Cow::Borrowed(target.name.as_str())));
        // Replaces the caller's value. Envoy needs the header: its route lookup finds no route
        // without one (and the filter's header changes make Envoy look the route up again).
        edits
            .set
            .push((FORWARDED_PROTO, Cow::Borrowed(target.scheme)));
        let edited = match &target.injection {
            // SigV4: the glue signs once the final request is known.
            Injection::None | Injection::AwsSigv4 => Edited::Complete,
            Injection::Header { name, value } => {
                edits
                    .set
                    .push((name.as_str(), Cow::Borrowed(value.as_str())));
                Edited::Complete
            }
            Injection::OAuth2Bearer => match oauth2_token {
                Some(token) => {
                    edits.set.push(("authorization", Cow::Owned(bearer(token))));
                    Edited::Complete
                }
                None => Edited::NeedsToken,
            },
        };
        // Setting a header replaces every value it had: removing it first would be one more
        // host call per request for nothing (e.g. the `x-forwarded-proto` Envoy adds).
        edits
            .remove
            .retain(|r| !edits.set.iter().any(|(s, _)| s.eq_ignore_ascii_case(r)));
        (edits, edited)
    }

    /// [`Engine::header_edits`] applied to a header list (tests, `egressctl explain`).
    /// Header values are generic so they can stay raw bytes.
    pub fn edit_headers<V: From<String>>(
        &self,
        fwd: &Forward,
        headers: &mut Vec<(String, V)>,
        oauth2_token: Option<&str>,
    ) -> Edited {
        let (edits, edited) =
            self.header_edits(fwd, headers.iter().map(|(k, _)| k.as_str()), oauth2_token);
        headers.retain(|(k, _)| {
            !edits.remove.iter().any(|r| r.eq_ignore_ascii_case(k))
                && !edits.set.iter().any(|(s, _)| s.eq_ignore_ascii_case(k))
        });
        for (k, v) in edits.set {
            headers.push((k, V::from(v)));
        }
        edited
    }

    /// The rules that remove caller headers from a request to this target:
    /// [`ALWAYS_REMOVED`], then the target's own credential header. `egressctl explain`
    /// prints these; [`Engine::header_edits`] applies them.
    pub fn remove_rules(&self, target: usize) -> impl Iterator<Item = RemoveRule<'_>> {
        let own = self
            .targets
            .get(target)
            .into_iter()
            .flat_map(|t| t.strip.iter().map(|h| RemoveRule::Name(h)));
        ALWAYS_REMOVED.iter().copied().chain(own)
    }

    fn removes(&self, target: &CompiledTarget, name: &str) -> bool {
        headers::always_removed(name) || target.strip.iter().any(|h| name.eq_ignore_ascii_case(h))
    }

    /// What a forward sets, with the credential's value replaced by `<redacted>`: for
    /// `egressctl explain`, from the same code as the request path.
    pub fn describe_set(&self, fwd: &Forward) -> Vec<(String, String)> {
        let (mut edits, _) = self.header_edits(fwd, std::iter::empty(), Some(""));
        if let Some(name) = self
            .targets
            .get(fwd.target)
            .and_then(|t| t.injection.header_name())
        {
            for (k, v) in &mut edits.set {
                if k.eq_ignore_ascii_case(name) {
                    *v = "<redacted>".to_string();
                }
            }
        }
        edits.set
    }
}
