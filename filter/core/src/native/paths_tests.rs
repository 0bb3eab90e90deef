//! The native path functions against the core they stand for: the plain-path class against
//! `normalize_request_path`, and the route leaves, run the way Envoy runs them, against
//! `RouteTable::lookup` + `rewrite`.

use super::paths::*;
use crate::routing::path::{normalize_request_path, rewrite};
use crate::routing::RouteTable;
use proptest::prelude::*;
use regex::Regex;
use std::borrow::Cow;

fn plain() -> Regex {
    Regex::new(&plain_path_regex()).unwrap()
}

/// An RE2 substitution (`\0`-`\9` groups, `\\` a backslash, nothing else after `\`) in the
/// syntax of Rust's `regex` replacement.
fn rust_substitution(re2: &str) -> String {
    let mut out = String::new();
    let mut chars = re2.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => out.push_str(&format!("${{{d}}}")),
                Some('\\') => out.push('\\'),
                other => panic!("invalid RE2 substitution {re2:?} (\\{other:?})"),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// What Envoy does with a leaf's rewrite. `prefix_rewrite`: the first `from.len()` bytes
/// replaced, query included (Envoy does not check that they are `from`: the test does).
/// `regex_rewrite`: every match in the path without its query replaced (RE2 GlobalReplace),
/// then the query appended as it came.
fn envoy_rewrite(rw: &Rewrite, raw: &str) -> String {
    let (pattern, substitution) = match rw {
        Rewrite::Prefix { from, to } => {
            assert!(raw.starts_with(from.as_str()), "{raw:?} reached {rw:?}");
            assert!(!to.is_empty(), "an empty prefix_rewrite is none: {rw:?}");
            return format!("{to}{}", &raw[from.len()..]);
        }
        Rewrite::Regex {
            pattern,
            substitution,
        } => (pattern, substitution),
    };
    let (path, query) = match raw.find('?') {
        Some(i) => raw.split_at(i),
        None => (raw, ""),
    };
    let re = Regex::new(pattern).unwrap();
    let replaced = re.replace_all(path, rust_substitution(substitution).as_str());
    format!("{replaced}{query}")
}

/// One config route: (prefix, strip_prefix, rewrite_prefix, base_path).
type Row = (String, Option<String>, Option<String>, String);

/// Envoy's Level C: the exact map on `:path`, then the longest prefix key; returns the route
/// index and the outgoing `:path`.
fn envoy(rows: &[Row], raw: &str) -> Option<(usize, String)> {
    let leaves: Vec<(usize, Leaf)> = rows
        .iter()
        .enumerate()
        .flat_map(|(i, (p, s, r, b))| {
            route_leaves(p, s.as_deref(), r.as_deref(), b)
                .into_iter()
                .map(move |l| (i, l))
        })
        .collect();
    let exact = leaves
        .iter()
        .find(|(_, l)| matches!(&l.key, PathKey::Exact(k) if k == raw));
    let picked = exact.or_else(|| {
        leaves
            .iter()
            .filter(|(_, l)| matches!(&l.key, PathKey::Prefix(k) if raw.starts_with(k.as_str())))
            .max_by_key(|(_, l)| l.key.as_str().len())
    })?;
    Some((picked.0, envoy_rewrite(&picked.1.rewrite, raw)))
}

/// The core: normalize, longest prefix at a segment boundary, rewrite.
fn core(rows: &[Row], raw: &str) -> Option<(usize, String)> {
    let mut table = RouteTable::new();
    for (i, (p, ..)) in rows.iter().enumerate() {
        table.insert(p, i);
    }
    let req = normalize_request_path(raw).unwrap();
    let (_, &i) = table.lookup(&req.path)?;
    let (_, s, r, b) = &rows[i];
    Some((
        i,
        rewrite(&req.path, req.query, s.as_deref(), r.as_deref(), b),
    ))
}

fn row(p: &str, s: Option<&str>, r: Option<&str>, b: &str) -> Row {
    (p.into(), s.map(Into::into), r.map(Into::into), b.into())
}

#[test]
fn plain_path_regex_accepts_ordinary_canonical_paths() {
    let re = plain();
    for p in [
        "/",
        "/a",
        "/a/",
        "/egress/crm/Contact/42",
        "/egress/crm/Contact/42?fields=Id,Name&x=%20",
        "/a?",
        "/a?b?c/d",
        "/.a/..b/.../a.b/a..",
        "/-._~:@!$&'()*+,=/x",
        "/a?x=$1&y=\\",
    ]
    .into_iter()
    .filter(|p| !p.contains('\\'))
    {
        assert!(re.is_match(p), "{p:?}");
    }
}

/// Regression (found by the property below as `"/?%"`): a `%` in the query, even a lone one,
/// is plain: the core passes the query on as sent, so Envoy's raw match agrees with it.
#[test]
fn percent_in_the_query_is_plain_and_passed_on_unchanged() {
    let re = plain();
    for raw in ["/?%", "/a?%", "/a?x=%zz&y=%2F"] {
        assert!(re.is_match(raw), "{raw:?}");
        let (path, query) = raw.split_once('?').unwrap();
        let p = normalize_request_path(raw).unwrap();
        assert_eq!(&*p.path, path, "{raw:?}");
        assert_eq!(p.query, Some(query), "{raw:?}");
    }
}

#[test]
fn plain_path_regex_refuses_hostile_and_non_canonical_paths() {
    let re = plain();
    for p in [
        "",
        "a",
        "a/b",
        "?a",
        "//",
        "/a//b",
        "/a/b//",
        "/.",
        "/..",
        "/./a",
        "/a/..",
        "/a/../b",
        "/a/./",
        "/%2e",
        "/a/%2E%2E/b",
        "/%41",
        "/a%2Fb",
        "/a%",
        "/a;b",
        "/a;",
        "/a\\b",
        "/\\",
        "/é",
        "/a?é",
        "/a\u{1}",
        "/a\u{7f}",
        "/a b",
        "/a?b c",
        "/a\t",
        "/a#b",
        "/a?b#c",
        "/a?b\"c",
        "/a?b\\c",
        "/a\"",
        "/a<b>",
        "/a[b]",
        "/a{b}",
        "/a|b",
        "/a^b",
        "/a`b",
        "/a\n",
        "/a?b\n",
        "/\u{FF0E}",
    ] {
        assert!(!re.is_match(p), "{p:?}");
    }
}

/// Characters that matter to the class or to the normalizer, with plain ones repeated so
/// that longer accepted paths are common.
const PATH_ALPHABET: &str = r#"[a./?/a/.?=%2eE;\\#" é\x01\x7f:@!$&'()*+,=~_-]{0,16}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Plain means: accepted by the core with its canonical spelling equal to the raw path,
    /// no `%` in the path part (the query is passed on as sent, escapes included), and a query
    /// without `"`, `\` (and `#`): so Envoy matching the raw `:path` matches what the core
    /// matches, and the query never needs JSON escaping.
    #[test]
    fn native_plain_path_regex_is_exactly_the_unchanged_canonical_paths(raw in PATH_ALPHABET) {
        let is_plain = plain().is_match(&raw);
        let canonical_unchanged = match normalize_request_path(&raw) {
            Ok(p) => {
                let (path, query) = match raw.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (raw.as_str(), None),
                };
                matches!(p.path, Cow::Borrowed(b) if b == path) && p.query == query
            }
            Err(_) => false,
        };
        let query_ok = raw
            .split_once('?')
            .is_none_or(|(_, q)| !q.contains(['"', '\\', '#']));
        prop_assert_eq!(
            is_plain,
            canonical_unchanged && !raw.split('?').next().unwrap_or("").contains('%') && query_ok,
            "{:?}",
            raw
        );
        // The core's own test (`egress.path_mode: strict`) is the same class.
        prop_assert_eq!(is_plain, crate::routing::path::is_plain(&raw), "{:?}", raw);
    }

    /// Envoy's log-safe class is the core's: the part before the first `?` is printable ASCII
    /// without `"` and `\`, whatever follows.
    #[test]
    fn native_log_safe_regex_is_exactly_the_core_log_safe_paths(raw in PATH_ALPHABET) {
        let safe = Regex::new(&log_safe_path_regex()).unwrap().is_match(&raw);
        let path = raw.split('?').next().unwrap_or("");
        prop_assert_eq!(safe, crate::routing::path::is_log_safe(path), "{:?}", raw);
    }
}

#[test]
fn log_safe_regex_reads_only_the_path_before_the_query() {
    let re = Regex::new(&log_safe_path_regex()).unwrap();
    for ok in ["/a b/c", "/a?\"\\\n\u{0}é", "/", "/%2e%2e/x", "/a{b}|^`"] {
        assert!(re.is_match(ok), "{ok:?}");
    }
    for bad in ["/a\"b", "/a\\b", "/a\tb?q", "/é", "/a\u{7f}", "/a\nb"] {
        assert!(!re.is_match(bad), "{bad:?}");
    }
}

#[test]
fn escape_pattern_makes_every_plain_character_literal() {
    let text = "/-._~:@!$&'()*+,=/a.b$(c)*+?[x]{1}|^\\";
    let re = Regex::new(&format!("^{}$", escape_pattern(text))).unwrap();
    assert!(re.is_match(text));
    assert!(!re.is_match("/-._~:@!$&'()*+,=/aXb$(c)*+?[x]{1}|^\\"));
    // RE2 refuses `\` before a letter, digit or `_`: never produced.
    let escaped = escape_pattern("azAZ09_-é");
    assert_eq!(escaped, "azAZ09_-é");
}

#[test]
fn substitution_escapes_backslashes_only() {
    assert_eq!(escape_substitution(r"/a\1$b"), r"/a\\1$b");
    let rw = Rewrite::Regex {
        pattern: "^(/.*)$".into(),
        substitution: format!(r"{}\1", escape_substitution(r"/x\1$2")),
    };
    assert_eq!(envoy_rewrite(&rw, "/p?q=$1"), r"/x\1$2/p?q=$1");
}

#[test]
fn route_leaves_keys_are_exact_prefix_slash_and_query_or_root() {
    let keys = |p: &str| -> Vec<PathKey> {
        route_leaves(p, None, None, "")
            .into_iter()
            .map(|l| l.key)
            .collect()
    };
    assert_eq!(
        keys("/egress/crm"),
        vec![
            PathKey::Exact("/egress/crm".into()),
            PathKey::Prefix("/egress/crm/".into()),
            PathKey::Prefix("/egress/crm?".into()),
        ]
    );
    assert_eq!(keys("/"), vec![PathKey::Prefix("/".into())]);
}

#[test]
fn route_leaves_rewrite_the_spec_examples() {
    let crm = vec![row(
        "/egress/crm",
        Some("/egress/crm"),
        None,
        "/services/data/v58.0",
    )];
    assert_eq!(
        envoy(&crm, "/egress/crm/Contact/42?fields=Id"),
        Some((0, "/services/data/v58.0/Contact/42?fields=Id".into()))
    );
    assert_eq!(
        envoy(&crm, "/egress/crm"),
        Some((0, "/services/data/v58.0".into()))
    );
    assert_eq!(
        envoy(&crm, "/egress/crm?x=1"),
        Some((0, "/services/data/v58.0?x=1".into()))
    );
    assert_eq!(
        envoy(&crm, "/egress/crm/"),
        Some((0, "/services/data/v58.0/".into()))
    );
    assert_eq!(envoy(&crm, "/egress/crmx"), None);
    let open = vec![row("/egress/open", Some("/egress/open"), None, "")];
    assert_eq!(envoy(&open, "/egress/open"), Some((0, "/".into())));
    assert_eq!(envoy(&open, "/egress/open?a"), Some((0, "/?a".into())));
    assert_eq!(envoy(&open, "/egress/open/x"), Some((0, "/x".into())));
}

/// Regression guard: prefix characters that are RE2 operators (`.`, `$`, `(`, `*`, `+`)
/// must match only themselves.
#[test]
fn route_leaves_treat_regex_operators_in_prefixes_literally() {
    let rows = vec![row("/a.b$(c)*+", Some("/a.b$(c)*+"), Some("/v1"), "/base")];
    assert_eq!(envoy(&rows, "/a.b$(c)*+/x"), Some((0, "/base/v1/x".into())));
    // A strip prefix longer than the route's needs a regex: `.` in it is literal there too.
    let leaf = &route_leaves("/a", Some("/a/b.c"), None, "")[1];
    assert!(matches!(leaf.rewrite, Rewrite::Regex { .. }), "{leaf:?}");
    assert_eq!(envoy_rewrite(&leaf.rewrite, "/a/bXc/x"), "/a/bXc/x");
    assert_eq!(envoy_rewrite(&leaf.rewrite, "/a/b.c/x"), "/x");
}

/// A `strip_prefix` longer than the route prefix strips only the paths under it, and the
/// path equal to it leaves as `/` (nothing else left) or as the rewrite prefix.
#[test]
fn route_leaves_strip_a_longer_prefix_only_where_it_applies() {
    for (base, whole) in [("", "/"), ("/b", "/b")] {
        let rows = vec![row("/a", Some("/a/s"), None, base)];
        assert_eq!(envoy(&rows, "/a/s"), Some((0, whole.into())));
        assert_eq!(envoy(&rows, "/a/s?q"), Some((0, format!("{whole}?q"))));
        assert_eq!(envoy(&rows, "/a/s/x"), Some((0, format!("{base}/x"))));
        assert_eq!(envoy(&rows, "/a/sx"), Some((0, format!("{base}/a/sx"))));
        assert_eq!(envoy(&rows, "/a"), Some((0, format!("{base}/a"))));
        assert_eq!(core(&rows, "/a/s/x"), envoy(&rows, "/a/s/x"));
    }
}

#[test]
fn root_route_with_and_without_strip_matches_the_core() {
    for rows in [
        vec![row("/", None, None, "")],
        vec![row("/", Some("/"), Some("/"), "/b")],
        vec![row("/", Some("/x"), None, "")],
        vec![row("/", Some("/x"), Some("/r"), "")],
        vec![row("/", None, None, ""), row("/x", Some("/x"), None, "/y")],
    ] {
        for p in ["/", "/?q", "/x", "/x/", "/x?q", "/x/y", "/xy", "/a/b/"] {
            assert_eq!(envoy(&rows, p), core(&rows, p), "{rows:?} {p}");
        }
    }
}

/// Segments for prefixes and paths: a few shared ones so that routes nest and collide,
/// with RE2 operators and dots.
const SEGMENTS: &[&str] = &[
    "a", "b", "a", "b", "c.d", "e+", "(f)", "$g", "*", "...", "~u", ":@", "a'b", "a,b=c!&", ".x",
];

fn segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(SEGMENTS)
}

fn prefix() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..4).prop_map(|segs| {
        if segs.is_empty() {
            "/".to_string()
        } else {
            segs.iter().map(|s| format!("/{s}")).collect()
        }
    })
}

/// A strip prefix related to the route prefix in every way the config could (equal, a
/// boundary ancestor, `/`) and ways it cannot (longer, unrelated).
fn strip_for(p: String) -> impl Strategy<Value = (String, Option<String>)> {
    let ancestors: Vec<String> = {
        let mut v = vec!["/".to_string()];
        let mut acc = String::new();
        for seg in p.split('/').filter(|s| !s.is_empty()) {
            acc.push('/');
            acc.push_str(seg);
            v.push(acc.clone());
        }
        v
    };
    let p2 = p.clone();
    (0..5u8, prop::sample::select(ancestors), segment(), prefix()).prop_map(
        move |(k, anc, seg, other)| {
            let s = match k {
                0 => None,
                1 => Some(p2.clone()),
                2 => Some(anc),
                3 => Some(if p2 == "/" {
                    format!("/{seg}")
                } else {
                    format!("{p2}/{seg}")
                }),
                _ => Some(other),
            };
            (p2.clone(), s)
        },
    )
}

fn route_row() -> impl Strategy<Value = Row> {
    let rewrite = prop_oneof![
        Just(None),
        Just(Some("/".to_string())),
        prefix().prop_map(Some)
    ];
    let base = prop_oneof![
        Just(String::new()),
        prefix().prop_filter("base paths are empty or not /", |b| b != "/"),
        Just("/services/data/v58.0".to_string()),
        Just("/é\\".to_string()),
    ];
    (prefix().prop_flat_map(strip_for), rewrite, base).prop_map(|((p, s), r, b)| (p, s, r, b))
}

fn route_table() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(route_row(), 1..7).prop_map(|rows| {
        let mut seen = std::collections::HashSet::new();
        rows.into_iter()
            .filter(|r| seen.insert(r.0.clone()))
            .collect()
    })
}

/// A plain path: often under one of the route or strip prefixes, with extra segments, a trailing
/// slash and a query.
fn plain_path(rows: &[Row]) -> impl Strategy<Value = String> {
    // Route prefixes and strip prefixes (those longer than their route's prefix strip only
    // some of its paths: the path equal to one is an edge).
    let starts: Vec<String> = rows
        .iter()
        .flat_map(|r| [Some(r.0.clone()), r.1.clone()])
        .flatten()
        .chain(["/".into()])
        .collect();
    (
        prop::sample::select(starts),
        prop::collection::vec(segment(), 0..3),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            "",
            "a=b",
            "x=$1&y=(2)",
            "q?r/s",
            "\\1",
        ])),
    )
        .prop_map(|(start, segs, slash, query)| {
            let mut p = if start == "/" { String::new() } else { start };
            for s in segs {
                p.push('/');
                p.push_str(s);
            }
            if slash || p.is_empty() {
                p.push('/');
            }
            if let Some(q) = query {
                p.push('?');
                p.push_str(q);
            }
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The guarantee of the auto engine: for every plain path, Envoy's exact map, longest
    /// prefix key and the leaf's rewrite give the route and the
    /// outgoing `:path` the core gives.
    #[test]
    fn native_route_leaves_route_and_rewrite_plain_paths_like_the_core(
        (rows, paths) in route_table().prop_flat_map(|rows| {
            let paths = prop::collection::vec(plain_path(&rows), 1..8);
            (Just(rows), paths)
        })
    ) {
        let re = plain();
        for raw in paths {
            if !re.is_match(&raw) {
                // The slow route's business (e.g. `\` in a query): the filter decides.
                continue;
            }
            prop_assert_eq!(envoy(&rows, &raw), core(&rows, &raw), "{:?} {:?}", rows, raw);
        }
    }
}
