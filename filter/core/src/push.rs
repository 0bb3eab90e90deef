//! Pushing a token into a running proxy (`egressctl token refresh`), as both sides see it.
//!
//! The proxy serves the push on its own listener (loopback by default), apart from the egress
//! listener, so no caller can reach it. A push is `POST /v1/tokens` with a JSON [`PushBody`]
//! and `Authorization: Bearer <JWT>`: the JWT is signed with Ed25519 by the key in the state
//! directory (`push.key`); the proxy knows only the public key. The JWT carries the audience
//! [`PUSH_AUDIENCE`], a lifetime of at most [`MAX_PUSH_LIFETIME_SECS`], a unique `jti` (a
//! replay is refused) and the SHA-256 of the body (so a JWT cannot carry another token).
//! `GET /v1/status` (same authentication, `body_sha256` of the empty body) lists each target's
//! token source, age and time left, never the token.

#![deny(clippy::indexing_slicing)]

use crate::secret::Secret;
use crate::tokens::{TokenRecord, TokenSource};
use jwt_simple::prelude::*;
use serde::{Deserialize, Serialize};

pub const PUSH_PATH: &str = "/v1/tokens";
pub const STATUS_PATH: &str = "/v1/status";
pub const PUSH_AUDIENCE: &str = "egress-push";
pub const PUSH_ISSUER: &str = "egressctl";
/// A push JWT older than this is refused whatever its `exp` says.
pub const MAX_PUSH_LIFETIME_SECS: u64 = 120;
/// Clock skew tolerated between `egressctl` and the proxy.
pub const CLOCK_TOLERANCE_SECS: u64 = 15;
/// Largest push body accepted.
pub const MAX_PUSH_BODY: usize = 64 * 1024;

/// One token for one target.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    pub target: String,
    pub access_token: Secret,
    pub token_type: String,
    /// Unix milliseconds.
    pub expires_at_ms: u64,
}

impl std::fmt::Debug for PushBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PushBody {{ target: {:?}, access_token: <redacted>, expires_at_ms: {} }}",
            self.target, self.expires_at_ms
        )
    }
}

/// Custom claims of a push JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushClaims {
    /// Hex SHA-256 of the request body.
    pub body_sha256: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hmac_sha256::Hash::hash(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The push key pair (`push.key`, PEM), held by `egressctl`.
pub struct PushSigner(Ed25519KeyPair);

impl PushSigner {
    pub fn generate() -> Self {
        Self(Ed25519KeyPair::generate())
    }

    pub fn from_pem(pem: &str) -> Result<Self, PushError> {
        Ed25519KeyPair::from_pem(pem)
            .map(Self)
            .map_err(|_| PushError::BadKey)
    }

    pub fn to_pem(&self) -> String {
        self.0.to_pem()
    }

    pub fn public_pem(&self) -> String {
        self.0.public_key().to_pem()
    }

    /// Signs a push of `body`, valid from `now_secs` for `lifetime_secs` (at most
    /// [`MAX_PUSH_LIFETIME_SECS`]).
    pub fn sign(
        &self,
        body: &[u8],
        now_secs: u64,
        lifetime_secs: u64,
        jti: &str,
    ) -> Result<String, PushError> {
        let lifetime = lifetime_secs.min(MAX_PUSH_LIFETIME_SECS);
        let mut claims = Claims::with_custom_claims(
            PushClaims {
                body_sha256: sha256_hex(body),
            },
            Duration::from_secs(lifetime),
        )
        .with_issuer(PUSH_ISSUER)
        .with_audience(PUSH_AUDIENCE)
        .with_jwt_id(jti);
        claims.issued_at = Some(Duration::from_secs(now_secs));
        claims.invalid_before = Some(Duration::from_secs(now_secs));
        claims.expires_at = Some(Duration::from_secs(now_secs + lifetime));
        self.0.sign(claims).map_err(|_| PushError::Sign)
    }
}

/// Why a push was refused (answered 401 or 400; nothing changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the push key is not a valid Ed25519 PEM key")]
    BadKey,
    #[error("signing failed")]
    Sign,
    #[error("missing or malformed Authorization: Bearer <jwt>")]
    NoToken,
    #[error("the push JWT is invalid (signature, algorithm, audience, issuer or time)")]
    Invalid,
    #[error("the push JWT has no jti, or lives longer than allowed")]
    Claims,
    #[error("the push JWT was already used")]
    Replayed,
    #[error("the push JWT does not match the body")]
    BodyMismatch,
    #[error("the push body is not valid: {0}")]
    BadBody(String),
}

impl PushError {
    /// The HTTP status the proxy answers.
    pub fn status(&self) -> u16 {
        match self {
            PushError::BadBody(_) => 400,
            _ => 401,
        }
    }
}

/// The proxy's side: the public key and what it checks.
pub struct PushVerifier(Ed25519PublicKey);

/// A verified push, before the replay check (which needs the shared store).
#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedPush {
    pub jti: String,
    /// Unix seconds after which the `jti` may be forgotten.
    pub expires_at_secs: u64,
}

impl PushVerifier {
    pub fn from_pem(pem: &str) -> Result<Self, PushError> {
        Ed25519PublicKey::from_pem(pem)
            .map(Self)
            .map_err(|_| PushError::BadKey)
    }

    /// Checks the `Authorization` header value against the body, at `now_secs`.
    pub fn verify(
        &self,
        authorization: Option<&str>,
        body: &[u8],
        now_secs: u64,
    ) -> Result<VerifiedPush, PushError> {
        let jwt = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() < 8 * 1024)
            .ok_or(PushError::NoToken)?;
        let opts = VerificationOptions {
            allowed_audiences: Some([PUSH_AUDIENCE.to_string()].into()),
            allowed_issuers: Some([PUSH_ISSUER.to_string()].into()),
            time_tolerance: Some(Duration::from_secs(CLOCK_TOLERANCE_SECS)),
            artificial_time: Some(Duration::from_secs(now_secs)),
            max_validity: Some(Duration::from_secs(
                MAX_PUSH_LIFETIME_SECS + CLOCK_TOLERANCE_SECS,
            )),
            ..Default::default()
        };
        let claims = self
            .0
            .verify_token::<PushClaims>(jwt, Some(opts))
            .map_err(|_| PushError::Invalid)?;
        let exp = claims
            .expires_at
            .map(|d| d.as_secs())
            .ok_or(PushError::Claims)?;
        let iat = claims
            .issued_at
            .map(|d| d.as_secs())
            .ok_or(PushError::Claims)?;
        if exp.saturating_sub(iat) > MAX_PUSH_LIFETIME_SECS {
            return Err(PushError::Claims);
        }
        let jti = claims
            .jwt_id
            .filter(|j| !j.is_empty() && j.len() <= 128)
            .ok_or(PushError::Claims)?;
        if claims.custom.body_sha256 != sha256_hex(body) {
            return Err(PushError::BodyMismatch);
        }
        Ok(VerifiedPush {
            jti,
            expires_at_secs: exp + CLOCK_TOLERANCE_SECS,
        })
    }
}

/// Parses and checks a push body into the record to store (version set by the caller).
pub fn record_from_body(body: &[u8], now_ms: u64) -> Result<(String, TokenRecord), PushError> {
    if body.len() > MAX_PUSH_BODY {
        return Err(PushError::BadBody("too large".into()));
    }
    let b: PushBody =
        serde_json::from_slice(body).map_err(|_| PushError::BadBody("not a token push".into()))?;
    if !crate::tokens::reply::is_b64token(b.access_token.expose())
        || b.access_token.expose().len() > crate::tokens::reply::MAX_TOKEN_BYTES
    {
        return Err(PushError::BadBody(
            "access_token is not a valid bearer token".into(),
        ));
    }
    if !b.token_type.eq_ignore_ascii_case("bearer") {
        return Err(PushError::BadBody("only Bearer tokens".into()));
    }
    if b.expires_at_ms <= now_ms {
        return Err(PushError::BadBody("the token has expired".into()));
    }
    Ok((
        b.target,
        TokenRecord {
            token: b.access_token,
            token_type: b.token_type,
            expires_at_ms: b.expires_at_ms,
            obtained_at_ms: now_ms,
            source: TokenSource::Pushed,
            version: 0,
            stale: false,
            last_stale_mark_ms: 0,
        },
    ))
}

pub use crate::tokens::coord::push_store::JTI_CACHE_KEY;
/// Most `jti`s remembered at once (each lives at most [`MAX_PUSH_LIFETIME_SECS`] plus the
/// clock tolerance, so this bounds pushes to about 30 per second, far above any refresher).
pub const MAX_REMEMBERED_JTIS: usize = 4096;

/// Records `jti` (valid until `expires_at_secs`) in the replay cache `cache` (its stored bytes,
/// if any), dropping the entries that have expired. Returns the bytes to store, or
/// [`PushError::Replayed`] if the `jti` was used already. The cache stays bounded: expired
/// entries go, and a full cache refuses new pushes until some expire.
pub fn remember_jti(
    cache: Option<&[u8]>,
    jti: &str,
    expires_at_secs: u64,
    now_secs: u64,
) -> Result<Vec<u8>, PushError> {
    let mut map: std::collections::BTreeMap<String, u64> = cache
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    map.retain(|_, exp| *exp >= now_secs);
    if map.contains_key(jti) {
        return Err(PushError::Replayed);
    }
    if map.len() >= MAX_REMEMBERED_JTIS {
        return Err(PushError::Claims);
    }
    map.insert(jti.to_string(), expires_at_secs);
    Ok(serde_json::to_vec(&map).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn body() -> Vec<u8> {
        serde_json::to_vec(&PushBody {
            target: "salesforce".into(),
            access_token: Secret::new("tok-1"),
            token_type: "Bearer".into(),
            expires_at_ms: (NOW + 3600) * 1000,
        })
        .unwrap()
    }

    fn pair() -> (PushSigner, PushVerifier) {
        let s = PushSigner::generate();
        let v = PushVerifier::from_pem(&s.public_pem()).unwrap();
        (s, v)
    }

    fn bearer(jwt: &str) -> String {
        format!("Bearer {jwt}")
    }

    #[test]
    fn a_signed_push_verifies_and_its_body_becomes_a_pushed_record() {
        let (s, v) = pair();
        let b = body();
        let jwt = s.sign(&b, NOW, 60, "j1").unwrap();
        let ok = v.verify(Some(&bearer(&jwt)), &b, NOW + 5).unwrap();
        assert_eq!(ok.jti, "j1");
        let (target, rec) = record_from_body(&b, NOW * 1000).unwrap();
        assert_eq!(
            (target.as_str(), rec.source, rec.token.expose()),
            ("salesforce", TokenSource::Pushed, "tok-1")
        );
        assert!(
            !format!("{:?}", serde_json::from_slice::<PushBody>(&b).unwrap()).contains("tok-1")
        );
    }

    #[test]
    fn forged_pushes_are_refused() {
        let (s, v) = pair();
        let b = body();
        // Unsigned / garbage / missing.
        assert_eq!(v.verify(None, &b, NOW), Err(PushError::NoToken));
        assert_eq!(v.verify(Some("Basic x"), &b, NOW), Err(PushError::NoToken));
        assert_eq!(
            v.verify(Some("Bearer not.a.jwt"), &b, NOW),
            Err(PushError::Invalid)
        );
        // Expired.
        let jwt = s.sign(&b, NOW, 60, "j2").unwrap();
        assert_eq!(
            v.verify(Some(&bearer(&jwt)), &b, NOW + 60 + CLOCK_TOLERANCE_SECS + 1),
            Err(PushError::Invalid)
        );
        // Wrong key.
        let other = PushSigner::generate();
        let jwt = other.sign(&b, NOW, 60, "j3").unwrap();
        assert_eq!(
            v.verify(Some(&bearer(&jwt)), &b, NOW),
            Err(PushError::Invalid)
        );
        // Another body.
        let jwt = s.sign(b"{}", NOW, 60, "j4").unwrap();
        assert_eq!(
            v.verify(Some(&bearer(&jwt)), &b, NOW),
            Err(PushError::BodyMismatch)
        );
        // alg: none, with the right claims.
        use base64::Engine as _;
        let enc = |x: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
        let claims = format!(
            r#"{{"iss":"egressctl","aud":"egress-push","iat":{NOW},"exp":{},"jti":"j5","body_sha256":"{}"}}"#,
            NOW + 60,
            sha256_hex(&b)
        );
        let none = format!("{}.{}.", enc(r#"{"alg":"none","typ":"JWT"}"#), enc(&claims));
        assert_eq!(
            v.verify(Some(&bearer(&none)), &b, NOW),
            Err(PushError::Invalid)
        );
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let s = PushSigner::generate();
        let v = PushVerifier::from_pem(&s.public_pem()).unwrap();
        let b = body();
        let mut claims = Claims::with_custom_claims(
            PushClaims {
                body_sha256: sha256_hex(&b),
            },
            Duration::from_secs(60),
        )
        .with_issuer(PUSH_ISSUER)
        .with_audience("someone-else")
        .with_jwt_id("j6");
        claims.issued_at = Some(Duration::from_secs(NOW));
        claims.expires_at = Some(Duration::from_secs(NOW + 60));
        let jwt = s.0.sign(claims).unwrap();
        assert_eq!(
            v.verify(Some(&bearer(&jwt)), &b, NOW),
            Err(PushError::Invalid)
        );
    }

    #[test]
    fn the_replay_cache_refuses_a_used_jti_forgets_expired_ones_and_stays_bounded() {
        let c = remember_jti(None, "a", NOW + 60, NOW).unwrap();
        assert_eq!(
            remember_jti(Some(&c), "a", NOW + 60, NOW),
            Err(PushError::Replayed)
        );
        let c = remember_jti(Some(&c), "b", NOW + 10, NOW).unwrap();
        // Later, both expired: the cache is empty again but for the new one.
        let c = remember_jti(Some(&c), "c", NOW + 200, NOW + 100).unwrap();
        let map: std::collections::BTreeMap<String, u64> = serde_json::from_slice(&c).unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["c"]);
        let mut full = None;
        for i in 0..MAX_REMEMBERED_JTIS {
            full = Some(remember_jti(full.as_deref(), &format!("j{i}"), NOW + 60, NOW).unwrap());
        }
        assert_eq!(
            remember_jti(full.as_deref(), "one-more", NOW + 60, NOW),
            Err(PushError::Claims)
        );
        assert!(
            remember_jti(full.as_deref(), "one-more", NOW + 200, NOW + 61).is_ok(),
            "expired entries free the cache"
        );
        assert_eq!(
            remember_jti(Some(b"garbage"), "x", NOW + 1, NOW).map(|_| ()),
            Ok(())
        );
    }

    #[test]
    fn bad_bodies_are_refused_with_400() {
        let now_ms = NOW * 1000;
        for bad in [
            &b"garbage"[..],
            br#"{"target":"t","access_token":"a b","token_type":"Bearer","expires_at_ms":9999999999999}"#,
            br#"{"target":"t","access_token":"a","token_type":"mac","expires_at_ms":9999999999999}"#,
            br#"{"target":"t","access_token":"a","token_type":"Bearer","expires_at_ms":1}"#,
            br#"{"target":"t","access_token":"a","token_type":"Bearer","expires_at_ms":9999999999999,"x":1}"#,
        ] {
            let e = record_from_body(bad, now_ms).unwrap_err();
            assert_eq!(e.status(), 400, "{}", String::from_utf8_lossy(bad));
        }
    }
}
