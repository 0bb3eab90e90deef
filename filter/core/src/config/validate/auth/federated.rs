//! `oauth2_client_credentials` with `client_auth: federated_token_file`: the client assertion
//! (`client_assertion_type` jwt-bearer) is the current content of `federated_token_file`, a
//! token another issuer wrote on the refresher's host (Azure workload identity). The target is
//! push-only: `egressctl token refresh` reads the file on every fetch.

use super::super::super::error::{ConfigErrors, FieldPath};
use super::super::super::model::ClientAuth;
use super::super::super::raw::RawAuth;

/// `federated_token_file` for `client_auth`, checked: required with
/// `client_auth: federated_token_file` (which then takes no secret and no signing key), refused
/// with any other `client_auth`.
pub(super) fn federated_token_file(
    a: &RawAuth,
    client_auth: ClientAuth,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<String> {
    if client_auth != ClientAuth::FederatedTokenFile {
        if a.federated_token_file.is_some() {
            errs.push(
                path.key("federated_token_file").as_str(),
                "only applies to client_auth: federated_token_file",
            );
        }
        return None;
    }
    if a.client_secret.is_some() {
        errs.push(
            path.key("client_secret").as_str(),
            "is not used with client_auth: federated_token_file (the file's content is the client assertion)",
        );
    }
    for (field, set) in [
        ("private_key", a.private_key.is_some()),
        ("signing_alg", a.signing_alg.is_some()),
        ("key_id", a.key_id.is_some()),
    ] {
        if set {
            errs.push(
                path.key(field).as_str(),
                "only applies to client_auth: private_key_jwt",
            );
        }
    }
    match a.federated_token_file.as_deref() {
        Some(f) if !f.trim().is_empty() => Some(f.to_string()),
        Some(_) => {
            errs.push(
                path.key("federated_token_file").as_str(),
                "must not be empty",
            );
            None
        }
        None => {
            errs.push(
                path.key("federated_token_file").as_str(),
                "is required with client_auth: federated_token_file (the file holding the client assertion, e.g. $AZURE_FEDERATED_TOKEN_FILE)",
            );
            None
        }
    }
}
