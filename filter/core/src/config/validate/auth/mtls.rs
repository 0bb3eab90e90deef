//! `mtls`: the credential is the client certificate of the target's TLS block.

use super::super::super::error::{ConfigErrors, FieldPath};
use super::super::super::model::*;

pub(super) fn mtls(tls: Option<&TlsSettings>, path: &FieldPath, errs: &mut ConfigErrors) -> Auth {
    if tls.and_then(|t| t.client_cert.as_ref()).is_none() {
        errs.push(
            path.key("type").as_str(),
            "mtls needs tls.client_cert and tls.client_key on the target (and an https URL)",
        );
    }
    Auth::Mtls
}
