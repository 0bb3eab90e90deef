//! Signed JWT assertions (RFC 7523): the `private_key_jwt` client assertion and the
//! `oauth2_jwt_bearer` grant's assertion; short-lived, unique `jti`, `kid` header when known.

use crate::config::SigningAlg;
pub use crate::tokens::grant::AssertionClaims;
use jwt_simple::prelude::*;

/// Lifetime of one assertion.
pub const ASSERTION_LIFETIME_SECS: u64 = 60;

/// A parsed signing key, ready to sign assertions.
#[allow(clippy::large_enum_variant)] // one per target, built once
pub enum AssertionSigner {
    Rs256(RS256KeyPair),
    Es256(ES256KeyPair),
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AssertionSigner::Rs256(_) => "AssertionSigner(RS256, <key>)",
            AssertionSigner::Es256(_) => "AssertionSigner(ES256, <key>)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the private key is not a valid {0} PEM key (PKCS#8 or PKCS#1 for RSA, PKCS#8 or SEC1 for EC P-256)")]
    BadKey(&'static str),
    #[error("signing the client assertion failed")]
    Sign,
}

impl AssertionSigner {
    pub fn from_pem(
        alg: SigningAlg,
        pem: &str,
        key_id: Option<&str>,
    ) -> Result<Self, AssertionError> {
        Ok(match alg {
            SigningAlg::RS256 => {
                let mut k =
                    RS256KeyPair::from_pem(pem).map_err(|_| AssertionError::BadKey("RS256"))?;
                if let Some(kid) = key_id {
                    k = k.with_key_id(kid);
                }
                AssertionSigner::Rs256(k)
            }
            SigningAlg::ES256 => {
                let mut k =
                    ES256KeyPair::from_pem(pem).map_err(|_| AssertionError::BadKey("ES256"))?;
                if let Some(kid) = key_id {
                    k = k.with_key_id(kid);
                }
                AssertionSigner::Es256(k)
            }
        })
    }

    /// Signs an assertion with `claims`, valid from `now_secs` for [`ASSERTION_LIFETIME_SECS`].
    /// `jti` must be unique per assertion (servers refuse replays).
    pub fn sign(
        &self,
        claims: &AssertionClaims,
        now_secs: u64,
        jti: &str,
    ) -> Result<String, AssertionError> {
        let extra = ScopeClaim {
            scope: claims.scope.clone(),
        };
        let mut c = Claims::with_custom_claims(extra, Duration::from_secs(ASSERTION_LIFETIME_SECS))
            .with_issuer(&claims.issuer)
            .with_audience(&claims.audience)
            .with_jwt_id(jti);
        if let Some(sub) = &claims.subject {
            c = c.with_subject(sub);
        }
        // The host's clock, not the runtime's: under a proxy-wasm host only the host knows.
        c.issued_at = Some(Duration::from_secs(now_secs));
        c.invalid_before = Some(Duration::from_secs(now_secs));
        c.expires_at = Some(Duration::from_secs(now_secs + ASSERTION_LIFETIME_SECS));
        match self {
            AssertionSigner::Rs256(k) => k.sign(c),
            AssertionSigner::Es256(k) => k.sign(c),
        }
        .map_err(|_| AssertionError::Sign)
    }
}

/// The `scope` claim (only when the grant asks for scopes).
#[derive(Serialize, Deserialize)]
struct ScopeClaim {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    scope: Option<String>,
}

impl crate::tokens::coord::manager::SignAssertion for AssertionSigner {
    fn sign(
        &self,
        claims: &AssertionClaims,
        now_secs: u64,
        jti: &str,
    ) -> Result<String, crate::tokens::FetchError> {
        AssertionSigner::sign(self, claims, now_secs, jti)
            .map_err(|e| crate::tokens::FetchError::Assertion(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_claims() -> AssertionClaims {
        AssertionClaims {
            issuer: "client-1".into(),
            subject: Some("client-1".into()),
            audience: "https://login.example.com/token".into(),
            scope: None,
        }
    }

    #[test]
    fn signs_rs256_and_es256_assertions_that_verify_with_the_public_key() {
        let rsa = RS256KeyPair::generate(2048).unwrap();
        let signer =
            AssertionSigner::from_pem(SigningAlg::RS256, &rsa.to_pem().unwrap(), Some("k1"))
                .unwrap();
        let jwt = signer
            .sign(&client_claims(), 1_700_000_000, "jti-1")
            .unwrap();
        let opts = VerificationOptions {
            time_tolerance: Some(Duration::from_secs(20 * 365 * 86_400)),
            allowed_audiences: Some(["https://login.example.com/token".to_string()].into()),
            allowed_issuers: Some(["client-1".to_string()].into()),
            ..Default::default()
        };
        let claims = rsa
            .public_key()
            .verify_token::<NoCustomClaims>(&jwt, Some(opts.clone()))
            .unwrap();
        assert_eq!(claims.subject.as_deref(), Some("client-1"));
        assert_eq!(claims.jwt_id.as_deref(), Some("jti-1"));
        assert_eq!(claims.expires_at.map(|d| d.as_secs()), Some(1_700_000_060));
        let header = Token::decode_metadata(&jwt).unwrap();
        assert_eq!((header.algorithm(), header.key_id()), ("RS256", Some("k1")));

        let ec = ES256KeyPair::generate();
        let signer =
            AssertionSigner::from_pem(SigningAlg::ES256, &ec.to_pem().unwrap(), None).unwrap();
        let jwt = signer
            .sign(&client_claims(), 1_700_000_000, "jti-2")
            .unwrap();
        ec.public_key()
            .verify_token::<NoCustomClaims>(&jwt, Some(opts))
            .unwrap();
    }

    #[test]
    fn a_bad_key_is_refused_without_echoing_it() {
        let e = AssertionSigner::from_pem(
            SigningAlg::RS256,
            "-----BEGIN PRIVATE KEY-----\nSECRETgarbage\n",
            None,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("SECRET"));
        let ec = ES256KeyPair::generate();
        assert!(AssertionSigner::from_pem(SigningAlg::RS256, &ec.to_pem().unwrap(), None).is_err());
    }

    #[derive(serde::Deserialize)]
    struct Scope {
        scope: Option<String>,
    }

    #[test]
    fn a_jwt_bearer_assertion_has_short_lifetime_unique_jti_kid_scope_and_optional_sub() {
        let rsa = RS256KeyPair::generate(2048).unwrap();
        let signer =
            AssertionSigner::from_pem(SigningAlg::RS256, &rsa.to_pem().unwrap(), Some("sa-kid"))
                .unwrap();
        let claims = AssertionClaims {
            issuer: "egress@proj.iam.gserviceaccount.com".into(),
            subject: None,
            audience: "https://oauth2.googleapis.com/token".into(),
            scope: Some("https://www.googleapis.com/auth/cloud-platform".into()),
        };
        let a = signer.sign(&claims, 1_700_000_000, "jti-a").unwrap();
        let b = signer.sign(&claims, 1_700_000_000, "jti-b").unwrap();
        assert_ne!(a, b);
        let opts = VerificationOptions {
            time_tolerance: Some(Duration::from_secs(20 * 365 * 86_400)),
            allowed_audiences: Some(["https://oauth2.googleapis.com/token".to_string()].into()),
            ..Default::default()
        };
        let got = rsa
            .public_key()
            .verify_token::<Scope>(&a, Some(opts))
            .unwrap();
        assert_eq!(
            got.issuer.as_deref(),
            Some("egress@proj.iam.gserviceaccount.com")
        );
        assert_eq!(got.subject, None);
        assert_eq!(got.jwt_id.as_deref(), Some("jti-a"));
        assert_eq!(got.issued_at.map(|d| d.as_secs()), Some(1_700_000_000));
        assert_eq!(
            got.expires_at.map(|d| d.as_secs()),
            Some(1_700_000_000 + ASSERTION_LIFETIME_SECS)
        );
        const { assert!(ASSERTION_LIFETIME_SECS <= 300) };
        assert_eq!(
            got.custom.scope.as_deref(),
            Some("https://www.googleapis.com/auth/cloud-platform")
        );
        assert_eq!(Token::decode_metadata(&a).unwrap().key_id(), Some("sa-kid"));
    }
}
