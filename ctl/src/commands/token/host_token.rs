//! Token files `token refresh` reads on its own host, afresh on every fetch (whoever writes
//! them rotates them: the kubelet, Azure's workload identity webhook): the subject token of
//! `oauth2_token_exchange` (`auth.subject_token_file`) and the client assertion of
//! `client_auth: federated_token_file` (`auth.federated_token_file`). The content is checked by
//! `egress_core::tokens::token_file` and never printed.

use super::fetch::FetchFailure;
use crate::source::Source;
use egress_core::config::{ClientAuth, Grant, OAuth2Settings};
use egress_core::tokens::token_file::{token_from_file, TokenFileError, MAX_TOKEN_FILE_BYTES};
use std::io::Read;
use std::path::PathBuf;

/// One target's token file.
#[derive(Debug, Clone)]
pub struct HostToken {
    /// `auth.subject_token_file` or `auth.federated_token_file`.
    pub field: &'static str,
    pub path: PathBuf,
}

impl HostToken {
    /// The token file an OAuth2 target's fetch needs, if any.
    pub fn of(source: &Source, o: &OAuth2Settings) -> Option<HostToken> {
        let (field, written) = match (&o.grant, o.client_auth) {
            (Grant::TokenExchange(x), _) => ("auth.subject_token_file", &x.subject_token_file),
            (_, ClientAuth::FederatedTokenFile) => (
                "auth.federated_token_file",
                o.federated_token_file.as_ref()?,
            ),
            _ => return None,
        };
        Some(HostToken {
            field,
            path: source.resolve(written),
        })
    }

    /// The file's token now. A failure names the field and the file, never the content.
    pub fn read(&self) -> Result<String, FetchFailure> {
        let fail = |message: String| FetchFailure {
            reason: "token_file",
            message: format!("{} {}: {message}", self.field, self.path.display()),
        };
        let file = std::fs::File::open(&self.path).map_err(|e| fail(e.to_string()))?;
        let mut bytes = Vec::new();
        // One byte more than allowed tells a file that is too large, without reading it all.
        file.take(MAX_TOKEN_FILE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(e.to_string()))?;
        token_from_file(&bytes).map_err(|e| match e {
            TokenFileError::TooLarge(_) => fail(format!(
                "is larger than the {MAX_TOKEN_FILE_BYTES} bytes a token file may hold"
            )),
            e => fail(e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn at(dir: &std::path::Path) -> HostToken {
        HostToken {
            field: "auth.subject_token_file",
            path: dir.join("token"),
        }
    }

    #[test]
    fn the_file_is_read_afresh_each_time_and_failures_name_field_and_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let h = at(dir.path());
        let e = h.read().unwrap_err();
        assert_eq!(e.reason, "token_file");
        assert!(
            e.message
                .starts_with(&format!("auth.subject_token_file {}: ", h.path.display())),
            "{e}"
        );
        std::fs::write(&h.path, "eyJ.one.sig\n").unwrap();
        assert_eq!(h.read().unwrap(), "eyJ.one.sig");
        std::fs::write(&h.path, "eyJ.two.sig").unwrap();
        assert_eq!(h.read().unwrap(), "eyJ.two.sig");
        std::fs::write(&h.path, "").unwrap();
        assert!(h.read().unwrap_err().message.contains("is empty"));
        std::fs::write(&h.path, "SECRET one\nSECRET two").unwrap();
        let e = h.read().unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        std::fs::write(&h.path, vec![b'a'; MAX_TOKEN_FILE_BYTES * 4]).unwrap();
        assert!(h.read().unwrap_err().message.contains("larger than"));
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let d = HostToken {
            field: "auth.federated_token_file",
            path: dir.path().join("d"),
        };
        assert!(d
            .read()
            .unwrap_err()
            .message
            .starts_with("auth.federated_token_file"));
    }
}
