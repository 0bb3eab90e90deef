//! RFC 8693 token exchange (`oauth2_token_exchange`): a subject token (read from
//! `subject_token_file` by `egressctl token refresh`) traded for an access token. The request
//! is built by [`super::request::build_request`] (`GrantPlan::TokenExchange`, the subject token
//! as its `assertion`); this module has the grant's names and the checks its reply gets on top
//! of the ordinary token reply ([`super::reply`]), [`parse_grant_reply`] picking them.
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

/// The reply parser of a grant: token exchange adds its checks, every other grant's reply is
/// an ordinary token reply.
pub fn parse_grant_reply(
    grant: &crate::tokens::grant::GrantPlan,
    status: Option<u16>,
    body: &[u8],
    now_ms: u64,
    default_lifetime_ms: u64,
) -> Result<FetchedToken, FetchError> {
    match grant {
        crate::tokens::grant::GrantPlan::TokenExchange { .. } => {
            parse_exchange_reply(status, body, now_ms, default_lifetime_ms)
        }
        _ => parse_reply(status, body, now_ms, default_lifetime_ms),
    }
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
    use crate::config::{ClientAuth, SigningAlg};
    use crate::plan::OAuth2Credential;
    use crate::secret::Secret;
    use crate::target_url::TargetUrl;
    use crate::tokens::grant::GrantPlan;
    use crate::tokens::request::{build_request, TokenRequest};

    const NOW: u64 = 1_700_000_000_000;

    fn cred(client_auth: ClientAuth, client_id: &str, secret: Option<&str>) -> OAuth2Credential {
        OAuth2Credential {
            token_cluster: "egress_token_crm".into(),
            fetch: false,
            grant: GrantPlan::TokenExchange {
                subject_token_type: JWT_TOKEN_TYPE.into(),
                audience: Some("api://crm".into()),
                resource: Some("https://crm.example.com/".into()),
            },
            token_url: Some(TargetUrl::parse("https://sts.example.com/v1/token").unwrap()),
            client_id: client_id.into(),
            client_secret: secret.map(Secret::new),
            scopes: vec!["read".into(), "write".into()],
            params: Default::default(),
            client_auth,
            signing_alg: SigningAlg::RS256,
            key_id: None,
            private_key_pem: None,
            refresh_before_expiry_ms: 60_000,
            token_timeout_ms: 5_000,
            default_lifetime_ms: 300_000,
        }
    }

    fn header<'a>(r: &'a TokenRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    const FORM: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
                        &subject_token=eyJ.SUBJECT.sig\
                        &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
                        &audience=api%3A%2F%2Fcrm&resource=https%3A%2F%2Fcrm.example.com%2F\
                        &scope=read+write";

    #[test]
    fn the_form_carries_the_subject_token_its_type_audience_resource_and_scope() {
        let r = build_request(&cred(ClientAuth::None, "", None), Some("eyJ.SUBJECT.sig")).unwrap();
        assert_eq!(header(&r, ":method"), Some("POST"));
        assert_eq!(header(&r, ":path"), Some("/v1/token"));
        assert_eq!(header(&r, ":authority"), Some("sts.example.com"));
        assert_eq!(
            header(&r, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(header(&r, "authorization"), None);
        assert_eq!(String::from_utf8(r.body.clone()).unwrap(), FORM);
        assert!(!format!("{r:?}").contains("SUBJECT"));
        // No subject token read: no request.
        assert!(build_request(&cred(ClientAuth::None, "", None), None).is_err());
        // Optional parts left out.
        let mut bare = cred(ClientAuth::None, "", None);
        bare.grant = GrantPlan::TokenExchange {
            subject_token_type: ACCESS_TOKEN_TYPE.into(),
            audience: None,
            resource: None,
        };
        bare.scopes.clear();
        assert_eq!(
            String::from_utf8(build_request(&bare, Some("t")).unwrap().body).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
             &subject_token=t\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
        );
    }

    #[test]
    fn each_client_authentication_of_an_exchange_is_placed() {
        let body = |c: OAuth2Credential| {
            String::from_utf8(build_request(&c, Some("eyJ.SUBJECT.sig")).unwrap().body).unwrap()
        };
        assert_eq!(
            body(cred(ClientAuth::None, "app 1", None)),
            format!("{FORM}&client_id=app+1")
        );
        assert_eq!(
            body(cred(ClientAuth::ClientSecretPost, "app", Some("s&1"))),
            format!("{FORM}&client_id=app&client_secret=s%261")
        );
        let basic = cred(ClientAuth::ClientSecretBasic, "my client", Some("s3cr:t&"));
        let r = build_request(&basic, Some("eyJ.SUBJECT.sig")).unwrap();
        assert_eq!(String::from_utf8(r.body.clone()).unwrap(), FORM);
        // base64("my+client:s3cr%3At%26"), as for client credentials.
        assert_eq!(
            header(&r, "authorization"),
            Some("Basic bXkrY2xpZW50OnMzY3IlM0F0JTI2")
        );
        assert_eq!(crate::tokens::grant::assertion_claims(&basic), None);
    }

    #[test]
    fn a_federated_client_assertion_is_the_file_content_and_nothing_else() {
        let mut c = cred(ClientAuth::FederatedTokenFile, "azure-app", None);
        c.grant = GrantPlan::ClientCredentials;
        c.scopes = vec!["https://graph.microsoft.com/.default".into()];
        let r = build_request(&c, Some("eyJ.FEDERATED.sig")).unwrap();
        assert_eq!(header(&r, "authorization"), None);
        assert_eq!(
            String::from_utf8(r.body.clone()).unwrap(),
            "grant_type=client_credentials&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default\
             &client_id=azure-app\
             &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
             &client_assertion=eyJ.FEDERATED.sig"
        );
        assert!(!format!("{r:?}").contains("FEDERATED"));
        // Nothing is signed for it, and without the file's content there is no request.
        assert_eq!(crate::tokens::grant::assertion_claims(&c), None);
        assert!(!crate::tokens::grant::signs(&c));
        assert!(build_request(&c, None).is_err());
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
