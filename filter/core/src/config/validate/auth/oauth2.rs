//! `oauth2_client_credentials`: a token fetched from `token_url` and refreshed before expiry;
//! and what every OAuth2 grant shares (token URL, its TLS, scopes, params, timings).

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
    let token_url = required(&a.token_url, "token_url", kind, path, errs)
        .and_then(|_| token_url(a, path, errs));
    let client_id = required(&a.client_id, "client_id", kind, path, errs);
    let client_auth = match a.client_auth.as_deref() {
        None | Some("client_secret_basic") => ClientAuth::ClientSecretBasic,
        Some("client_secret_post") => ClientAuth::ClientSecretPost,
        Some("private_key_jwt") => ClientAuth::PrivateKeyJwt,
        Some("federated_token_file") => ClientAuth::FederatedTokenFile,
        Some(other) => {
            errs.push(
                path.key("client_auth").as_str(),
                format!("unknown client_auth {other:?}; expected client_secret_basic, client_secret_post, private_key_jwt or federated_token_file"),
            );
            ClientAuth::ClientSecretBasic
        }
    };
    let federated_token_file = super::federated::federated_token_file(a, client_auth, path, errs);
    let client_secret = if client_auth == ClientAuth::FederatedTokenFile {
        None // the file's content authenticates; a secret or key was reported above
    } else if client_auth == ClientAuth::PrivateKeyJwt {
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
    let signing_alg = signing_alg(a, path, errs);
    let scopes = scopes(a, path, errs);
    let params = params(
        a,
        &[
            "grant_type",
            "client_id",
            "client_secret",
            "scope",
            "client_assertion",
            "client_assertion_type",
        ],
        "client-credentials",
        path,
        errs,
    );
    let timings = Timings::of(a, path, errs);
    let token_url = token_url?;
    Some(OAuth2Settings {
        grant: Grant::ClientCredentials,
        tls: token_tls(&token_url, tls),
        token_url: Some(token_url),
        client_id: client_id?.to_string(),
        client_secret,
        scopes,
        params,
        client_auth,
        private_key: a.private_key.clone(),
        signing_alg,
        key_id: a.key_id.clone(),
        federated_token_file,
        refresh_before_expiry: timings.refresh_before_expiry,
        token_timeout: timings.token_timeout,
        default_lifetime: timings.default_lifetime,
    })
}

// What every OAuth2 grant shares (client credentials, JWT bearer, token exchange).

/// `token_url`, parsed (errors on its path); `None` when absent or invalid.
pub(super) fn token_url(
    a: &RawAuth,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<TargetUrl> {
    let u = a.token_url.as_deref()?;
    TargetUrl::parse(u)
        .map_err(|e| errs.push(path.key("token_url").as_str(), e.to_string()))
        .ok()
}

/// TLS towards the token endpoint when it is https: verified against the target's `ca_cert`,
/// else the system bundle.
pub(super) fn token_tls(token_url: &TargetUrl, tls: Option<&TlsSettings>) -> Option<TlsSettings> {
    (token_url.scheme == Scheme::Https).then(|| TlsSettings {
        insecure_skip_verify: false,
        ca_cert: tls.and_then(|t| t.ca_cert.clone()),
        client_cert: None,
        server_name: token_url.host.clone(),
    })
}

/// `signing_alg` (default RS256).
pub(super) fn signing_alg(a: &RawAuth, path: &FieldPath, errs: &mut ConfigErrors) -> SigningAlg {
    match a.signing_alg.as_deref() {
        None | Some("RS256") => SigningAlg::RS256,
        Some("ES256") => SigningAlg::ES256,
        Some(other) => {
            errs.push(
                path.key("signing_alg").as_str(),
                format!("unknown signing_alg {other:?}; expected RS256 or ES256"),
            );
            SigningAlg::RS256
        }
    }
}

/// `scopes`: each one non-empty word.
pub(super) fn scopes(a: &RawAuth, path: &FieldPath, errs: &mut ConfigErrors) -> Vec<String> {
    let scopes = a.scopes.clone().unwrap_or_default();
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty() || s.contains(char::is_whitespace) {
            errs.push(
                path.key("scopes").index(i).as_str(),
                "a scope must be one non-empty word",
            );
        }
    }
    scopes
}

/// `params`: extra form parameters, none of the `reserved` ones the grant sets itself.
pub(super) fn params(
    a: &RawAuth,
    reserved: &[&str],
    grant: &str,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> BTreeMap<String, String> {
    let params: BTreeMap<String, String> = a.params.clone().unwrap_or_default();
    for k in params.keys() {
        if reserved.contains(&k.as_str()) {
            errs.push(
                path.key("params").key(k).as_str(),
                format!("is set by the {grant} flow itself"),
            );
        }
    }
    params
}

/// `refresh_before_expiry`, `token_timeout`, `default_lifetime`, with their defaults.
pub(super) struct Timings {
    pub refresh_before_expiry: Duration,
    pub token_timeout: Duration,
    pub default_lifetime: Duration,
}

impl Timings {
    pub(super) fn of(a: &RawAuth, path: &FieldPath, errs: &mut ConfigErrors) -> Self {
        Self {
            refresh_before_expiry: opt_duration(
                &a.refresh_before_expiry,
                &path.key("refresh_before_expiry"),
                errs,
            )
            .unwrap_or(DEFAULT_REFRESH_BEFORE_EXPIRY),
            token_timeout: opt_duration(&a.token_timeout, &path.key("token_timeout"), errs)
                .unwrap_or(DEFAULT_TOKEN_TIMEOUT),
            default_lifetime: opt_duration(
                &a.default_lifetime,
                &path.key("default_lifetime"),
                errs,
            )
            .unwrap_or(DEFAULT_TOKEN_LIFETIME),
        }
    }
}
