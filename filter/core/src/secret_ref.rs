//! Credential values outside the filter config.
//!
//! `egressctl compile` writes each credential of the config into the state directory's
//! `secrets.env` under a stable name ([`env_name`]) and the filter config carries only that
//! name (`{"env": "EGRESS_SECRET_CRM__KEY"}`). Envoy hands the variables named in the
//! listener's `vm_config.environment_variables.host_env_keys` to the VM (WASI `environ_get`),
//! and [`resolve`] reads them when the filter loads its config. Envoy's admin interface shows
//! the names, never the values.
//!
//! A running process cannot change its environment, so `egressctl apply` rotates credentials
//! by sealing the new values into the filter config ([`SealKey::seal`], AES-256-GCM with the key
//! in [`SEAL_KEY_ENV`], a variable set when Envoy started): the admin interface shows
//! ciphertext, and the key stays in the process environment. A sealed value takes precedence
//! over the variable.

use crate::plan::{Credential, FilterConfig};
use crate::secret::{Secret, SecretRef};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Prefix of every credential variable.
pub const ENV_PREFIX: &str = "EGRESS_SECRET_";
/// The variable holding the key sealed values are opened with (32 bytes, base64).
pub const SEAL_KEY_ENV: &str = "EGRESS_SECRETS_KEY";

/// Which credential of a target a variable holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretField {
    ApiKey,
    Token,
    Password,
    ClientSecret,
    PrivateKey,
    AwsSecretAccessKey,
    AwsSessionToken,
    /// An HS* caller JWT issuer's secret (`egress.callers.jwt[i].secret`); its "target" is
    /// [`caller_secret_owner`].
    CallerJwtSecret,
}

/// The name standing for the target of caller issuer `index`'s secret in variable names:
/// `EGRESS_SECRET_CALLERS_2DJWT<i>__JWT_SECRET` (never a target's: targets have no such field).
pub fn caller_secret_owner(index: usize) -> String {
    format!("callers-jwt{index}")
}

impl SecretField {
    pub fn suffix(self) -> &'static str {
        match self {
            SecretField::ApiKey => "KEY",
            SecretField::Token => "TOKEN",
            SecretField::Password => "PASSWORD",
            SecretField::ClientSecret => "CLIENT_SECRET",
            SecretField::PrivateKey => "PRIVATE_KEY",
            SecretField::AwsSecretAccessKey => "SECRET_ACCESS_KEY",
            SecretField::AwsSessionToken => "SESSION_TOKEN",
            SecretField::CallerJwtSecret => "JWT_SECRET",
        }
    }

    /// The config field, for messages (`auth.key`, ...).
    pub fn config_field(self) -> &'static str {
        match self {
            SecretField::ApiKey => "auth.key",
            SecretField::Token => "auth.token",
            SecretField::Password => "auth.password",
            SecretField::ClientSecret => "auth.client_secret",
            SecretField::PrivateKey => "auth.private_key",
            SecretField::AwsSecretAccessKey => "auth.secret_access_key",
            SecretField::AwsSessionToken => "auth.session_token",
            SecretField::CallerJwtSecret => "egress.callers.jwt[].secret",
        }
    }

    /// PEM keys have line breaks, which an environment file cannot hold: base64.
    pub fn base64(self) -> bool {
        matches!(self, SecretField::PrivateKey)
    }
}

/// `EGRESS_SECRET_<TARGET>__<FIELD>`: `[A-Z][A-Z0-9_]*`, stable, and distinct for distinct
/// (target, field) pairs: `a`-`z` become upper case, digits stay, any other byte becomes `_`
/// and two upper-case hex digits (so `__` never occurs inside the target part).
pub fn env_name(target: &str, field: SecretField) -> String {
    let mut name = String::from(ENV_PREFIX);
    for b in target.bytes() {
        match b {
            b'a'..=b'z' => name.push(char::from(b.to_ascii_uppercase())),
            b'0'..=b'9' => name.push(char::from(b)),
            _ => name.push_str(&format!("_{b:02X}")),
        }
    }
    name.push_str("__");
    name.push_str(field.suffix());
    name
}

/// The reference the filter config carries for a credential.
pub fn reference(target: &str, field: SecretField) -> SecretRef {
    SecretRef {
        env: env_name(target, field),
        base64: field.base64(),
        sealed: None,
    }
}

/// The variable's value for a credential value (base64 where [`SecretField::base64`]).
pub fn env_value(field: SecretField, value: &Secret) -> Secret {
    if field.base64() {
        Secret::new(B64.encode(value.expose()))
    } else {
        value.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("target {target}: the credential is read from the environment variable {env}, which is not set (egressctl up sets it from secrets.env)")]
    Missing { target: String, env: String },
    #[error("target {target}: the environment variable {env} is not valid: {reason}")]
    Invalid {
        target: String,
        env: String,
        reason: &'static str,
    },
    #[error("target {target}: the sealed value of {env} cannot be opened: {reason} (was Envoy started with this state directory's secrets.env?)")]
    Sealed {
        target: String,
        env: String,
        reason: &'static str,
    },
    #[error("{SEAL_KEY_ENV} is not a valid key (32 bytes, base64)")]
    BadKey,
}

/// The key sealing rotated values. Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = B64.decode(text.trim()).map_err(|_| SecretError::BadKey)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| SecretError::BadKey)
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Seals `value` for the variable `env` (bound to it: a sealed value moved to another
    /// field does not open). Deterministic, so compiling the same values twice gives the same
    /// config and Envoy sees no change: the nonce is an HMAC of the name and value.
    pub fn seal(&self, env: &str, value: &str) -> String {
        let mut mac = hmac_sha256::HMAC::new(self.0);
        mac.update(b"egress-seal-nonce\0");
        mac.update(env.as_bytes());
        mac.update([0u8]);
        mac.update(value.as_bytes());
        let digest = mac.finalize();
        let nonce_bytes: [u8; 12] = std::array::from_fn(|i| digest.get(i).copied().unwrap_or(0));
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0));
        let nonce = Nonce::from(nonce_bytes);
        let payload = Payload {
            msg: value.as_bytes(),
            aad: env.as_bytes(),
        };
        // Encrypting a message under 64 GiB with a valid key and nonce cannot fail.
        let sealed = cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// The value [`SealKey::seal`] sealed for `env`.
    pub fn open(&self, env: &str, sealed: &str) -> Result<String, &'static str> {
        let bytes = B64.decode(sealed).map_err(|_| "not base64")?;
        if bytes.len() < 12 + 16 {
            return Err("too short");
        }
        let (nonce_bytes, ct) = bytes.split_at(12);
        let nonce_bytes: [u8; 12] = nonce_bytes.try_into().map_err(|_| "too short")?;
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0));
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: ct,
                    aad: env.as_bytes(),
                },
            )
            .map_err(|_| "wrong key or altered value")?;
        String::from_utf8(plain).map_err(|_| "not UTF-8")
    }
}

/// The process environment (in the filter: the VM's, WASI `environ_get`).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The credential slots of a filter config: (target, field, secret).
fn slots(fc: &mut FilterConfig) -> Vec<(String, SecretField, &mut Secret)> {
    let mut out = Vec::new();
    for t in &mut fc.targets {
        let name = t.name.clone();
        match &mut t.credential {
            Credential::ApiKey { key, .. } => out.push((name, SecretField::ApiKey, key)),
            Credential::Bearer { token } => out.push((name, SecretField::Token, token)),
            Credential::Basic { password, .. } => out.push((name, SecretField::Password, password)),
            Credential::Oauth2(o) => {
                if let Some(s) = &mut o.client_secret {
                    out.push((name.clone(), SecretField::ClientSecret, s));
                }
                if let Some(s) = &mut o.private_key_pem {
                    out.push((name, SecretField::PrivateKey, s));
                }
            }
            Credential::AwsSigv4(a) => {
                if let Some(k) = &mut a.keys {
                    out.push((
                        name.clone(),
                        SecretField::AwsSecretAccessKey,
                        &mut k.secret_access_key,
                    ));
                    if let Some(s) = &mut k.session_token {
                        out.push((name, SecretField::AwsSessionToken, s));
                    }
                }
            }
            Credential::None | Credential::Mtls => {}
        }
    }
    if let Some(c) = &mut fc.callers {
        for (i, issuer) in c.jwt.iter_mut().enumerate() {
            if let crate::callers::KeySource::Secret { secret } = &mut issuer.keys {
                out.push((caller_secret_owner(i), SecretField::CallerJwtSecret, secret));
            }
        }
    }
    out
}

/// Replaces every reference in `fc` by its value: the sealed value when there is one, else
/// the variable `env` names. Values must be free of control characters (a trailing newline
/// would make every request to the target fail).
pub fn resolve(
    fc: &mut FilterConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), SecretError> {
    let mut key: Option<SealKey> = None;
    for (target, _field, secret) in slots(fc) {
        let Some(r) = secret.as_reference().cloned() else {
            continue;
        };
        let invalid = |reason| SecretError::Invalid {
            target: target.clone(),
            env: r.env.clone(),
            reason,
        };
        let raw = match &r.sealed {
            Some(sealed) => {
                if key.is_none() {
                    let text = env(SEAL_KEY_ENV).ok_or_else(|| SecretError::Sealed {
                        target: target.clone(),
                        env: r.env.clone(),
                        reason: "EGRESS_SECRETS_KEY is not set",
                    })?;
                    key = Some(SealKey::from_base64(&text)?);
                }
                let k = key.as_ref().ok_or(SecretError::BadKey)?;
                k.open(&r.env, sealed)
                    .map_err(|reason| SecretError::Sealed {
                        target: target.clone(),
                        env: r.env.clone(),
                        reason,
                    })?
            }
            None => env(&r.env).ok_or_else(|| SecretError::Missing {
                target: target.clone(),
                env: r.env.clone(),
            })?,
        };
        let value = if r.base64 {
            let bytes = B64.decode(raw.trim()).map_err(|_| invalid("not base64"))?;
            String::from_utf8(bytes).map_err(|_| invalid("not UTF-8"))?
        } else {
            if raw.chars().any(char::is_control) {
                return Err(invalid("it contains a control character"));
            }
            raw
        };
        if value.is_empty() {
            return Err(invalid("it is empty"));
        }
        *secret = Secret::new(value);
    }
    Ok(())
}

/// Replaces every credential value in `fc` by its reference, sealed with `key` when given.
pub fn to_references(fc: &mut FilterConfig, key: Option<&SealKey>) {
    for (target, field, secret) in slots(fc) {
        if secret.as_reference().is_some() {
            continue;
        }
        let mut r = reference(&target, field);
        if let Some(k) = key {
            r.sealed = Some(k.seal(&r.env, env_value(field, secret).expose()));
        }
        *secret = Secret::reference(r);
    }
}

#[cfg(test)]
mod tests;
