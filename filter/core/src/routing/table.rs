//! The route table: longest `path_prefix` at a segment boundary, found with one hash lookup
//! per segment of the request path, whatever the number of routes.

use crate::routing::path::is_boundary_prefix;
use std::collections::HashMap;

/// Maps normalized prefixes to a value (a route index).
#[derive(Debug, Clone, Default)]
pub struct RouteTable<T> {
    by_prefix: HashMap<String, T>,
    root: Option<T>,
}

impl<T> RouteTable<T> {
    pub fn new() -> Self {
        Self {
            by_prefix: HashMap::new(),
            root: None,
        }
    }

    /// Adds a prefix (already normalized: starts with `/`, no trailing `/`). Returns false
    /// when the prefix was present (the first one stays).
    pub fn insert(&mut self, prefix: &str, value: T) -> bool {
        if prefix == "/" {
            if self.root.is_some() {
                return false;
            }
            self.root = Some(value);
            return true;
        }
        if self.by_prefix.contains_key(prefix) {
            return false;
        }
        self.by_prefix.insert(prefix.to_string(), value);
        true
    }

    pub fn len(&self) -> usize {
        self.by_prefix.len() + usize::from(self.root.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of the longest prefix matching `path` at a segment boundary.
    /// Returns the matched prefix too.
    pub fn lookup<'p>(&self, path: &'p str) -> Option<(&'p str, &T)> {
        let mut candidate = path;
        // A trailing slash does not make a segment of its own.
        if candidate.len() > 1 {
            candidate = candidate.strip_suffix('/').unwrap_or(candidate);
        }
        loop {
            if candidate.len() > 1 {
                if let Some(v) = self.by_prefix.get(candidate) {
                    debug_assert!(is_boundary_prefix(candidate, path));
                    return Some((candidate, v));
                }
            }
            match candidate.rfind('/') {
                Some(0) | None => break,
                Some(i) => candidate = candidate.get(..i).unwrap_or_default(),
            }
        }
        // The root prefix matches absolute paths only.
        let root = path.get(..1).filter(|r| *r == "/")?;
        self.root.as_ref().map(|v| (root, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(prefixes: &[&str]) -> RouteTable<usize> {
        let mut t = RouteTable::new();
        for (i, p) in prefixes.iter().enumerate() {
            assert!(t.insert(p, i));
        }
        t
    }

    #[test]
    fn longest_prefix_wins_at_segment_boundaries() {
        let t = table(&["/egress/crm", "/egress/crm/bulk", "/egress/notify"]);
        assert_eq!(t.lookup("/egress/crm").map(|(_, v)| *v), Some(0));
        assert_eq!(t.lookup("/egress/crm/").map(|(_, v)| *v), Some(0));
        assert_eq!(t.lookup("/egress/crm/Contact/42").map(|(_, v)| *v), Some(0));
        assert_eq!(
            t.lookup("/egress/crm/bulk/jobs").map(|(p, v)| (p, *v)),
            Some(("/egress/crm/bulk", 1))
        );
        assert_eq!(t.lookup("/egress/crmx"), None);
        assert_eq!(t.lookup("/egress/crm-bulk/x"), None);
        assert_eq!(t.lookup("/egress"), None);
        assert_eq!(t.lookup("/"), None);
        assert_eq!(t.lookup("/egress/notify/email").map(|(_, v)| *v), Some(2));
    }

    #[test]
    fn root_prefix_catches_what_nothing_else_matches() {
        let t = table(&["/", "/a"]);
        assert_eq!(t.lookup("/a/b").map(|(_, v)| *v), Some(1));
        assert_eq!(t.lookup("/b").map(|(p, v)| (p, *v)), Some(("/", 0)));
    }

    /// Regression: the root lookup sliced `&path[..1]`, which panics on an empty path.
    #[test]
    fn lookup_never_panics_on_empty_or_relative_paths() {
        let t = table(&["/", "/a"]);
        assert_eq!(t.lookup(""), None);
        assert_eq!(t.lookup("a"), None);
        assert_eq!(t.lookup("/").map(|(p, v)| (p, *v)), Some(("/", 0)));
        let t = table(&["/a"]);
        assert_eq!(t.lookup(""), None);
        assert_eq!(t.lookup("/"), None);
    }

    #[test]
    fn duplicate_prefixes_keep_the_first() {
        let mut t = table(&["/a"]);
        assert!(!t.insert("/a", 9));
        assert_eq!(t.lookup("/a").map(|(_, v)| *v), Some(0));
    }

    #[test]
    fn lookup_among_ten_thousand_routes_finds_the_right_one() {
        let mut t = RouteTable::new();
        for i in 0..10_000 {
            t.insert(&format!("/egress/svc{i}"), i);
        }
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.lookup("/egress/svc7777/x/y").map(|(_, v)| *v), Some(7777));
        assert_eq!(t.lookup("/egress/svc10000/x"), None);
    }
}
