//! Header names removed by prefix except a few: what the auto engine's early header removal
//! needs when a caller token header (`egress.callers.jwt[i].from_headers`) is itself one of the
//! removed names (`x-egress-caller-token`): the routed filter must still read it, and removes it
//! itself once the caller is admitted.

use std::collections::BTreeMap;

/// RE2 patterns (each a full match of a lower-case name) whose union is every name starting
/// with `prefix` except the names in `except` (each starting with `prefix`; others are
/// ignored). RE2 has no look-ahead, so the complement of the spared suffixes is spelled out
/// node by node of their trie: one small pattern per node (Envoy refuses a regex whose RE2
/// program is over 100 instructions; one pattern for the whole trie is over it for a single
/// `x-egress-caller-token`).
pub fn prefix_except_regexes(prefix: &str, except: &[&str]) -> Vec<String> {
    let prefix = prefix.to_ascii_lowercase();
    let mut root = Node::default();
    for name in except {
        if let Some(rest) = name.to_ascii_lowercase().strip_prefix(&prefix) {
            root.insert(rest);
        }
    }
    let mut out = Vec::new();
    root.patterns(&escape(&prefix), &mut out);
    out
}

#[derive(Default)]
struct Node {
    end: bool,
    children: BTreeMap<char, Node>,
}

impl Node {
    fn insert(&mut self, rest: &str) {
        let mut node = self;
        for c in rest.chars() {
            node = node.children.entry(c).or_default();
        }
        node.end = true;
    }

    /// The names whose walk down the trie ends at this node (path `here`) and are not
    /// spared: `here` itself unless it is spared, and `here` followed by a character no child
    /// starts with.
    fn patterns(&self, here: &str, out: &mut Vec<String>) {
        let next = if self.children.is_empty() {
            ".".to_string()
        } else {
            let class: String = self
                .children
                .keys()
                .map(|c| escape(&c.to_string()))
                .collect();
            format!("[^{class}]")
        };
        out.push(if self.end {
            format!("{here}{next}.*")
        } else {
            format!("{here}(?:{next}.*)?")
        });
        for (c, child) in &self.children {
            child.patterns(&format!("{here}{}", escape(&c.to_string())), out);
        }
    }
}

/// Every character but ASCII letters and digits escaped (RE2 accepts `\` before any
/// punctuation, in and out of a class).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The union of the patterns, each a full match, as Envoy applies them.
    fn full(patterns: &[String]) -> regex::RegexSet {
        for p in patterns {
            // Envoy's limit is on RE2's program size; this bounds it with room to spare.
            assert!(p.len() < 80, "{p}");
        }
        regex::RegexSet::new(patterns.iter().map(|p| format!("^(?:{p})$"))).unwrap()
    }

    #[test]
    fn spares_exactly_the_named_headers_and_removes_every_other_prefixed_name() {
        let re = full(&prefix_except_regexes(
            "x-egress-",
            &["x-egress-caller-token", "X-Egress-Caller", "x-other"],
        ));
        for kept in [
            "x-egress-caller-token",
            "x-egress-caller",
            "x-egress",
            "accept",
        ] {
            assert!(!re.is_match(kept), "{kept} must not match");
        }
        for removed in [
            "x-egress-",
            "x-egress-target",
            "x-egress-c",
            "x-egress-calle",
            "x-egress-callers",
            "x-egress-caller-",
            "x-egress-caller-tokenx",
            "x-egress-caller-toke",
            "x-egress-caller-token-2",
            "x-egress-anything",
        ] {
            assert!(re.is_match(removed), "{removed} must match");
        }
    }

    #[test]
    fn without_exceptions_it_is_the_prefix() {
        let re = full(&prefix_except_regexes("x-egress-", &[]));
        assert!(re.is_match("x-egress-"));
        assert!(re.is_match("x-egress-target"));
        assert!(!re.is_match("x-egres"));
    }
}
