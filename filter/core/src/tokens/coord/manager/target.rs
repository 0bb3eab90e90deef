//! The OAuth2 targets the token manager serves, and the signers of their client assertions.

use crate::config::ClientAuth;
use crate::engine::{Engine, LocalReply};
use crate::plan::OAuth2Credential;
use crate::tokens::FetchError;

/// Signs `private_key_jwt` client assertions (one per fetch).
pub trait SignAssertion {
    fn sign(
        &self,
        client_id: &str,
        audience: &str,
        now_secs: u64,
        jti: &str,
    ) -> Result<String, FetchError>;
}

/// Why the token manager cannot start (the plugin then refuses its config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("target {target}: {reason}")]
    Key { target: String, reason: String },
    #[error("target {0}: private_key_jwt without a private key")]
    NoKey(String),
    #[error("target {0}: private_key_jwt needs the filter built with signing support")]
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
    match (cred.client_auth, &cred.private_key_pem) {
        (ClientAuth::PrivateKeyJwt, Some(pem)) => {
            AssertionSigner::from_pem(cred.signing_alg, pem.expose(), cred.key_id.as_deref())
                .map(|s| Some(Box::new(s) as Box<dyn SignAssertion>))
                .map_err(|e| SetupError::Key {
                    target: name.to_string(),
                    reason: e.to_string(),
                })
        }
        (ClientAuth::PrivateKeyJwt, None) => Err(SetupError::NoKey(name.to_string())),
        _ => Ok(None),
    }
}

#[cfg(not(feature = "jwt"))]
fn signer_for(
    name: &str,
    cred: &OAuth2Credential,
) -> Result<Option<Box<dyn SignAssertion>>, SetupError> {
    match cred.client_auth {
        ClientAuth::PrivateKeyJwt => Err(SetupError::NoSigning(name.to_string())),
        _ => Ok(None),
    }
}
