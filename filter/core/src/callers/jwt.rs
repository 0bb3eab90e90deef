//! JWT verification for one issuer: keys built once at load, each only for its own algorithm;
//! tokens checked for size, `alg`, `kid`, signature, `iss`, `aud`, `exp`, `nbf`.

use super::{IssuerPlan, JwtAlg, JwtCaller, KeySource, MAX_TOKEN_BYTES};
use jwt_simple::prelude::*;
use std::collections::HashSet;

/// Why an issuer's keys could not be built (at load: the filter refuses the config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("issuer {issuer:?}: {algs} needs a shared secret; public keys are for RS/PS/ES/EdDSA")]
    SecretForPublicKeyAlg { issuer: String, algs: String },
    #[error("issuer {issuer:?}: {alg} needs `secret`, not a public key")]
    PublicKeyForHmac { issuer: String, alg: &'static str },
    #[error("issuer {issuer:?}: {file} was not read (compile the config with egressctl)")]
    NotLoaded { issuer: String, file: String },
    #[error("issuer {issuer:?}: {what} is not a key for {alg}")]
    Unusable {
        issuer: String,
        what: String,
        alg: &'static str,
    },
    #[error("issuer {issuer:?}: the JWKS is not valid JSON with a `keys` array")]
    BadJwks { issuer: String },
    #[error("issuer {issuer:?}: the JWKS lists kid {kid:?} twice")]
    DuplicateKid { issuer: String, kid: String },
    #[error("issuer {issuer:?}: jwks_url {url:?} is not an https URL: {reason}")]
    JwksUrl {
        issuer: String,
        url: String,
        reason: String,
    },
}

/// Why a presented token was refused. Logged, never sent to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token is not a compact JWT")]
    Malformed,
    #[error("alg none is refused")]
    AlgNone,
    #[error("alg {0:?} is not allowed for this issuer")]
    AlgNotAllowed(String),
    #[error("issuer {0:?} is not configured")]
    UnknownIssuer(String),
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    #[error("no key for alg {0}")]
    NoKey(&'static str),
    #[error("the issuer's JWKS has not been fetched yet")]
    KeysNotFetched,
    #[error("token has no exp")]
    MissingExp,
    #[error("token has no sub")]
    MissingSub,
    #[error("token is not valid: {0}")]
    Rejected(String),
}

enum VerifyKey {
    HS256(HS256Key),
    HS384(HS384Key),
    HS512(HS512Key),
    RS256(RS256PublicKey),
    RS384(RS384PublicKey),
    RS512(RS512PublicKey),
    PS256(PS256PublicKey),
    PS384(PS384PublicKey),
    PS512(PS512PublicKey),
    ES256(ES256PublicKey),
    ES384(ES384PublicKey),
    EdDSA(Ed25519PublicKey),
}

type Claims = JWTClaims<serde_json::Map<String, serde_json::Value>>;

impl VerifyKey {
    fn hmac(alg: JwtAlg, secret: &[u8]) -> Option<Self> {
        match alg {
            JwtAlg::HS256 => Some(Self::HS256(HS256Key::from_bytes(secret))),
            JwtAlg::HS384 => Some(Self::HS384(HS384Key::from_bytes(secret))),
            JwtAlg::HS512 => Some(Self::HS512(HS512Key::from_bytes(secret))),
            _ => None,
        }
    }

    fn from_pem(alg: JwtAlg, pem: &str) -> Option<Self> {
        match alg {
            JwtAlg::RS256 => RS256PublicKey::from_pem(pem).ok().map(Self::RS256),
            JwtAlg::RS384 => RS384PublicKey::from_pem(pem).ok().map(Self::RS384),
            JwtAlg::RS512 => RS512PublicKey::from_pem(pem).ok().map(Self::RS512),
            JwtAlg::PS256 => PS256PublicKey::from_pem(pem).ok().map(Self::PS256),
            JwtAlg::PS384 => PS384PublicKey::from_pem(pem).ok().map(Self::PS384),
            JwtAlg::PS512 => PS512PublicKey::from_pem(pem).ok().map(Self::PS512),
            JwtAlg::ES256 => ES256PublicKey::from_pem(pem).ok().map(Self::ES256),
            JwtAlg::ES384 => ES384PublicKey::from_pem(pem).ok().map(Self::ES384),
            JwtAlg::EdDSA => Ed25519PublicKey::from_pem(pem).ok().map(Self::EdDSA),
            _ => None,
        }
    }

    fn from_jwk(alg: JwtAlg, jwk: &str) -> Option<Self> {
        match alg {
            JwtAlg::RS256 => RS256PublicKey::from_jwk(jwk).ok().map(Self::RS256),
            JwtAlg::RS384 => RS384PublicKey::from_jwk(jwk).ok().map(Self::RS384),
            JwtAlg::RS512 => RS512PublicKey::from_jwk(jwk).ok().map(Self::RS512),
            JwtAlg::PS256 => PS256PublicKey::from_jwk(jwk).ok().map(Self::PS256),
            JwtAlg::PS384 => PS384PublicKey::from_jwk(jwk).ok().map(Self::PS384),
            JwtAlg::PS512 => PS512PublicKey::from_jwk(jwk).ok().map(Self::PS512),
            JwtAlg::ES256 => ES256PublicKey::from_jwk(jwk).ok().map(Self::ES256),
            JwtAlg::ES384 => ES384PublicKey::from_jwk(jwk).ok().map(Self::ES384),
            JwtAlg::EdDSA => Ed25519PublicKey::from_jwk(jwk).ok().map(Self::EdDSA),
            _ => None,
        }
    }

    fn verify(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<Claims, jwt_simple::Error> {
        let o = Some(options);
        match self {
            Self::HS256(k) => k.verify_token(token, o),
            Self::HS384(k) => k.verify_token(token, o),
            Self::HS512(k) => k.verify_token(token, o),
            Self::RS256(k) => k.verify_token(token, o),
            Self::RS384(k) => k.verify_token(token, o),
            Self::RS512(k) => k.verify_token(token, o),
            Self::PS256(k) => k.verify_token(token, o),
            Self::PS384(k) => k.verify_token(token, o),
            Self::PS512(k) => k.verify_token(token, o),
            Self::ES256(k) => k.verify_token(token, o),
            Self::ES384(k) => k.verify_token(token, o),
            Self::EdDSA(k) => k.verify_token(token, o),
        }
    }
}

struct KeyEntry {
    kid: Option<String>,
    alg: JwtAlg,
    key: VerifyKey,
}

/// The usable keys of one JWKS document, for one issuer's algorithms.
pub struct KeySet {
    keys: Vec<KeyEntry>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySet({} keys)", self.keys.len())
    }
}

impl KeySet {
    /// Reads a JWKS document: valid JSON with a `keys` array, no `kid` listed twice, at least
    /// one signing key of a listed algorithm (keys of other types or algorithms are skipped).
    pub fn from_jwks(issuer: &str, algorithms: &[JwtAlg], jwks: &str) -> Result<Self, KeyError> {
        jwks_keys(issuer, algorithms, jwks).map(|keys| Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Where an issuer with `jwks_url` fetches its keys (`egressctl compile` renders the cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    /// The issuer's position in `egress.callers.jwt`.
    pub index: usize,
    pub issuer: String,
    pub url: crate::target_url::TargetUrl,
    /// The URL as configured (logs, shared-data key).
    pub url_text: String,
    pub algorithms: Vec<JwtAlg>,
}

impl JwksSource {
    /// Parses and checks a `jwks_url` (https only: keys fetched in clear text could be forged).
    pub fn new(index: usize, plan: &IssuerPlan, url: &str) -> Result<Self, KeyError> {
        let bad = |reason: String| KeyError::JwksUrl {
            issuer: plan.issuer.clone(),
            url: url.chars().take(200).collect(),
            reason,
        };
        let parsed = crate::target_url::TargetUrl::parse(url).map_err(|e| bad(e.to_string()))?;
        if parsed.scheme != crate::target_url::Scheme::Https {
            return Err(bad("keys fetched in clear text could be forged".into()));
        }
        Ok(Self {
            index,
            issuer: plan.issuer.clone(),
            url: parsed,
            url_text: url.to_string(),
            algorithms: plan.algorithms.clone(),
        })
    }
}

/// One configured issuer, ready to verify.
pub struct Issuer {
    pub name: String,
    audiences: HashSet<String>,
    algorithms: Vec<JwtAlg>,
    keys: Vec<KeyEntry>,
    /// `jwks_url`: the keys come from a fetched JWKS ([`super::jwks`]), not from `keys`.
    jwks: Option<JwksSource>,
    roles_claim: Vec<String>,
    clock_skew_secs: u64,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("name", &self.name)
            .field("algorithms", &self.algorithms)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Issuer {
    /// Builds a lone issuer (index 0 of `egress.callers.jwt`).
    pub fn new(plan: &IssuerPlan) -> Result<Self, KeyError> {
        Self::at(0, plan)
    }

    /// Builds issuer `index` of `egress.callers.jwt`.
    pub fn at(index: usize, plan: &IssuerPlan) -> Result<Self, KeyError> {
        let issuer = plan.issuer.clone();
        let mut keys = Vec::new();
        let mut jwks_source = None;
        match &plan.keys {
            KeySource::Secret { secret } => {
                let public: Vec<&str> = plan
                    .algorithms
                    .iter()
                    .filter(|a| !a.is_hmac())
                    .map(|a| a.as_str())
                    .collect();
                if !public.is_empty() {
                    return Err(KeyError::SecretForPublicKeyAlg {
                        issuer,
                        algs: public.join(", "),
                    });
                }
                for &alg in &plan.algorithms {
                    if let Some(key) = VerifyKey::hmac(alg, secret.expose().as_bytes()) {
                        keys.push(KeyEntry {
                            kid: None,
                            alg,
                            key,
                        });
                    }
                }
            }
            KeySource::PublicKey { file, pem } => {
                no_hmac(plan)?;
                let pem = pem.as_deref().ok_or_else(|| KeyError::NotLoaded {
                    issuer: issuer.clone(),
                    file: file.clone(),
                })?;
                for &alg in &plan.algorithms {
                    let key = VerifyKey::from_pem(alg, pem).ok_or_else(|| KeyError::Unusable {
                        issuer: issuer.clone(),
                        what: format!("public_key {file}"),
                        alg: alg.as_str(),
                    })?;
                    keys.push(KeyEntry {
                        kid: None,
                        alg,
                        key,
                    });
                }
            }
            KeySource::JwksFile { file, jwks } => {
                no_hmac(plan)?;
                let jwks = jwks.as_deref().ok_or_else(|| KeyError::NotLoaded {
                    issuer: issuer.clone(),
                    file: file.clone(),
                })?;
                keys = jwks_keys(&issuer, &plan.algorithms, jwks)?;
            }
            KeySource::JwksUrl { url, .. } => {
                no_hmac(plan)?;
                jwks_source = Some(JwksSource::new(index, plan, url)?);
            }
        }
        Ok(Self {
            name: plan.issuer.clone(),
            audiences: plan.audiences.iter().cloned().collect(),
            algorithms: plan.algorithms.clone(),
            keys,
            jwks: jwks_source,
            roles_claim: plan.roles_claim.split('.').map(str::to_string).collect(),
            clock_skew_secs: plan.clock_skew_secs,
        })
    }

    /// Where this issuer's keys are fetched from (`jwks_url`), if they are.
    pub fn jwks_source(&self) -> Option<&JwksSource> {
        self.jwks.as_ref()
    }

    /// Verifies a token at `now` (Unix seconds): the caller and the token's `exp`.
    pub fn verify(&self, token: &str, now: u64) -> Result<(JwtCaller, u64), TokenError> {
        self.verify_with(token, now, None)
    }

    /// Like [`Self::verify`]; a `jwks_url` issuer uses `fetched` (its last good JWKS), and
    /// without one the token cannot be checked ([`TokenError::KeysNotFetched`]).
    pub fn verify_with(
        &self,
        token: &str,
        now: u64,
        fetched: Option<&KeySet>,
    ) -> Result<(JwtCaller, u64), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let meta = Token::decode_metadata(token).map_err(|_| TokenError::Malformed)?;
        let alg_text = meta.algorithm();
        if alg_text.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgNone);
        }
        let alg = JwtAlg::parse(alg_text)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| TokenError::AlgNotAllowed(truncate(alg_text)))?;
        let keys: &[KeyEntry] = match (&self.jwks, fetched) {
            (None, _) => &self.keys,
            (Some(_), Some(set)) => &set.keys,
            (Some(_), None) => return Err(TokenError::KeysNotFetched),
        };
        let of_alg = || keys.iter().filter(move |k| k.alg == alg);
        let candidates: Vec<&KeyEntry> = match meta.key_id() {
            Some(kid) => {
                let by_kid: Vec<&KeyEntry> =
                    of_alg().filter(|k| k.kid.as_deref() == Some(kid)).collect();
                if !by_kid.is_empty() {
                    by_kid
                } else {
                    let unnamed: Vec<&KeyEntry> = of_alg().filter(|k| k.kid.is_none()).collect();
                    if unnamed.is_empty() {
                        return Err(TokenError::UnknownKid(truncate(kid)));
                    }
                    unnamed
                }
            }
            None => of_alg().collect(),
        };
        if candidates.is_empty() {
            return Err(TokenError::NoKey(alg.as_str()));
        }
        let mut last = TokenError::NoKey(alg.as_str());
        for entry in candidates {
            match entry.key.verify(token, self.options(now)) {
                Ok(claims) => return self.caller(claims),
                Err(e) => last = TokenError::Rejected(e.to_string()),
            }
        }
        Err(last)
    }

    fn options(&self, now: u64) -> VerificationOptions {
        VerificationOptions {
            allowed_issuers: Some(HashSet::from([self.name.clone()])),
            allowed_audiences: if self.audiences.is_empty() {
                None
            } else {
                Some(self.audiences.clone())
            },
            time_tolerance: Some(Duration::from_secs(self.clock_skew_secs)),
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            max_token_length: Some(MAX_TOKEN_BYTES),
            ..Default::default()
        }
    }

    fn caller(&self, claims: Claims) -> Result<(JwtCaller, u64), TokenError> {
        let exp = claims.expires_at.ok_or(TokenError::MissingExp)?.as_secs();
        let subject = claims.subject.clone().ok_or(TokenError::MissingSub)?;
        let roles = roles_at(&claims.custom, &self.roles_claim);
        Ok((
            JwtCaller {
                issuer: self.name.clone(),
                subject,
                roles,
            },
            exp,
        ))
    }
}

fn no_hmac(plan: &IssuerPlan) -> Result<(), KeyError> {
    match plan.algorithms.iter().find(|a| a.is_hmac()) {
        Some(a) => Err(KeyError::PublicKeyForHmac {
            issuer: plan.issuer.clone(),
            alg: a.as_str(),
        }),
        None => Ok(()),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Roles at a dotted path: an array of strings, or one space-separated string.
fn roles_at(claims: &serde_json::Map<String, serde_json::Value>, path: &[String]) -> Vec<String> {
    let mut parts = path.iter();
    let Some(first) = parts.next() else {
        return Vec::new();
    };
    let mut value = claims.get(first.as_str());
    for p in parts {
        value = value.and_then(|v| v.get(p.as_str()));
    }
    match value {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn jwk_algs(jwk: &serde_json::Value, listed: &[JwtAlg]) -> Vec<JwtAlg> {
    let kty = jwk.get("kty").and_then(|v| v.as_str()).unwrap_or("");
    let crv = jwk.get("crv").and_then(|v| v.as_str()).unwrap_or("");
    let fits = |a: &JwtAlg| match a {
        JwtAlg::RS256
        | JwtAlg::RS384
        | JwtAlg::RS512
        | JwtAlg::PS256
        | JwtAlg::PS384
        | JwtAlg::PS512 => kty == "RSA",
        JwtAlg::ES256 => kty == "EC" && crv == "P-256",
        JwtAlg::ES384 => kty == "EC" && crv == "P-384",
        JwtAlg::EdDSA => kty == "OKP" && crv == "Ed25519",
        _ => false,
    };
    let declared = jwk.get("alg").and_then(|v| v.as_str());
    listed
        .iter()
        .copied()
        .filter(fits)
        .filter(|a| declared.is_none_or(|d| d == a.as_str()))
        .collect()
}

/// The usable keys of a JWKS (signing keys of a listed algorithm); other keys are skipped.
fn jwks_keys(issuer: &str, algorithms: &[JwtAlg], jwks: &str) -> Result<Vec<KeyEntry>, KeyError> {
    let bad = || KeyError::BadJwks {
        issuer: issuer.to_string(),
    };
    let doc: serde_json::Value = serde_json::from_str(jwks).map_err(|_| bad())?;
    let list = doc.get("keys").and_then(|k| k.as_array()).ok_or_else(bad)?;
    let mut keys = Vec::new();
    let mut kids: HashSet<&str> = HashSet::new();
    for jwk in list {
        if jwk
            .get("use")
            .and_then(|u| u.as_str())
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let kid_text = jwk.get("kid").and_then(|v| v.as_str());
        if let Some(k) = kid_text {
            if !kids.insert(k) {
                return Err(KeyError::DuplicateKid {
                    issuer: issuer.to_string(),
                    kid: truncate(k),
                });
            }
        }
        let kid = kid_text.map(str::to_string);
        // Only the public members: a JWKS that also holds private parts is still read.
        let mut public = serde_json::Map::new();
        for m in ["kty", "crv", "n", "e", "x", "y", "kid"] {
            if let Some(v) = jwk.get(m) {
                public.insert(m.to_string(), v.clone());
            }
        }
        let text = serde_json::Value::Object(public).to_string();
        for alg in jwk_algs(jwk, algorithms) {
            if let Some(key) = VerifyKey::from_jwk(alg, &text) {
                keys.push(KeyEntry {
                    kid: kid.clone(),
                    alg,
                    key,
                });
            }
        }
    }
    if keys.is_empty() {
        return Err(KeyError::Unusable {
            issuer: issuer.to_string(),
            what: "no key of the JWKS".into(),
            alg: algorithms.first().map_or("any algorithm", |a| a.as_str()),
        });
    }
    Ok(keys)
}

/// The unverified `iss` of a token, to pick the issuer that verifies it. Size-checked first.
pub fn peek_issuer(token: &str) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes =
        Base64UrlSafeNoPadding::decode_to_vec(payload, None).map_err(|_| TokenError::Malformed)?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let iss: Iss = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    iss.iss.ok_or(TokenError::Rejected("no iss".into()))
}
