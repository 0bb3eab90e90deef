//! The OAuth2 targets the token manager serves, and the signers of their client assertions.

use crate::engine::{Engine, LocalReply};
use crate::plan::OAuth2Credential;
use crate::tokens::grant::{signs, AssertionClaims};
use crate::tokens::FetchError;

/// Signs the assertion of a fetch (one per fetch): the `private_key_jwt` client assertion or
/// the `oauth2_jwt_bearer` grant's assertion, with the claims of
/// [`crate::tokens::grant::assertion_claims`].
pub trait SignAssertion {
    fn sign(
        &self,
        claims: &AssertionClaims,
        now_secs: u64,
        jti: &str,
    ) -> Result<String, FetchError>;
}

/// Why the token manager cannot start (the plugin then refuses its config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("target {target}: {reason}")]
    Key { target: String, reason: String },
    #[error(
        "target {0}: a signed assertion (private_key_jwt, oauth2_jwt_bearer) without a private key"
    )]
    NoKey(String),
    #[error("target {0}: a signed assertion (private_key_jwt, oauth2_jwt_bearer) needs the filter built with signing support")]
    NoSigning(String),
}

/// An OAuth2 target as the token manager needs it.
pub struct TokenTarget {
    /// Index of the target in the engine.
    pub index: usize,
    pub name: String,
    pub cred: OAuth2Credential,
    /// The 503 a request gets when no token is available.
    pub unavailable: LocalReply,
    pub signer: Option<Box<dyn SignAssertion>>,
}

impl TokenTarget {
    /// The OAuth2 targets of `engine`, with their assertion signers.
    pub fn from_engine(engine: &Engine) -> Result<Vec<TokenTarget>, SetupError> {
        let mut out = Vec::new();
        for (index, t) in engine.targets().iter().enumerate() {
            let Some(cred) = t.oauth2.as_ref() else {
                continue;
            };
            out.push(TokenTarget {
                index,
                name: t.name.clone(),
                signer: signer_for(&t.name, cred)?,
                cred: cred.clone(),
                unavailable: engine.credentials_unavailable(index),
            });
        }
        Ok(out)
    }
}

#[cfg(feature = "jwt")]
fn signer_for(
    name: &str,
    cred: &OAuth2Credential,
) -> Result<Option<Box<dyn SignAssertion>>, SetupError> {
    use crate::tokens::assertion::AssertionSigner;
    // A push-only target never fetches, so it holds no key.
    match (signs(cred) && cred.fetch, &cred.private_key_pem) {
        (true, Some(pem)) => {
            AssertionSigner::from_pem(cred.signing_alg, pem.expose(), cred.key_id.as_deref())
                .map(|s| Some(Box::new(s) as Box<dyn SignAssertion>))
                .map_err(|e| SetupError::Key {
                    target: name.to_string(),
                    reason: e.to_string(),
                })
        }
        (true, None) => Err(SetupError::NoKey(name.to_string())),
        (false, _) => Ok(None),
    }
}

#[cfg(not(feature = "jwt"))]
fn signer_for(
    name: &str,
    cred: &OAuth2Credential,
) -> Result<Option<Box<dyn SignAssertion>>, SetupError> {
    if signs(cred) && cred.fetch {
        Err(SetupError::NoSigning(name.to_string()))
    } else {
        Ok(None)
    }
}
