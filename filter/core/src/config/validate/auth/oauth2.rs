//! `oauth2_client_credentials`: a token fetched from `token_url` and refreshed before expiry.

use super::super::super::error::{ConfigErrors, FieldPath};
use super::super::super::model::*;
use super::super::super::raw::*;
use super::super::opt_duration;
use super::required;
use crate::secret::Secret;
use crate::target_url::{Scheme, TargetUrl};
use std::collections::BTreeMap;
use std::time::Duration;

const DEFAULT_REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

pub(super) fn oauth2(
    a: &RawAuth,
    tls: Option<&TlsSettings>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<OAuth2Settings> {
    let kind = "oauth2_client_credentials";
    let token_url = required(&a.token_url, "token_url", kind, path, errs).and_then(|u| {
        TargetUrl::parse(u)
            .map_err(|e| errs.push(path.key("token_url").as_str(), e.to_string()))
            .ok()
    });
    let client_id = required(&a.client_id, "client_id", kind, path, errs);
    let client_auth = match a.client_auth.as_deref() {
        None | Some("client_secret_basic") => ClientAuth::ClientSecretBasic,
        Some("client_secret_post") => ClientAuth::ClientSecretPost,
        Some("private_key_jwt") => ClientAuth::PrivateKeyJwt,
        Some(other) => {
            errs.push(
                path.key("client_auth").as_str(),
                format!("unknown client_auth {other:?}; expected client_secret_basic, client_secret_post or private_key_jwt"),
            );
            ClientAuth::ClientSecretBasic
        }
    };
    let client_secret = if client_auth == ClientAuth::PrivateKeyJwt {
        if a.client_secret.is_some() {
            errs.push(
                path.key("client_secret").as_str(),
                "is not used with client_auth: private_key_jwt",
            );
        }
        if a.private_key.as_deref().is_none_or(str::is_empty) {
            errs.push(
                path.key("private_key").as_str(),
                "is required with client_auth: private_key_jwt",
            );
        }
        None
    } else {
        for f in ["private_key", "signing_alg", "key_id"] {
            let set = match f {
                "private_key" => a.private_key.is_some(),
                "signing_alg" => a.signing_alg.is_some(),
                _ => a.key_id.is_some(),
            };
            if set {
                errs.push(
                    path.key(f).as_str(),
                    "only applies to client_auth: private_key_jwt",
                );
            }
        }
        required(&a.client_secret, "client_secret", kind, path, errs).map(Secret::new)
    };
    let signing_alg = match a.signing_alg.as_deref() {
        None | Some("RS256") => SigningAlg::RS256,
        Some("ES256") => SigningAlg::ES256,
        Some(other) => {
            errs.push(
                path.key("signing_alg").as_str(),
                format!("unknown signing_alg {other:?}; expected RS256 or ES256"),
            );
            SigningAlg::RS256
        }
    };
    let scopes = a.scopes.clone().unwrap_or_default();
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty() || s.contains(char::is_whitespace) {
            errs.push(
                path.key("scopes").index(i).as_str(),
                "a scope must be one non-empty word",
            );
        }
    }
    let params: BTreeMap<String, String> = a.params.clone().unwrap_or_default();
    for k in params.keys() {
        const RESERVED: [&str; 6] = [
            "grant_type",
            "client_id",
            "client_secret",
            "scope",
            "client_assertion",
            "client_assertion_type",
        ];
        if RESERVED.contains(&k.as_str()) {
            errs.push(
                path.key("params").key(k).as_str(),
                "is set by the client-credentials flow itself",
            );
        }
    }
    let refresh_before_expiry = opt_duration(
        &a.refresh_before_expiry,
        &path.key("refresh_before_expiry"),
        errs,
    )
    .unwrap_or(DEFAULT_REFRESH_BEFORE_EXPIRY);
    let token_timeout = opt_duration(&a.token_timeout, &path.key("token_timeout"), errs)
        .unwrap_or(DEFAULT_TOKEN_TIMEOUT);
    let default_lifetime = opt_duration(&a.default_lifetime, &path.key("default_lifetime"), errs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let token_url = token_url?;
    let token_tls = (token_url.scheme == Scheme::Https).then(|| TlsSettings {
        insecure_skip_verify: false,
        ca_cert: tls.and_then(|t| t.ca_cert.clone()),
        client_cert: None,
        server_name: token_url.host.clone(),
    });
    Some(OAuth2Settings {
        token_url,
        client_id: client_id?.to_string(),
        client_secret,
        scopes,
        params,
        client_auth,
        private_key: a.private_key.clone(),
        signing_alg,
        key_id: a.key_id.clone(),
        refresh_before_expiry,
        token_timeout,
        default_lifetime,
        tls: token_tls,
    })
}
