//! `${VAR}` and `${VAR:-default}` expansion in string values.
//!
//! `$${` writes a literal `${`. A variable that is unset (and has no default) is an error naming
//! the variable; the caller adds the field path.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("environment variable {0} is not set (write ${{{0}:-default}} for a default)")]
    Missing(String),
    #[error("unterminated ${{ in value")]
    Unterminated,
    #[error("invalid variable name {0:?} in ${{...}}")]
    BadName(String),
}

/// Expands every `${...}` in `input`, looking variables up with `lookup`.
/// Returns all missing variables, not only the first.
pub fn expand(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<ExpandError>> {
    let mut out = String::with_capacity(input.len());
    let mut errors = Vec::new();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            errors.push(ExpandError::Unterminated);
            rest = "";
            break;
        };
        let body = &body_start[..end];
        rest = &body_start[end + 1..];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            errors.push(ExpandError::BadName(name.to_string()));
            continue;
        }
        match (lookup(name), default) {
            (Some(v), _) if !(v.is_empty() && default.is_some()) => out.push_str(&v),
            (_, Some(d)) => out.push_str(d),
            (Some(v), None) => out.push_str(&v),
            (None, None) => errors.push(ExpandError::Missing(name.to_string())),
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("k-123".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        assert_eq!(expand("${KEY}", &env).unwrap(), "k-123");
        assert_eq!(expand("a-${KEY}-b", &env).unwrap(), "a-k-123-b");
        assert_eq!(expand("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("${NOPE:-}", &env).unwrap(), "");
        assert_eq!(
            expand("cost $5 and $${KEY}", &env).unwrap(),
            "cost $5 and ${KEY}"
        );
    }

    #[test]
    fn reports_every_missing_variable_by_name() {
        let errs = expand("${A}/${KEY}/${B}", &env).unwrap_err();
        assert_eq!(
            errs,
            vec![
                ExpandError::Missing("A".into()),
                ExpandError::Missing("B".into())
            ]
        );
    }

    #[test]
    fn rejects_unterminated_and_invalid_names() {
        assert_eq!(
            expand("${KEY", &env).unwrap_err(),
            vec![ExpandError::Unterminated]
        );
        assert_eq!(
            expand("${1X}", &env).unwrap_err(),
            vec![ExpandError::BadName("1X".into())]
        );
    }
}
