//! The route table: longest `path_prefix` at a segment boundary, found with one hash lookup
//! per segment of the request path, whatever the number of routes.

use crate::routing::path::is_boundary_prefix;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast, fixed hash for prefix keys (the Fx hash: a rotate, xor and multiply per 8 bytes).
/// Every request hashes its path's candidates: SipHash cost more than the rest of the lookup.
/// Flooding needs many colliding *keys*, and the keys are the config's prefixes, never a
/// caller's; a caller's path only looks keys up.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrefixHasher(u64);

const FX_SEED: u64 = 0x517c_c1b7_2722_0a95;

impl PrefixHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for PrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Maps normalized prefixes to a value (a route index).
#[derive(Debug, Clone, Default)]
pub struct RouteTable<T> {
    by_prefix: HashMap<String, T, BuildHasherDefault<PrefixHasher>>,
    root: Option<T>,
    /// The most segments a prefix has: longer candidates of a path are not looked up.
    max_segments: usize,
}

/// Segments of a normalized prefix (`/a/b`: 2).
fn segments(prefix: &str) -> usize {
    prefix.bytes().filter(|&b| b == b'/').count()
}

impl<T> RouteTable<T> {
    pub fn new() -> Self {
        Self {
            by_prefix: HashMap::default(),
            root: None,
            max_segments: 0,
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
        self.max_segments = self.max_segments.max(segments(prefix));
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
        // No prefix has more segments than `max_segments`: start at that many.
        if let Some((cut, _)) = candidate.match_indices('/').nth(self.max_segments) {
            candidate = candidate.get(..cut).unwrap_or(candidate);
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

    /// The lookup starts at the longest prefix's depth: deeper paths, shorter prefixes and
    /// a trailing slash still find the same route as a lookup of every candidate would.
    #[test]
    fn lookup_skipping_deeper_candidates_finds_the_same_routes() {
        let prefixes = ["/a", "/a/b/c", "/x/y", "/"];
        let t = table(&prefixes);
        let naive = |path: &str| -> Option<usize> {
            prefixes
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    **p == "/" && path.starts_with('/')
                        || is_boundary_prefix(
                            p,
                            path.strip_suffix('/')
                                .filter(|s| !s.is_empty())
                                .unwrap_or(path),
                        )
                })
                .max_by_key(|(_, p)| p.len())
                .map(|(i, _)| i)
        };
        for path in [
            "/a",
            "/a/",
            "/a/b",
            "/a/b/",
            "/a/b/c",
            "/a/b/c/",
            "/a/b/c/d/e/f",
            "/a/b/cd",
            "/x",
            "/x/y",
            "/x/y/z/w",
            "/x/yz",
            "/q/r/s/t",
            "/",
            "//",
            "/a//b",
            "",
        ] {
            assert_eq!(t.lookup(path).map(|(_, v)| *v), naive(path), "{path}");
        }
    }

    #[test]
    fn prefix_hash_tells_keys_apart() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<PrefixHasher>::default();
        let keys = [
            "/a",
            "/b",
            "/ab",
            "/a/b",
            "/egress/svc00001",
            "/egress/svc00010",
            "",
        ];
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| b.hash_one(k)).collect();
        assert_eq!(hashes.len(), keys.len());
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
