//! Where a caller's JWT is read from (headers with a value prefix, cookies) and how it is
//! taken off the request before the request leaves.

use super::HeaderSource;

/// Where a token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Header(String),
    Cookie(String),
}

/// Every place any issuer reads tokens from, without repeats, in config order. Header names
/// are kept lower-case (the form the host's header map uses), so a request pays no case
/// conversion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    pub headers: Vec<HeaderSource>,
    pub cookies: Vec<String>,
}

impl Sources {
    pub fn add_header(&mut self, h: &HeaderSource) {
        if !self.headers.iter().any(|o| {
            o.name.eq_ignore_ascii_case(&h.name)
                && o.value_prefix.eq_ignore_ascii_case(&h.value_prefix)
        }) {
            self.headers.push(HeaderSource {
                name: h.name.to_ascii_lowercase(),
                value_prefix: h.value_prefix.clone(),
            });
        }
    }

    pub fn add_cookie(&mut self, name: &str) {
        if !self.cookies.iter().any(|c| c == name) {
            self.cookies.push(name.to_string());
        }
    }

    /// The first token present: headers first, then cookies. `header` returns a request
    /// header's value by lower-case name.
    pub fn find(&self, header: &dyn Fn(&str) -> Option<String>) -> Option<(String, Source)> {
        for h in &self.headers {
            let Some(value) = header(&h.name) else {
                continue;
            };
            if let Some(token) = strip_prefix_ignore_case(&value, &h.value_prefix) {
                let token = token.trim();
                if !token.is_empty() {
                    return Some((token.to_string(), Source::Header(h.name.clone())));
                }
            }
        }
        if self.cookies.is_empty() {
            return None;
        }
        let cookie = header("cookie")?;
        for name in &self.cookies {
            if let Some(v) = cookie_value(&cookie, name) {
                if !v.is_empty() {
                    return Some((v.to_string(), Source::Cookie(name.clone())));
                }
            }
        }
        None
    }

    /// What to take off the request so that no caller token leaves: every source header
    /// present (to remove), and the `Cookie` header without the token cookies (`Some(None)`:
    /// remove `Cookie`, nothing else was in it; `None`: leave it).
    pub fn removal(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
    ) -> (Vec<String>, Option<Option<String>>) {
        let mut remove: Vec<String> = Vec::new();
        for h in &self.headers {
            if !remove.contains(&h.name) && header(&h.name).is_some() {
                remove.push(h.name.clone());
            }
        }
        let cookie = if self.cookies.is_empty() {
            None
        } else {
            header("cookie").and_then(|c| {
                let kept = strip_cookies(&c, &self.cookies);
                if kept.as_deref() == Some(c.as_str()) {
                    None
                } else {
                    Some(kept)
                }
            })
        };
        (remove, cookie)
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        value.get(prefix.len()..)
    } else {
        None
    }
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`), the first one if repeated.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The `Cookie` header without the named cookies; `None` when nothing is left.
pub fn strip_cookies(header: &str, names: &[String]) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(k, _)| k).trim();
            !names.iter().any(|n| n == name)
        })
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("; "))
    }
}
