//! RFC 8693 token exchange (`oauth2_token_exchange`): the request that trades a subject token
//! (read from `subject_token_file` by `egressctl token refresh`) for an access token, and the
//! checks its reply gets on top of the ordinary token reply ([`super::reply`]).
//!
//! What the reply may be: the issued token is sent to the target as `Authorization: Bearer`,
//! so it must be usable as an access token. `issued_token_type` (REQUIRED by RFC 8693, but
//! tolerated when missing, as some servers leave it out) must be
//! `urn:ietf:params:oauth:token-type:access_token` or `...:jwt`; `token_type` must be
//! `Bearer` (any case; absent is taken as Bearer). `token_type: N_A` means, per RFC 8693
//! section 2.2.1, that the issued token is not an access token: it is refused, with that
//! reason, rather than sent as one. `expires_in` is read as for client credentials (else the
//! JWT's `exp`, else `default_lifetime`).

use super::reply::{parse_reply, FetchError, FetchedToken, MAX_REPLY_BYTES};
use super::request::{form_body, token_request_headers, TokenRequest};
use crate::target_url::TargetUrl;
use serde::Deserialize;

/// `grant_type` of RFC 8693.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The default `subject_token_type`: a JWT (a projected service-account token).
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `issued_token_type` of an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The token types RFC 8693 section 3 defines (others must be absolute URIs).
pub const KNOWN_TOKEN_TYPES: [&str; 6] = [
    ACCESS_TOKEN_TYPE,
    "urn:ietf:params:oauth:token-type:refresh_token",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:saml1",
    "urn:ietf:params:oauth:token-type:saml2",
    JWT_TOKEN_TYPE,
];

/// What one exchange request says besides client authentication.
#[derive(Clone, Copy)]
pub struct Exchange<'a> {
    pub token_url: &'a TargetUrl,
    /// The subject token, as read from the file (see [`super::token_file`]).
    pub subject_token: &'a str,
    pub subject_token_type: &'a str,
    pub audience: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub scopes: &'a [String],
}

impl std::fmt::Debug for Exchange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("token_url", &self.token_url.origin_and_base())
            .field("subject_token", &"<redacted>")
            .field("subject_token_type", &self.subject_token_type)
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// How the exchanging client authenticates, if at all (RFC 8693 leaves it to the server).
#[derive(Clone, Copy)]
pub enum ExchangeClient<'a> {
    /// No client authentication, no `client_id`.
    Anonymous,
    /// A public client: `client_id` in the form, nothing secret.
    Public { client_id: &'a str },
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret.
    Basic { client_id: &'a str, secret: &'a str },
    /// `client_secret_post`: id and secret in the form.
    Post { client_id: &'a str, secret: &'a str },
}

/// The token-exchange request: `grant_type`, `subject_token`, `subject_token_type`, then
/// `audience`, `resource` and `scope` when set, then client authentication.
pub fn build_exchange_request(x: &Exchange<'_>, client: ExchangeClient<'_>) -> TokenRequest {
    let mut headers = token_request_headers(x.token_url);
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("subject_token", x.subject_token),
        ("subject_token_type", x.subject_token_type),
    ];
    if let Some(a) = x.audience {
        form.push(("audience", a));
    }
    if let Some(r) = x.resource {
        form.push(("resource", r));
    }
    let scope = x.scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    match client {
        ExchangeClient::Anonymous => {}
        ExchangeClient::Public { client_id } => form.push(("client_id", client_id)),
        ExchangeClient::Basic { client_id, secret } => {
            headers.push((
                "authorization".to_string(),
                super::request::basic_authorization(client_id, secret),
            ));
        }
        ExchangeClient::Post { client_id, secret } => {
            form.push(("client_id", client_id));
            form.push(("client_secret", secret));
        }
    }
    TokenRequest {
        headers,
        body: form_body(&form),
    }
}

#[derive(Deserialize)]
struct ExchangeReply {
    issued_token_type: Option<serde_json::Value>,
    token_type: Option<serde_json::Value>,
}

/// Parses a token-exchange reply: [`parse_reply`]'s checks, and the RFC 8693 fields (see the
/// module documentation for what is accepted).
pub fn parse_exchange_reply(
    status: Option<u16>,
    body: &[u8],
    now_ms: u64,
    default_lifetime_ms: u64,
) -> Result<FetchedToken, FetchError> {
    if matches!(status, Some(s) if (200..300).contains(&s)) && body.len() <= MAX_REPLY_BYTES {
        if let Ok(reply) = serde_json::from_slice::<ExchangeReply>(body) {
            match &reply.issued_token_type {
                None => {}
                Some(serde_json::Value::String(t))
                    if t == ACCESS_TOKEN_TYPE || t == JWT_TOKEN_TYPE => {}
                Some(serde_json::Value::String(t)) => {
                    return Err(FetchError::IssuedTokenType(shown_type(t)))
                }
                Some(_) => return Err(FetchError::IssuedTokenType(String::new())),
            }
            if matches!(&reply.token_type, Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case("n_a"))
            {
                return Err(FetchError::IssuedTokenType("token_type N_A".to_string()));
            }
        }
    }
    parse_reply(status, body, now_ms, default_lifetime_ms)
}

/// A token type as it may appear in a message: URN characters only, bounded.
fn shown_type(t: &str) -> String {
    t.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.'))
        .take(60)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn url() -> TargetUrl {
        TargetUrl::parse("https://sts.example.com/v1/token").unwrap()
    }

    fn header<'a>(r: &'a TokenRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_form_carries_the_subject_token_its_type_audience_resource_and_scope() {
        let url = url();
        let scopes = vec!["read".to_string(), "write".to_string()];
        let x = Exchange {
            token_url: &url,
            subject_token: "eyJ.SUBJECT.sig",
            subject_token_type: JWT_TOKEN_TYPE,
            audience: Some("api://crm"),
            resource: Some("https://crm.example.com/"),
            scopes: &scopes,
        };
        let r = build_exchange_request(&x, ExchangeClient::Anonymous);
        assert_eq!(header(&r, ":method"), Some("POST"));
        assert_eq!(header(&r, ":path"), Some("/v1/token"));
        assert_eq!(header(&r, ":authority"), Some("sts.example.com"));
        assert_eq!(
            header(&r, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(header(&r, "authorization"), None);
        assert_eq!(
            String::from_utf8(r.body.clone()).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
             &subject_token=eyJ.SUBJECT.sig\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
             &audience=api%3A%2F%2Fcrm&resource=https%3A%2F%2Fcrm.example.com%2F&scope=read+write"
        );
        assert!(!format!("{r:?}").contains("SUBJECT"));
        assert!(!format!("{x:?}").contains("SUBJECT"));
    }

    #[test]
    fn optional_parts_are_left_out_and_each_client_authentication_is_placed() {
        let url = url();
        let x = Exchange {
            token_url: &url,
            subject_token: "t",
            subject_token_type: ACCESS_TOKEN_TYPE,
            audience: None,
            resource: None,
            scopes: &[],
        };
        let body = |c| String::from_utf8(build_exchange_request(&x, c).body).unwrap();
        let base = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
                    &subject_token=t\
                    &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
        assert_eq!(body(ExchangeClient::Anonymous), base);
        assert_eq!(
            body(ExchangeClient::Public { client_id: "app 1" }),
            format!("{base}&client_id=app+1")
        );
        assert_eq!(
            body(ExchangeClient::Post {
                client_id: "app",
                secret: "s&1"
            }),
            format!("{base}&client_id=app&client_secret=s%261")
        );
        let basic = ExchangeClient::Basic {
            client_id: "my client",
            secret: "s3cr:t&",
        };
        assert_eq!(body(basic), base);
        // base64("my+client:s3cr%3At%26"), as for client credentials.
        assert_eq!(
            header(&build_exchange_request(&x, basic), "authorization"),
            Some("Basic bXkrY2xpZW50OnMzY3IlM0F0JTI2")
        );
    }

    #[test]
    fn a_normal_exchange_reply_gives_a_bearer_token() {
        let t = parse_exchange_reply(
            Some(200),
            br#"{"access_token":"issued.tok","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":300}"#,
            NOW,
            1,
        )
        .unwrap();
        assert_eq!(
            (t.token.as_str(), t.token_type.as_str(), t.expires_at_ms),
            ("issued.tok", "Bearer", NOW + 300_000)
        );
        // A JWT issued as such, no issued_token_type, no token_type: accepted.
        for body in [
            &br#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:jwt","token_type":"bearer"}"#[..],
            br#"{"access_token":"a","expires_in":60}"#,
        ] {
            assert!(parse_exchange_reply(Some(200), body, NOW, 60_000).is_ok());
        }
    }

    #[test]
    fn hostile_or_unusable_exchange_replies_are_failed_fetches_with_a_reason() {
        let cases: Vec<(Option<u16>, &[u8], &str)> = vec![
            (
                Some(200),
                br#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:id_token","token_type":"N_A"}"#,
                "bad_token_type",
            ),
            (
                Some(200),
                br#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"N_A"}"#,
                "bad_token_type",
            ),
            (
                Some(200),
                br#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:saml2"}"#,
                "bad_token_type",
            ),
            (
                Some(200),
                br#"{"access_token":"a","issued_token_type":42}"#,
                "bad_token_type",
            ),
            (
                Some(200),
                br#"{"access_token":"a","token_type":"DPoP"}"#,
                "bad_token_type",
            ),
            (
                Some(200),
                br#"{"access_token":"a\r\nx-evil: 1","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#,
                "bad_token",
            ),
            (Some(200), br#"{"issued_token_type":"x"}"#, "bad_token_type"),
            (Some(200), br#"{"token_type":"Bearer"}"#, "bad_token"),
            (Some(200), b"not json", "bad_json"),
            (Some(200), b"[\"access_token\"]", "bad_json"),
            (Some(400), br#"{"error":"invalid_grant"}"#, "status_4xx"),
            (Some(502), b"", "status_5xx"),
            (None, b"", "transport"),
            (
                Some(200),
                br#"{"access_token":"a","expires_in":0}"#,
                "bad_expires_in",
            ),
        ];
        for (status, body, reason) in cases {
            let e = parse_exchange_reply(status, body, NOW, 1000).unwrap_err();
            assert_eq!(e.reason(), reason, "{}", String::from_utf8_lossy(body));
        }
        let e = parse_exchange_reply(
            Some(200),
            br#"{"access_token":"SECRETtok","token_type":"N_A"}"#,
            NOW,
            1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("N_A"), "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = parse_exchange_reply(
            Some(200),
            br#"{"access_token":"SECRETtok","issued_token_type":"urn:x:\r\n<script>SECRET"}"#,
            NOW,
            1,
        )
        .unwrap_err();
        assert!(
            !e.to_string().contains('<') && !e.to_string().contains('\n'),
            "{e}"
        );
        let huge = vec![b' '; MAX_REPLY_BYTES + 1];
        assert_eq!(
            parse_exchange_reply(Some(200), &huge, NOW, 1).unwrap_err(),
            FetchError::TooLarge
        );
    }
}
