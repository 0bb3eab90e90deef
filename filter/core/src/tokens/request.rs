//! The token request of each grant (client credentials, RFC 6749 section 4.4; JWT bearer,
//! RFC 7523 section 2.1; token exchange, RFC 8693), with the client authentication methods. The filter sends it through a callout, `egressctl` through reqwest.

use crate::config::ClientAuth;
use crate::plan::OAuth2Credential;
use crate::target_url::TargetUrl;
use crate::tokens::exchange::TOKEN_EXCHANGE_GRANT;
pub use crate::tokens::grant::assertion_claims;
use crate::tokens::grant::{GrantPlan, JWT_BEARER_GRANT_TYPE};
use crate::tokens::FetchError;
use base64::Engine as _;

/// `client_assertion_type` for `private_key_jwt` (RFC 7523).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Headers (pseudo-headers included, as a proxy-wasm callout wants them) and form body.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        write!(
            f,
            "TokenRequest {{ headers: {names:?}, body: <{} bytes> }}",
            self.body.len()
        )
    }
}

/// Builds the token request for the credential's grant. `assertion` is what the caller
/// obtained for it: the signed JWT of [`assertion_claims`] (the grant's assertion for
/// `oauth2_jwt_bearer`, the client assertion for `private_key_jwt`), or the content of the
/// token file the refresher read (the subject token of `oauth2_token_exchange`, the client
/// assertion of `federated_token_file`).
pub fn build_request(
    cred: &OAuth2Credential,
    assertion: Option<&str>,
) -> Result<TokenRequest, FetchError> {
    let token_url = cred.token_url.as_ref().ok_or(FetchError::NoTokenUrl)?;
    let mut headers = token_request_headers(token_url);
    let mut form: Vec<(&str, &str)> = Vec::new();
    // The grant's own fields; a grant whose assertion is the credential takes no client
    // assertion.
    let client_assertion = match &cred.grant {
        GrantPlan::ClientCredentials => {
            form.push(("grant_type", "client_credentials"));
            assertion
        }
        GrantPlan::JwtBearer { .. } => {
            form.push(("grant_type", JWT_BEARER_GRANT_TYPE));
            form.push((
                "assertion",
                assertion.ok_or(FetchError::Assertion("no signed assertion".to_string()))?,
            ));
            None
        }
        GrantPlan::TokenExchange {
            subject_token_type,
            audience,
            resource,
        } => {
            form.push(("grant_type", TOKEN_EXCHANGE_GRANT));
            form.push((
                "subject_token",
                assertion.ok_or(FetchError::Assertion("no subject token".to_string()))?,
            ));
            form.push(("subject_token_type", subject_token_type));
            if let Some(a) = audience {
                form.push(("audience", a));
            }
            if let Some(r) = resource {
                form.push(("resource", r));
            }
            None
        }
    };
    let scope = cred.scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    for (k, v) in &cred.params {
        form.push((k, v));
    }
    let secret = cred
        .client_secret
        .as_ref()
        .map(|s| s.expose())
        .unwrap_or("");
    match cred.client_auth {
        ClientAuth::ClientSecretBasic => {
            headers.push((
                "authorization".to_string(),
                basic_authorization(&cred.client_id, secret),
            ));
        }
        ClientAuth::ClientSecretPost => {
            form.push(("client_id", &cred.client_id));
            form.push(("client_secret", secret));
        }
        ClientAuth::PrivateKeyJwt | ClientAuth::FederatedTokenFile => {
            form.push(("client_id", &cred.client_id));
            form.push(("client_assertion_type", JWT_BEARER_ASSERTION));
            form.push((
                "client_assertion",
                client_assertion.ok_or(FetchError::Assertion("no client assertion".to_string()))?,
            ));
        }
        // A public client identifies itself (RFC 6749 section 2.3), when it has an id.
        ClientAuth::None if !cred.client_id.is_empty() => form.push(("client_id", &cred.client_id)),
        ClientAuth::None => {}
    }
    Ok(TokenRequest {
        headers,
        body: form_body(&form),
    })
}

/// The headers of a form POST to `url` (pseudo-headers first).
pub fn token_request_headers(url: &TargetUrl) -> Vec<(String, String)> {
    let path = if url.base_path.is_empty() {
        "/".to_string()
    } else {
        url.base_path.clone()
    };
    vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), path),
        (":authority".to_string(), url.authority()),
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ]
}

/// `client_secret_basic` (RFC 6749 2.3.1): id and secret are form-encoded before base64.
pub fn basic_authorization(client_id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// `application/x-www-form-urlencoded` body of these pairs, in order.
pub fn form_body(form: &[(&str, &str)]) -> Vec<u8> {
    form.iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SigningAlg;
    use crate::secret::Secret;

    fn cred(auth: ClientAuth) -> OAuth2Credential {
        OAuth2Credential {
            token_cluster: "egress_token_sf".into(),
            fetch: true,
            grant: GrantPlan::ClientCredentials,
            token_url: Some(
                TargetUrl::parse("https://login.example.com/services/oauth2/token").unwrap(),
            ),
            client_id: "my client".into(),
            client_secret: Some(Secret::new("s3cr:t&")),
            scopes: vec!["api".into(), "refresh_token".into()],
            params: [(
                "audience".to_string(),
                "https://api.example.com".to_string(),
            )]
            .into(),
            client_auth: auth,
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

    #[test]
    fn client_secret_basic_puts_encoded_credentials_in_authorization() {
        let r = build_request(&cred(ClientAuth::ClientSecretBasic), None).unwrap();
        assert_eq!(header(&r, ":method"), Some("POST"));
        assert_eq!(header(&r, ":path"), Some("/services/oauth2/token"));
        assert_eq!(header(&r, ":authority"), Some("login.example.com"));
        // base64("my+client:s3cr%3At%26")
        assert_eq!(
            header(&r, "authorization"),
            Some("Basic bXkrY2xpZW50OnMzY3IlM0F0JTI2")
        );
        let body = String::from_utf8(r.body).unwrap();
        assert_eq!(body, "grant_type=client_credentials&scope=api+refresh_token&audience=https%3A%2F%2Fapi.example.com");
    }

    #[test]
    fn client_secret_post_puts_credentials_in_the_form() {
        let r = build_request(&cred(ClientAuth::ClientSecretPost), None).unwrap();
        assert_eq!(header(&r, "authorization"), None);
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.ends_with("&client_id=my+client&client_secret=s3cr%3At%26"),
            "{body}"
        );
    }

    #[test]
    fn private_key_jwt_sends_the_assertion_and_no_secret() {
        let r = build_request(&cred(ClientAuth::PrivateKeyJwt), Some("a.b.c")).unwrap();
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert!(body.contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"));
        assert!(body.contains("client_assertion=a.b.c"));
        assert!(!body.contains("s3cr"));
        assert_eq!(header(&r, "authorization"), None);
        assert!(!format!("{r:?}").contains("a.b.c"));
        let claims = assertion_claims(&cred(ClientAuth::PrivateKeyJwt)).unwrap();
        assert_eq!(
            claims.audience,
            "https://login.example.com/services/oauth2/token"
        );
        assert_eq!(
            (claims.issuer.as_str(), claims.subject.as_deref()),
            ("my client", Some("my client"))
        );
        assert_eq!(assertion_claims(&cred(ClientAuth::ClientSecretPost)), None);
    }

    fn jwt_bearer() -> OAuth2Credential {
        OAuth2Credential {
            grant: GrantPlan::JwtBearer {
                issuer: "egress@proj.iam.gserviceaccount.com".into(),
                subject: None,
                audience: None,
            },
            client_id: String::new(),
            client_secret: None,
            params: Default::default(),
            client_auth: ClientAuth::None,
            ..cred(ClientAuth::None)
        }
    }

    #[test]
    fn jwt_bearer_sends_the_grant_type_the_assertion_and_the_scopes_and_no_client() {
        let with_id = OAuth2Credential {
            client_id: "jwt client".into(),
            ..jwt_bearer()
        };
        let body = String::from_utf8(build_request(&with_id, Some("h.p.s")).unwrap().body).unwrap();
        assert!(body.ends_with("&client_id=jwt+client"), "{body}");
        let r = build_request(&jwt_bearer(), Some("h.p.s")).unwrap();
        assert_eq!(header(&r, ":path"), Some("/services/oauth2/token"));
        assert_eq!(header(&r, "authorization"), None);
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert_eq!(
            body,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=h.p.s&scope=api+refresh_token"
        );
        assert!(!format!("{r:?}").contains("h.p.s"));
        // No assertion, no request: never an empty grant.
        assert!(matches!(
            build_request(&jwt_bearer(), None),
            Err(FetchError::Assertion(_))
        ));
        // A push-only target whose token URL is in a key file cannot be fetched here.
        let no_url = OAuth2Credential {
            token_url: None,
            ..jwt_bearer()
        };
        assert_eq!(
            build_request(&no_url, Some("h.p.s")),
            Err(FetchError::NoTokenUrl)
        );
    }

    #[test]
    fn jwt_bearer_claims_default_the_audience_to_the_token_url_and_carry_the_scopes() {
        let c = assertion_claims(&jwt_bearer()).unwrap();
        assert_eq!(c.issuer, "egress@proj.iam.gserviceaccount.com");
        assert_eq!(c.subject, None);
        assert_eq!(
            c.audience,
            "https://login.example.com/services/oauth2/token"
        );
        assert_eq!(c.scope.as_deref(), Some("api refresh_token"));
        let explicit = OAuth2Credential {
            grant: GrantPlan::JwtBearer {
                issuer: "i".into(),
                subject: Some("s".into()),
                audience: Some("https://aud.example.com".into()),
            },
            scopes: vec![],
            ..jwt_bearer()
        };
        let c = assertion_claims(&explicit).unwrap();
        assert_eq!(
            (c.subject.as_deref(), c.audience.as_str(), c.scope),
            (Some("s"), "https://aud.example.com", None)
        );
    }
}
