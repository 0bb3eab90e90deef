//! The OAuth2 grants, as the filter config carries them. Every grant shares the token record,
//! the shared cache, refresh ahead, the outage policy, pushes and the redis store; only the
//! token request differs ([`super::request::build_request`] dispatches on the grant).
//!
//! Adding a grant: a variant here (its wire form), one in `config::Grant` (the validated
//! config), its `auth.type` constant, its form fields in [`super::request`], and its claims in
//! [`assertion_claims`] if it signs.

use crate::config::ClientAuth;
use crate::plan::OAuth2Credential;
use serde::{Deserialize, Serialize};

/// `auth.type` of the client-credentials grant.
pub const CLIENT_CREDENTIALS: &str = "oauth2_client_credentials";
/// `auth.type` of the RFC 7523 section 2.1 grant.
pub const JWT_BEARER: &str = "oauth2_jwt_bearer";

/// `auth.type` of the RFC 8693 token exchange.
pub const TOKEN_EXCHANGE: &str = "oauth2_token_exchange";

/// `grant_type` of the RFC 7523 section 2.1 grant.
pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The grant of an OAuth2 target (filter config).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GrantPlan {
    #[default]
    ClientCredentials,
    /// The assertion is signed with the credential's key (`private_key_pem`, `signing_alg`,
    /// `key_id`).
    JwtBearer {
        /// `iss`; empty in a push-only proxy's config (the refresher reads the key file).
        issuer: String,
        /// `sub`; `None`: no `sub` claim (a Google service account acting as itself).
        #[serde(default)]
        subject: Option<String>,
        /// `aud`; `None`: the token URL.
        #[serde(default)]
        audience: Option<String>,
    },
    /// RFC 8693: the subject token is the content of a file only the refresher reads (the
    /// target is push-only), passed to `build_request` as its `assertion`.
    TokenExchange {
        subject_token_type: String,
        #[serde(default)]
        audience: Option<String>,
        #[serde(default)]
        resource: Option<String>,
    },
}

impl GrantPlan {
    /// The `auth.type` spelling.
    pub fn kind(&self) -> &'static str {
        match self {
            GrantPlan::ClientCredentials => CLIENT_CREDENTIALS,
            GrantPlan::JwtBearer { .. } => JWT_BEARER,
            GrantPlan::TokenExchange { .. } => TOKEN_EXCHANGE,
        }
    }
}

/// The claims of the one JWT a token request carries, when it carries one: the grant's
/// assertion (`oauth2_jwt_bearer`) or the client assertion (`private_key_jwt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionClaims {
    pub issuer: String,
    pub subject: Option<String>,
    pub audience: String,
    /// A `scope` claim (Google reads the scopes from the assertion).
    pub scope: Option<String>,
}

/// What the signer must sign for `cred`; `None`: the request carries no signed JWT.
pub fn assertion_claims(cred: &OAuth2Credential) -> Option<AssertionClaims> {
    let token_url = cred.token_url.as_ref().map(|u| u.origin_and_base());
    match &cred.grant {
        GrantPlan::JwtBearer {
            issuer,
            subject,
            audience,
        } => Some(AssertionClaims {
            issuer: issuer.clone(),
            subject: subject.clone(),
            audience: audience.clone().or(token_url)?,
            scope: (!cred.scopes.is_empty()).then(|| cred.scopes.join(" ")),
        }),
        GrantPlan::ClientCredentials => match cred.client_auth {
            // RFC 7523 section 3: issuer and subject the client id, audience the token URL.
            ClientAuth::PrivateKeyJwt => Some(AssertionClaims {
                issuer: cred.client_id.clone(),
                subject: Some(cred.client_id.clone()),
                audience: token_url?,
                scope: None,
            }),
            ClientAuth::ClientSecretBasic
            | ClientAuth::ClientSecretPost
            | ClientAuth::None
            | ClientAuth::FederatedTokenFile => None,
        },
        // Its client authentication is a secret or nothing (validation).
        GrantPlan::TokenExchange { .. } => None,
    }
}

/// Whether `cred` needs a signing key to fetch.
pub fn signs(cred: &OAuth2Credential) -> bool {
    matches!(cred.grant, GrantPlan::JwtBearer { .. })
        || cred.client_auth == ClientAuth::PrivateKeyJwt
}
