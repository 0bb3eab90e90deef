//! What each auth type puts on a request, rendered once when the config is loaded.

use crate::plan::Credential;
use base64::Engine as _;

/// The header a target's requests carry, computed at load (Basic is encoded once, here).
#[derive(Clone, PartialEq, Eq)]
pub enum Injection {
    /// No header (no auth, or mTLS: the cluster presents the client certificate).
    None,
    /// A fixed header: API key, static bearer token, basic auth.
    Header { name: String, value: String },
    /// `Authorization: Bearer <token>` with a token from the token cache.
    OAuth2Bearer,
    /// An AWS SigV4 `Authorization` (with `x-amz-*` headers), computed per request by the
    /// glue once the request's final path (and, for `payload: signed`, its body) is known.
    AwsSigv4,
}

impl std::fmt::Debug for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Injection::None => f.write_str("None"),
            Injection::Header { name, .. } => write!(f, "Header({name}: <redacted>)"),
            Injection::OAuth2Bearer => f.write_str("OAuth2Bearer"),
            Injection::AwsSigv4 => f.write_str("AwsSigv4"),
        }
    }
}

impl Injection {
    pub fn from_credential(credential: &Credential) -> Self {
        match credential {
            Credential::None | Credential::Mtls => Injection::None,
            Credential::ApiKey { header, key } => Injection::Header {
                name: header.to_ascii_lowercase(),
                value: key.expose().to_string(),
            },
            Credential::Bearer { token } => Injection::Header {
                name: "authorization".into(),
                value: bearer(token.expose()),
            },
            Credential::Basic { username, password } => Injection::Header {
                name: "authorization".into(),
                value: basic(username, password.expose()),
            },
            Credential::Oauth2(_) => Injection::OAuth2Bearer,
            Credential::AwsSigv4(_) => Injection::AwsSigv4,
        }
    }

    /// The header name this injection writes, if any.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            Injection::None => None,
            Injection::Header { name, .. } => Some(name),
            Injection::OAuth2Bearer | Injection::AwsSigv4 => Some("authorization"),
        }
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn basic(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
    )
}

/// Headers removed from every request before the credential is added: the caller's own
/// credentials, so a caller can neither override nor leak one.
pub const CALLER_CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "proxy-authorization"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn basic_is_base64_of_user_colon_password() {
        assert_eq!(
            basic("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn each_auth_type_renders_its_header() {
        let api = Injection::from_credential(&Credential::ApiKey {
            header: "X-API-Key".into(),
            key: Secret::new("k1"),
        });
        assert_eq!(
            api,
            Injection::Header {
                name: "x-api-key".into(),
                value: "k1".into()
            }
        );
        let b = Injection::from_credential(&Credential::Bearer {
            token: Secret::new("t1"),
        });
        assert_eq!(b.header_name(), Some("authorization"));
        assert_eq!(
            Injection::from_credential(&Credential::Mtls),
            Injection::None
        );
    }

    #[test]
    fn debug_output_of_an_injection_hides_the_value() {
        let b = Injection::from_credential(&Credential::Bearer {
            token: Secret::new("supersecret"),
        });
        assert!(!format!("{b:?}").contains("supersecret"));
    }
}
