//! Property tests over the config loader: arbitrary text, arbitrary bytes, and mutations of
//! examples/config.yaml never panic, and every rejection is a list of errors each with a field
//! path or a line:column, rendered one line per error.
//!
//! Bounded for `cargo test` (a few seconds); run longer with `EGRESS_FUZZ_CASES`, e.g.
//! `EGRESS_FUZZ_CASES=20000 cargo test -p egress-core --release --test config_fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use egress_core::config::load::{load_bytes, load_str};
use egress_core::config::{Config, ConfigErrors};
use proptest::prelude::*;
use proptest::test_runner::Config as RunnerConfig;
use support::{env, SEED};

/// Cases per property: `EGRESS_FUZZ_CASES`, else a count that runs in a few seconds.
fn cases(default: u32) -> RunnerConfig {
    let cases = std::env::var("EGRESS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    RunnerConfig {
        cases,
        // No regression files written into the source tree: a failure prints its input.
        failure_persistence: None,
        ..RunnerConfig::default()
    }
}

/// The loader's contract, whatever it was given.
fn check(input: &str, result: Result<Config, ConfigErrors>) -> Result<(), TestCaseError> {
    let Err(errs) = result else { return Ok(()) };
    prop_assert!(!errs.is_empty(), "rejected without an error: {input:?}");
    let text = errs.to_string();
    prop_assert_eq!(
        text.lines().count(),
        errs.len(),
        "one line per error: {:?}",
        text
    );
    for e in errs.iter() {
        prop_assert!(!e.message.trim().is_empty(), "empty message in {text:?}");
        prop_assert!(
            !e.path.is_empty() || e.location.is_some() || e.message.contains("empty"),
            "an error with neither a field path nor a position: {e:?} for {input:?}"
        );
        if let Some((line, col)) = e.location {
            prop_assert!(line >= 1 && col >= 1, "{e:?}");
        }
    }
    Ok(())
}

/// Values a mutation writes into the seed: wrong types, edge numbers, YAML syntax, control
/// characters, variables, folders, long and non-ASCII text.
const VALUES: &[&str] = &[
    "",
    "~",
    "null",
    "true",
    "0",
    "-1",
    "65536",
    "1e400",
    "[]",
    "{}",
    "[a, b]",
    "{a: 1}",
    "\"\"",
    "'x'",
    "\"a\\nb\"",
    "\"a\\0b\"",
    "\"\\t\"",
    "\"\\u007f\"",
    "\"\\r\\n\"",
    "${SALESFORCE_CLIENT_ID}",
    "${UNSET_VAR}",
    "${",
    "$${x}",
    "${1BAD}",
    "/",
    ".",
    "..",
    "/tmp",
    "http://x",
    "https://",
    "https://u:p@h/",
    "https://h:0/",
    "https://h/?q#f",
    "*alias",
    "&anchor x",
    "!!binary aGk=",
    "!tag x",
    "|\n  block\n",
    ">\n  folded\n",
    "- item",
    "? complex",
    ": colon",
    "# comment",
    "\"\u{feff}\"",
    "é",
    "日本",
    "\u{202e}",
    "0x10",
    "0o7",
    ".inf",
    "-.nan",
    "2001-01-01",
    "GET",
    "FETCH",
    "mtls",
    "oauth2_client_credentials",
    "api_key",
    "redis",
    "memory",
    "1s",
    "0s",
    "-5s",
    "999999999999h",
    "1ms",
    "\"/egress/crm\"",
    "/egress/%2e%2e",
    "\"/egress/a b\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    ReplaceValue(usize, usize),
    Indent(usize, usize),
    InsertLine(usize, String),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::ReplaceValue(a, b)),
        (any::<usize>(), 0usize..8).prop_map(|(a, b)| Mutation::Indent(a, b)),
        (any::<usize>(), "[ -~]{0,40}").prop_map(|(a, s)| Mutation::InsertLine(a, s)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in muts {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
            Mutation::ReplaceValue(i, v) => {
                let l = &mut lines[i % n];
                let value = VALUES[v % VALUES.len()];
                *l = match l.split_once(": ") {
                    Some((key, _)) => format!("{key}: {value}"),
                    None => format!("{l} {value}"),
                };
            }
            Mutation::Indent(i, by) => {
                let l = &mut lines[i % n];
                let trimmed = l.trim_start().to_string();
                *l = format!("{}{trimmed}", " ".repeat(*by));
            }
            Mutation::InsertLine(i, s) => lines.insert(i % (n + 1), s.clone()),
            Mutation::Truncate(at) => {
                let mut joined = lines.join("\n");
                let mut cut = at % (joined.len() + 1);
                while !joined.is_char_boundary(cut) {
                    cut -= 1;
                }
                joined.truncate(cut);
                lines = joined.lines().map(str::to_string).collect();
            }
        }
    }
    lines.join("\n")
}

/// YAML-looking text: the characters YAML gives meaning to, words the schema knows.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("http:\n".to_string()),
        Just("egress:\n".to_string()),
        Just("  addr: \":8080\"\n".to_string()),
        Just("  targets:\n".to_string()),
        Just("  routes:\n".to_string()),
        Just("    - path_prefix: /egress/a\n".to_string()),
        Just("      target: a\n".to_string()),
        Just("    a:\n      url: https://a.example.com\n".to_string()),
        Just("      auth: {type: api_key, header: X-K, key: k}\n".to_string()),
        Just("\u{feff}".to_string()),
        "[-a-z:{}\\[\\],&*!|>#%@`$\"' \n\t\r\u{0}\u{7f}\u{feff}]{0,12}",
        (0usize..VALUES.len()).prop_map(|i| VALUES[i].to_string()),
    ];
    prop::collection::vec(token, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text, load_str(&text, &env))?;
    }

    #[test]
    fn yaml_looking_text_never_panics(text in yamlish()) {
        check(&text, load_str(&text, &env))?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        check(&shown, load_bytes(&bytes, Some(std::path::Path::new(".")), &env))?;
    }

    #[test]
    fn mutations_of_the_example_never_panic(muts in prop::collection::vec(mutation(), 1..5)) {
        let text = apply(SEED, &muts);
        check(&text, load_bytes(text.as_bytes(), Some(std::path::Path::new(".")), &env))?;
    }
}

#[test]
fn deep_nesting_and_alias_bombs_are_errors_not_crashes() {
    let deep = format!("http: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let errs = load_str(&deep, &env).unwrap_err();
    assert!(!errs.is_empty());
    let deep_map = format!(
        "http:\n{}",
        (1..2000)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect::<String>()
    );
    assert!(load_str(&deep_map, &env).is_err());
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("b{}", i - 1)
        };
        bomb.push_str(&format!("b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    bomb.push_str("http: {addr: \":8080\"}\negress: {}\n");
    assert!(load_str(&bomb, &env).is_err());
}
