//! The key files `token refresh` reads on its own host: signing keys (`auth.private_key` of
//! `private_key_jwt` and `oauth2_jwt_bearer`) and Google service-account keys
//! (`auth.service_account_file`, which never reach the proxy: such a target is push-only).

use crate::source::Source;
use egress_core::config::{Auth, Grant, JwtBearerKey};
use egress_core::secret::Secret;
use egress_core::tokens::assertion::{AssertionError, AssertionSigner};
use egress_core::tokens::service_account::{
    ServiceAccountError, ServiceAccountKey, MAX_KEY_FILE_BYTES,
};
use std::collections::BTreeMap;

pub type Keys = (
    BTreeMap<String, Secret>,
    BTreeMap<String, ServiceAccountKey>,
);

/// Why a key file could not be used: the target, the field, the file, the reason (never the
/// key).
#[derive(Debug, thiserror::Error)]
#[error("target {target}: auth.{field} {path}: {reason}")]
pub struct KeyFileError {
    pub target: String,
    pub field: &'static str,
    pub path: String,
    pub reason: KeyFileReason,
}

/// What was wrong with the file (its texts follow the file's path in [`KeyFileError`]).
#[derive(Debug, thiserror::Error)]
pub enum KeyFileReason {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Key(#[from] AssertionError),
    #[error(transparent)]
    ServiceAccount(#[from] ServiceAccountFileError),
}

/// Why a service-account key file cannot sign assertions.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountFileError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error("is larger than {MAX_KEY_FILE_BYTES} bytes: not a service-account key")]
    TooLarge,
    #[error(transparent)]
    Parse(#[from] ServiceAccountError),
    #[error("private_key: {0}")]
    PrivateKey(AssertionError),
}

/// The keys of every OAuth2 target (or only `only`), by target name.
pub fn read(source: &Source, only: Option<&str>) -> Result<Keys, KeyFileError> {
    let mut pems = BTreeMap::new();
    let mut accounts = BTreeMap::new();
    for t in &source.config.targets {
        if only.is_some_and(|n| n != t.name) {
            continue;
        }
        let Auth::OAuth2(o) = &t.auth else { continue };
        let err =
            |field: &'static str, path: &std::path::Path, reason: KeyFileReason| KeyFileError {
                target: t.name.clone(),
                field,
                path: path.display().to_string(),
                reason,
            };
        if let Some(p) = &o.private_key {
            let full = source.resolve(p);
            let pem =
                std::fs::read_to_string(&full).map_err(|e| err("private_key", &full, e.into()))?;
            AssertionSigner::from_pem(o.signing_alg, &pem, o.key_id.as_deref())
                .map_err(|e| err("private_key", &full, e.into()))?;
            pems.insert(t.name.clone(), Secret::new(pem));
        }
        if let Grant::JwtBearer(j) = &o.grant {
            if let JwtBearerKey::ServiceAccountFile { path, .. } = &j.key {
                let full = source.resolve(path);
                let key = read_service_account(&full)
                    .map_err(|e| err("service_account_file", &full, e.into()))?;
                accounts.insert(t.name.clone(), key);
            }
        }
    }
    Ok((pems, accounts))
}

/// Reads and checks one service-account key file (its key must be an RSA key).
pub fn read_service_account(
    path: &std::path::Path,
) -> Result<ServiceAccountKey, ServiceAccountFileError> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > MAX_KEY_FILE_BYTES as u64 {
        return Err(ServiceAccountFileError::TooLarge);
    }
    let bytes = std::fs::read(path)?;
    let key = ServiceAccountKey::parse(&bytes)?;
    AssertionSigner::from_pem(
        egress_core::config::SigningAlg::RS256,
        key.private_key.expose(),
        Some(&key.private_key_id),
    )
    .map_err(ServiceAccountFileError::PrivateKey)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shown after `target T: auth.service_account_file PATH: `: kept as they were.
    #[test]
    fn service_account_file_errors_keep_their_texts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.json");
        let missing = read_service_account(&path).unwrap_err();
        assert!(matches!(missing, ServiceAccountFileError::Read(_)));
        assert_eq!(
            missing.to_string(),
            std::fs::metadata(&path).unwrap_err().to_string()
        );
        std::fs::write(&path, vec![b' '; MAX_KEY_FILE_BYTES + 1]).unwrap();
        assert_eq!(
            read_service_account(&path).unwrap_err().to_string(),
            format!("is larger than {MAX_KEY_FILE_BYTES} bytes: not a service-account key")
        );
        std::fs::write(&path, "[]").unwrap();
        let e = read_service_account(&path).unwrap_err();
        assert!(matches!(e, ServiceAccountFileError::Parse(_)), "{e}");
        assert_eq!(
            e.to_string(),
            ServiceAccountKey::parse(b"[]").unwrap_err().to_string()
        );
    }
}
