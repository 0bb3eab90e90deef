//! Checks on config strings that end up in HTTP headers, forms or Envoy's config: control
//! characters, DNS names. The messages never quote the value (it may be a secret).

/// Why `value` cannot be used, when it holds a control character (any C0 control including
/// tab, CR, LF and NUL; DEL; a C1 control). `expanded` says whether `${VAR}` put it there.
pub fn control_char_problem(value: &str, from_variable: bool) -> Option<String> {
    let count = value.chars().count();
    let (i, c) = value.chars().enumerate().find(|(_, c)| c.is_control())?;
    let name = match c {
        '\n' => "a line feed",
        '\r' => "a carriage return",
        '\t' => "a tab",
        '\0' => "a NUL",
        '\x7f' => "a DEL",
        _ => "a control character",
    };
    let place = if i + 1 == count {
        "at the end"
    } else if i == 0 {
        "at the start"
    } else {
        "inside the value"
    };
    let hint = if from_variable {
        " (it comes from an environment variable: strip the trailing newline where the variable is set)"
    } else {
        ""
    };
    Some(format!(
        "contains {name} (U+{:04X}) {place}; control characters are not allowed in config values{hint}",
        u32::from(c)
    ))
}

/// A host name usable as TLS SNI (and as a target URL's host): dot-separated labels of letters, digits, `-` (not at either
/// end of a label) and `_`, each 1 to 63 long, 253 in all. One trailing dot is not allowed.
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_named_without_quoting_the_value() {
        let m = control_char_problem("s3cret\n", true).unwrap_or_default();
        assert!(m.contains("line feed") && m.contains("at the end"), "{m}");
        assert!(m.contains("environment variable"), "{m}");
        assert!(!m.contains("s3cret"), "{m}");
        for bad in ["\ra", "a\0b", "a\x7f", "\u{1b}[0m", "a\tb", "a\u{85}"] {
            assert!(control_char_problem(bad, false).is_some(), "{bad:?}");
        }
        for good in ["", "plain", "ünïcode", "with space", "a=b&c"] {
            assert_eq!(control_char_problem(good, false), None, "{good:?}");
        }
    }

    #[test]
    fn dns_names() {
        for good in [
            "a",
            "api.example.com",
            "my-host_1.internal",
            "xn--bcher-kva.example",
        ] {
            assert!(is_dns_name(good), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "a\nb",
            "a/b",
            "a:443",
            "a.",
            &"x".repeat(64),
        ] {
            assert!(!is_dns_name(bad), "{bad:?}");
        }
    }
}
