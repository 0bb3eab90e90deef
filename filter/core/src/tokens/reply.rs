//! Parsing the token endpoint's reply. Anything off is a failed fetch with a reason code that
//! never contains the token or a secret.

use base64::Engine as _;
use serde::Deserialize;

/// Largest reply body accepted.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Longest token accepted (it goes into a header).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token as fetched, before it becomes a [`super::TokenRecord`].
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedToken {
    pub token: String,
    pub token_type: String,
    pub expires_at_ms: u64,
    /// Where the expiry came from: `expires_in`, `jwt_exp` or `default`.
    pub expiry_source: &'static str,
}

impl std::fmt::Debug for FetchedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FetchedToken {{ token: <redacted>, token_type: {:?}, expires_at_ms: {}, expiry_source: {} }}",
            self.token_type, self.expires_at_ms, self.expiry_source
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("no response from the token endpoint (connect failure or timeout)")]
    Transport,
    #[error("the token endpoint answered HTTP {0}")]
    Status(u16),
    #[error("the reply is not a JSON object")]
    BadJson,
    #[error("the reply is larger than {MAX_REPLY_BYTES} bytes")]
    TooLarge,
    #[error("the reply has no access_token")]
    NoAccessToken,
    #[error("the access_token is not a valid bearer token (RFC 6750 characters, at most {MAX_TOKEN_BYTES} bytes)")]
    BadToken,
    #[error("token_type {0:?} is not supported (only Bearer)")]
    UnsupportedTokenType(String),
    #[error("the exchanged token cannot be sent as a Bearer access token ({0})")]
    IssuedTokenType(String),
    #[error("expires_in is not a positive number")]
    BadExpiresIn,
    #[error("the token had already expired when it arrived")]
    ExpiredOnArrival,
    #[error("could not build the assertion: {0}")]
    Assertion(String),
    #[error("no token URL (it comes from the key file, which only egressctl token refresh reads)")]
    NoTokenUrl,
}

impl FetchError {
    /// Short reason code for metrics and fetch state.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Transport => "transport",
            FetchError::Status(s) if *s >= 500 => "status_5xx",
            FetchError::Status(_) => "status_4xx",
            FetchError::BadJson | FetchError::TooLarge => "bad_json",
            FetchError::NoAccessToken | FetchError::BadToken | FetchError::ExpiredOnArrival => {
                "bad_token"
            }
            FetchError::UnsupportedTokenType(_) | FetchError::IssuedTokenType(_) => {
                "bad_token_type"
            }
            FetchError::BadExpiresIn => "bad_expires_in",
            FetchError::Assertion(_) => "assertion",
            FetchError::NoTokenUrl => "config",
        }
    }
}

#[derive(Deserialize)]
struct Reply {
    access_token: Option<serde_json::Value>,
    token_type: Option<serde_json::Value>,
    expires_in: Option<serde_json::Value>,
}

/// Parses a reply. `status` is `None` when no response came (connect failure, timeout).
pub fn parse_reply(
    status: Option<u16>,
    body: &[u8],
    now_ms: u64,
    default_lifetime_ms: u64,
) -> Result<FetchedToken, FetchError> {
    let status = status.ok_or(FetchError::Transport)?;
    if !(200..300).contains(&status) {
        return Err(FetchError::Status(status));
    }
    if body.len() > MAX_REPLY_BYTES {
        return Err(FetchError::TooLarge);
    }
    let reply: Reply = serde_json::from_slice(body).map_err(|_| FetchError::BadJson)?;
    let token = match reply.access_token {
        Some(serde_json::Value::String(t)) if !t.is_empty() => t,
        _ => return Err(FetchError::NoAccessToken),
    };
    if token.len() > MAX_TOKEN_BYTES || !is_b64token(&token) {
        return Err(FetchError::BadToken);
    }
    let token_type = match reply.token_type {
        None => "Bearer".to_string(),
        Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case("bearer") => t,
        Some(serde_json::Value::String(t)) => {
            let shown: String = t
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(20)
                .collect();
            return Err(FetchError::UnsupportedTokenType(shown));
        }
        Some(_) => return Err(FetchError::UnsupportedTokenType(String::new())),
    };
    let (expires_at_ms, expiry_source) = match reply.expires_in {
        Some(v) => {
            let secs = match &v {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e10)
            .ok_or(FetchError::BadExpiresIn)?;
            (now_ms.saturating_add((secs * 1000.0) as u64), "expires_in")
        }
        None => match jwt_exp_ms(&token) {
            Some(exp) => (exp, "jwt_exp"),
            None => (now_ms.saturating_add(default_lifetime_ms), "default"),
        },
    };
    if expires_at_ms <= now_ms {
        return Err(FetchError::ExpiredOnArrival);
    }
    Ok(FetchedToken {
        token,
        token_type,
        expires_at_ms,
        expiry_source,
    })
}

/// Whether a callout reply was made by the proxy itself because the token endpoint could not
/// be reached or did not answer (Envoy's 503 "upstream connect error ..." / "no healthy
/// upstream", 504 "upstream request timeout"), rather than by the token endpoint.
pub fn is_proxy_local_reply(status: Option<u16>, body: &[u8]) -> bool {
    const TEXTS: [&[u8]; 4] = [
        b"upstream connect error",
        b"no healthy upstream",
        b"upstream request timeout",
        b"upstream reset",
    ];
    matches!(status, Some(503) | Some(504)) && TEXTS.iter().any(|t| body.starts_with(t))
}

/// RFC 6750 `b64token`: what may follow `Bearer ` in a header.
pub fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The `exp` claim (as unix ms) of a JWT, read without verifying it: only used as a lifetime
/// hint when the reply has no `expires_in`.
pub fn jwt_exp_ms(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    (exp.is_finite() && exp > 0.0).then_some((exp * 1000.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn jwt(claims: &str) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc(r#"{"alg":"none"}"#), enc(claims))
    }

    #[test]
    fn a_normal_reply_gives_token_type_and_expiry() {
        let t = parse_reply(
            Some(200),
            br#"{"access_token":"abc.DEF-123_~+/=","token_type":"bearer","expires_in":3600}"#,
            NOW,
            1,
        )
        .unwrap();
        assert_eq!(t.token, "abc.DEF-123_~+/=");
        assert_eq!(t.expires_at_ms, NOW + 3_600_000);
        assert_eq!(t.expiry_source, "expires_in");
        let s = parse_reply(
            Some(200),
            br#"{"access_token":"a","expires_in":"60"}"#,
            NOW,
            1,
        )
        .unwrap();
        assert_eq!(
            (s.token_type.as_str(), s.expires_at_ms),
            ("Bearer", NOW + 60_000)
        );
    }

    #[test]
    fn missing_expires_in_falls_back_to_jwt_exp_then_the_default_lifetime() {
        let token = jwt(&format!(r#"{{"exp":{}}}"#, NOW / 1000 + 120));
        let body = format!(r#"{{"access_token":"{token}","token_type":"Bearer"}}"#);
        let t = parse_reply(Some(200), body.as_bytes(), NOW, 300_000).unwrap();
        assert_eq!(
            (t.expires_at_ms, t.expiry_source),
            (NOW + 120_000, "jwt_exp")
        );
        let t = parse_reply(
            Some(200),
            br#"{"access_token":"opaque","token_type":"Bearer"}"#,
            NOW,
            300_000,
        )
        .unwrap();
        assert_eq!(
            (t.expires_at_ms, t.expiry_source),
            (NOW + 300_000, "default")
        );
    }

    #[test]
    fn every_malformed_reply_is_a_failed_fetch_with_a_reason() {
        let cases: Vec<(Option<u16>, &[u8], &str)> = vec![
            (None, b"", "transport"),
            (Some(500), br#"{"access_token":"x"}"#, "status_5xx"),
            (Some(401), br#"{"error":"invalid_client"}"#, "status_4xx"),
            (Some(200), b"<html>", "bad_json"),
            (Some(200), b"[1,2]", "bad_json"),
            (Some(200), br#"{"token_type":"Bearer"}"#, "bad_token"),
            (Some(200), br#"{"access_token":42}"#, "bad_token"),
            (
                Some(200),
                br#"{"access_token":"a\r\nX-Evil: 1"}"#,
                "bad_token",
            ),
            (Some(200), br#"{"access_token":"a b"}"#, "bad_token"),
            (
                Some(200),
                br#"{"access_token":"a","token_type":"mac"}"#,
                "bad_token_type",
            ),
            (
                Some(200),
                br#"{"access_token":"a","expires_in":-5}"#,
                "bad_expires_in",
            ),
            (
                Some(200),
                br#"{"access_token":"a","expires_in":"soon"}"#,
                "bad_expires_in",
            ),
        ];
        for (status, body, reason) in cases {
            let err = parse_reply(status, body, NOW, 1000).unwrap_err();
            assert_eq!(err.reason(), reason, "{:?}", String::from_utf8_lossy(body));
        }
        let expired = jwt(&format!(r#"{{"exp":{}}}"#, NOW / 1000 - 10));
        let body = format!(r#"{{"access_token":"{expired}"}}"#);
        assert_eq!(
            parse_reply(Some(200), body.as_bytes(), NOW, 1).unwrap_err(),
            FetchError::ExpiredOnArrival
        );
        let huge = vec![b' '; MAX_REPLY_BYTES + 1];
        assert_eq!(
            parse_reply(Some(200), &huge, NOW, 1).unwrap_err(),
            FetchError::TooLarge
        );
    }

    #[test]
    fn envoy_generated_503_and_504_count_as_transport_failures() {
        assert!(is_proxy_local_reply(Some(503), b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"));
        assert!(is_proxy_local_reply(Some(504), b"upstream request timeout"));
        assert!(is_proxy_local_reply(Some(503), b"no healthy upstream"));
        assert!(!is_proxy_local_reply(
            Some(503),
            br#"{"error":"temporarily_unavailable"}"#
        ));
        assert!(!is_proxy_local_reply(Some(500), b"upstream connect error"));
        assert!(!is_proxy_local_reply(None, b""));
    }

    #[test]
    fn error_messages_never_contain_the_token() {
        let e = parse_reply(
            Some(200),
            br#"{"access_token":"SECRET.tok","token_type":"SECRETmac"}"#,
            NOW,
            1,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("SECRET.tok"));
        let t = parse_reply(Some(200), br#"{"access_token":"SECRETtok"}"#, NOW, 1).unwrap();
        assert!(!format!("{t:?}").contains("SECRETtok"));
    }
}
