//! A Google service-account JSON key (`auth.service_account_file` of `oauth2_jwt_bearer`),
//! parsed strictly: the fields the grant needs, never the key in an error.

use crate::secret::Secret;
use crate::target_url::TargetUrl;

/// The fields of a service-account key the JWT-bearer grant uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountKey {
    /// `iss` of the assertion.
    pub client_email: String,
    /// The RSA private key (PEM, PKCS#8); signs with RS256.
    pub private_key: Secret,
    /// `kid` header of the assertion.
    pub private_key_id: String,
    /// The token endpoint (the default `token_url`).
    pub token_uri: TargetUrl,
}

/// Why a service-account key file was refused (never quotes the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceAccountError {
    #[error("is not a JSON object (a Google service-account key file is)")]
    NotJson,
    #[error("has no {0} (a Google service-account key file has client_email, private_key, private_key_id and token_uri)")]
    Missing(&'static str),
    #[error("{0} must be a non-empty string")]
    NotString(&'static str),
    #[error("type is {0:?}, not \"service_account\"")]
    WrongType(String),
    #[error("token_uri: {0}")]
    BadTokenUri(String),
    #[error("private_key is not a PEM private key")]
    NotPem,
}

/// The largest key file read (real ones are about 2.3 KB).
pub const MAX_KEY_FILE_BYTES: usize = 64 * 1024;

impl ServiceAccountKey {
    /// Parses the key file's bytes. The PEM is checked for shape here; that it is an RSA key
    /// is checked by the signer.
    pub fn parse(bytes: &[u8]) -> Result<Self, ServiceAccountError> {
        if bytes.len() > MAX_KEY_FILE_BYTES {
            return Err(ServiceAccountError::NotJson);
        }
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|_| ServiceAccountError::NotJson)?;
        let obj = v.as_object().ok_or(ServiceAccountError::NotJson)?;
        let field = |name: &'static str| -> Result<&str, ServiceAccountError> {
            match obj.get(name) {
                None | Some(serde_json::Value::Null) => Err(ServiceAccountError::Missing(name)),
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.as_str()),
                Some(_) => Err(ServiceAccountError::NotString(name)),
            }
        };
        // `type` is optional (hand-written keys), but when present it must say what it is.
        if let Some(t) = obj.get("type") {
            match t.as_str() {
                Some("service_account") => {}
                Some(other) => return Err(ServiceAccountError::WrongType(other.to_string())),
                None => return Err(ServiceAccountError::NotString("type")),
            }
        }
        let client_email = field("client_email")?;
        let private_key = field("private_key")?;
        let private_key_id = field("private_key_id")?;
        let token_uri = TargetUrl::parse(field("token_uri")?)
            .map_err(|e| ServiceAccountError::BadTokenUri(e.to_string()))?;
        let pem = private_key.trim();
        if !(pem.starts_with("-----BEGIN ") && pem.contains("PRIVATE KEY-----")) {
            return Err(ServiceAccountError::NotPem);
        }
        if client_email.chars().any(char::is_control)
            || private_key_id.chars().any(char::is_control)
        {
            return Err(ServiceAccountError::NotString(
                "client_email/private_key_id",
            ));
        }
        Ok(Self {
            client_email: client_email.to_string(),
            private_key: Secret::new(private_key.to_string()),
            private_key_id: private_key_id.to_string(),
            token_uri,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str =
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANSECRET\n-----END PRIVATE KEY-----\n";

    fn key_json(drop: &str, patch: &[(&str, serde_json::Value)]) -> Vec<u8> {
        let mut v = serde_json::json!({
            "type": "service_account",
            "project_id": "proj",
            "private_key_id": "0123abcd",
            "private_key": PEM,
            "client_email": "egress@proj.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        let o = v.as_object_mut().unwrap();
        o.remove(drop);
        for (k, val) in patch {
            o.insert(k.to_string(), val.clone());
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_google_key_file_gives_issuer_key_id_and_token_uri() {
        let k = ServiceAccountKey::parse(&key_json("", &[])).unwrap();
        assert_eq!(k.client_email, "egress@proj.iam.gserviceaccount.com");
        assert_eq!(k.private_key_id, "0123abcd");
        assert_eq!(
            k.token_uri.origin_and_base(),
            "https://oauth2.googleapis.com/token"
        );
        assert!(k.private_key.expose().contains("BEGIN PRIVATE KEY"));
        // Debug never shows the key.
        assert!(!format!("{k:?}").contains("SECRET"));
    }

    #[test]
    fn hostile_key_files_are_refused_with_the_field_and_never_the_key() {
        for field in ["client_email", "private_key", "private_key_id", "token_uri"] {
            let e = ServiceAccountKey::parse(&key_json(field, &[])).unwrap_err();
            assert_eq!(e, ServiceAccountError::Missing(field));
            let e = ServiceAccountKey::parse(&key_json("", &[(field, 7.into())])).unwrap_err();
            assert_eq!(e, ServiceAccountError::NotString(field));
            let e = ServiceAccountKey::parse(&key_json("", &[(field, "".into())])).unwrap_err();
            assert_eq!(e, ServiceAccountError::NotString(field));
        }
        let cases: Vec<(Vec<u8>, ServiceAccountError)> = vec![
            (b"not json".to_vec(), ServiceAccountError::NotJson),
            (b"[1,2]".to_vec(), ServiceAccountError::NotJson),
            (
                vec![b' '; MAX_KEY_FILE_BYTES + 1],
                ServiceAccountError::NotJson,
            ),
            (
                key_json("", &[("type", "authorized_user".into())]),
                ServiceAccountError::WrongType("authorized_user".into()),
            ),
            (
                key_json("", &[("private_key", "MIIEvQIBADANSECRET".into())]),
                ServiceAccountError::NotPem,
            ),
            (
                key_json("", &[("client_email", "a\nb".into())]),
                ServiceAccountError::NotString("client_email/private_key_id"),
            ),
        ];
        for (bytes, want) in cases {
            let e = ServiceAccountKey::parse(&bytes).unwrap_err();
            assert_eq!(e, want);
            assert!(!e.to_string().contains("SECRET"), "{e}");
        }
        let e = ServiceAccountKey::parse(&key_json("", &[("token_uri", "ftp://x/token".into())]))
            .unwrap_err();
        assert!(matches!(e, ServiceAccountError::BadTokenUri(_)), "{e}");
        // Without `type` (a hand-written key) it is still a key.
        assert!(ServiceAccountKey::parse(&key_json("type", &[])).is_ok());
    }
}
