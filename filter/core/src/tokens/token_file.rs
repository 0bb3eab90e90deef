//! The content of a token file on the proxy's host: a projected Kubernetes service-account
//! token (`oauth2_token_exchange.subject_token_file`), or a federated client assertion
//! (`oauth2_client_credentials` with `client_auth: federated_token_file`, as Azure workload
//! identity mounts it). The file is rotated by whoever writes it, so `egressctl token refresh`
//! reads it afresh on every fetch; this module checks what it read. It never puts the content
//! in an error.

/// Largest token file accepted. Service-account tokens and assertions are a few KiB; anything
/// much larger is the wrong file.
pub const MAX_TOKEN_FILE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFileError {
    #[error("is empty (expected a token; is the projected token mounted yet?)")]
    Empty,
    #[error("is {0} bytes, larger than the {MAX_TOKEN_FILE_BYTES} bytes a token file may hold")]
    TooLarge(usize),
    #[error("is not UTF-8 text")]
    NotText,
    #[error("holds more than one line or a control character at byte {0}: expected one token")]
    NotOneToken(usize),
    #[error("holds characters a token cannot have (a JWT or an RFC 6750 token is expected)")]
    BadCharacters,
}

/// The token in a token file's bytes: surrounding whitespace (the trailing newline editors and
/// `echo` add) is removed; what remains must be one non-empty line of token characters (the
/// JWT alphabet, RFC 6750 `b64token`), since it is sent in a form body.
pub fn token_from_file(bytes: &[u8]) -> Result<String, TokenFileError> {
    if bytes.len() > MAX_TOKEN_FILE_BYTES {
        return Err(TokenFileError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| TokenFileError::NotText)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty);
    }
    if let Some(at) = token
        .bytes()
        .position(|b| b.is_ascii_control() || b == b' ')
    {
        let offset = text.len() - text.trim_start().len();
        return Err(TokenFileError::NotOneToken(offset + at));
    }
    if !super::reply::is_b64token(token) {
        return Err(TokenFileError::BadCharacters);
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl";

    #[test]
    fn the_trailing_newline_and_surrounding_blanks_are_not_part_of_the_token() {
        for content in [
            JWT.to_string(),
            format!("{JWT}\n"),
            format!("{JWT}\r\n"),
            format!("  {JWT}\n\n"),
        ] {
            assert_eq!(token_from_file(content.as_bytes()).unwrap(), JWT);
        }
    }

    #[test]
    fn an_empty_or_blank_file_is_a_clear_error() {
        for content in ["", "\n", "  \r\n\t"] {
            let e = token_from_file(content.as_bytes()).unwrap_err();
            assert_eq!(e, TokenFileError::Empty);
            assert!(e.to_string().contains("is empty"), "{e}");
        }
    }

    #[test]
    fn a_huge_file_is_refused_before_it_is_looked_at() {
        let huge = vec![b'a'; MAX_TOKEN_FILE_BYTES + 1];
        assert_eq!(
            token_from_file(&huge).unwrap_err(),
            TokenFileError::TooLarge(MAX_TOKEN_FILE_BYTES + 1)
        );
        let largest = vec![b'a'; MAX_TOKEN_FILE_BYTES];
        assert_eq!(
            token_from_file(&largest).unwrap().len(),
            MAX_TOKEN_FILE_BYTES
        );
    }

    #[test]
    fn two_lines_binary_or_foreign_characters_are_refused_without_echoing_them() {
        let two = format!("{JWT}\nSECRET-second-line\n");
        let e = token_from_file(two.as_bytes()).unwrap_err();
        assert_eq!(e, TokenFileError::NotOneToken(JWT.len()));
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert_eq!(
            token_from_file(b"\xff\xfeSECRET").unwrap_err(),
            TokenFileError::NotText
        );
        let e = token_from_file("SECRET\"quoted\"".as_bytes()).unwrap_err();
        assert_eq!(e, TokenFileError::BadCharacters);
        assert!(!e.to_string().contains("SECRET"));
        assert_eq!(
            token_from_file(b"a b").unwrap_err(),
            TokenFileError::NotOneToken(1)
        );
        assert_eq!(
            token_from_file(b"  a\x00b").unwrap_err(),
            TokenFileError::NotOneToken(3)
        );
    }
}
