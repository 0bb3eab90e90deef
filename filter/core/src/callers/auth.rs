//! One request's identity and verdict: who calls (a verified peer's SPIFFE ID, a verified
//! JWT), whether the target's and the route's `allow` admit them, and what to take off the
//! request so the caller's token never leaves.

use super::allow::{evaluate, valid_spiffe_id, Verdict};
use super::cache::{token_key, TokenCache};
use super::jwks::{JwksNeed, KeySets, NeedKind};
use super::jwt::{peek_issuer, Issuer, JwksSource, KeyError, TokenError};
use super::token::Sources;
use super::{Allow, Caller, CallersPlan};
use crate::engine::LocalReply;

/// `egress.callers`, ready to check requests.
#[derive(Debug)]
pub struct Authenticator {
    mtls: bool,
    issuers: Vec<Issuer>,
    sources: Sources,
}

/// What the request carries about its caller. `peer_spiffe_id` must come only from a
/// certificate the listener verified; `header` returns a request header by lower-case name.
pub struct CallerInput<'a> {
    pub peer_spiffe_id: Option<&'a str>,
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

/// An admitted request: its caller, and the edits that take the caller's token off it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorized {
    pub caller: Caller,
    /// Lower-case header names to remove.
    pub remove: Vec<String>,
    /// `Some(Some(v))`: set `Cookie` to `v`; `Some(None)`: remove `Cookie`; `None`: leave it.
    pub cookie: Option<Option<String>>,
}

/// A refused request: the reply to send and the reason to log (never sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reply: LocalReply,
    pub reason: String,
    /// Who was refused (403), or anonymous (401).
    pub caller: Caller,
    /// The token needs JWKS keys this worker lacks: the glue may pause the request until they
    /// come ([`super::jwks::JwksManager::need`]) instead of sending `reply`.
    pub jwks: Option<JwksNeed>,
}

impl Authenticator {
    pub fn new(plan: &CallersPlan) -> Result<Self, KeyError> {
        let mut sources = Sources::default();
        let mut issuers = Vec::with_capacity(plan.jwt.len());
        for (index, i) in plan.jwt.iter().enumerate() {
            for h in &i.from_headers {
                sources.add_header(h);
            }
            for c in &i.from_cookies {
                sources.add_cookie(c);
            }
            issuers.push(Issuer::at(index, i)?);
        }
        Ok(Self {
            mtls: plan.mtls,
            issuers,
            sources,
        })
    }

    /// Whether a verified peer certificate's SPIFFE ID is an identity (`callers.mtls`).
    pub fn mtls(&self) -> bool {
        self.mtls
    }

    /// The (lower-case) headers a caller's token is read from (`from_headers`).
    pub fn token_headers(&self) -> impl Iterator<Item = &str> {
        self.sources.headers.iter().map(|h| h.name.as_str())
    }

    pub fn has_jwt(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// The issuers whose keys are fetched from a `jwks_url`.
    pub fn jwks_sources(&self) -> Vec<JwksSource> {
        self.issuers
            .iter()
            .filter_map(|i| i.jwks_source().cloned())
            .collect()
    }

    /// The caller's identities, or a 401 (a 503 when a `jwks_url` issuer's keys were never
    /// fetched). `keys` holds the fetched keys of the `jwks_url` issuers.
    pub fn identify(
        &self,
        input: &CallerInput<'_>,
        now: u64,
        cache: &mut TokenCache,
        keys: &KeySets,
    ) -> Result<Caller, Box<Refusal>> {
        let mut caller = Caller {
            spiffe_id: if self.mtls {
                input
                    .peer_spiffe_id
                    .filter(|id| valid_spiffe_id(id))
                    .map(str::to_string)
            } else {
                None
            },
            jwt: None,
        };
        if self.has_jwt() {
            if let Some((token, _source)) = self.sources.find(input.header) {
                match self.verify(&token, now, cache, keys) {
                    Ok(jwt) => caller.jwt = Some(jwt),
                    Err((e, need)) => return Err(self.invalid_token(e, need)),
                }
            }
        }
        if caller.is_anonymous() {
            let mut reply = LocalReply::error(
                401,
                "unauthenticated",
                "this proxy needs the caller's identity: a client certificate or a bearer token",
            );
            if self.has_jwt() {
                reply
                    .headers
                    .push(("www-authenticate", "Bearer".to_string()));
            }
            let reason = match input.peer_spiffe_id {
                Some(_) if self.mtls => "the peer certificate's URI SAN is not a SPIFFE ID",
                _ => "no client certificate and no token",
            };
            return Err(Box::new(Refusal {
                reply,
                reason: reason.into(),
                caller,
                jwks: None,
            }));
        }
        Ok(caller)
    }

    /// Checks a token: the cache, then its issuer's keys. A failure that fetched keys could
    /// cure (none fetched yet, an unknown `kid` of a `jwks_url` issuer) names the need.
    fn verify(
        &self,
        token: &str,
        now: u64,
        cache: &mut TokenCache,
        keys: &KeySets,
    ) -> Result<super::JwtCaller, (TokenError, Option<JwksNeed>)> {
        if token.len() > super::MAX_TOKEN_BYTES {
            return Err((TokenError::TooLarge, None));
        }
        let key = token_key(token);
        if let Some(hit) = cache.get(&key, now) {
            return Ok(hit);
        }
        let iss = peek_issuer(token).map_err(|e| (e, None))?;
        let issuer = self.issuers.iter().find(|i| i.name == iss).ok_or_else(|| {
            (
                TokenError::UnknownIssuer(iss.chars().take(64).collect()),
                None,
            )
        })?;
        let source = issuer.jwks_source().map(|s| s.index);
        let fetched = source.and_then(|index| keys.get(index));
        match issuer.verify_with(token, now, fetched) {
            Ok((caller, exp)) => {
                cache.insert(key, caller.clone(), exp, now);
                Ok(caller)
            }
            Err(e) => {
                let kind = match e {
                    TokenError::KeysNotFetched => Some(NeedKind::NeverFetched),
                    TokenError::UnknownKid(_) => Some(NeedKind::UnknownKid),
                    _ => None,
                };
                let need = source
                    .zip(kind)
                    .map(|(issuer, kind)| JwksNeed { issuer, kind });
                Err((e, need))
            }
        }
    }

    fn invalid_token(&self, e: TokenError, jwks: Option<JwksNeed>) -> Box<Refusal> {
        let mut reply = if e == TokenError::KeysNotFetched {
            // Not the caller's fault: its token may be good once the keys come. Retry later.
            LocalReply::error(
                503,
                "issuer_keys_unavailable",
                "the token issuer's keys could not be fetched yet; retry later",
            )
        } else {
            LocalReply::error(401, "invalid_token", "the caller's token is not valid")
        };
        reply.headers.push((
            "www-authenticate",
            r#"Bearer error="invalid_token""#.to_string(),
        ));
        Box::new(Refusal {
            reply,
            reason: e.to_string(),
            caller: Caller::default(),
            jwks,
        })
    }

    /// Identifies the caller, applies the target's and the route's `allow`, and lists the
    /// edits that take the caller's token off the request.
    pub fn authorize(
        &self,
        target: Option<&Allow>,
        route: Option<&Allow>,
        input: &CallerInput<'_>,
        now: u64,
        cache: &mut TokenCache,
    ) -> Result<Authorized, Box<Refusal>> {
        self.authorize_with(target, route, input, now, cache, &KeySets::default())
    }

    /// [`Self::authorize`] with the fetched keys of the `jwks_url` issuers.
    pub fn authorize_with(
        &self,
        target: Option<&Allow>,
        route: Option<&Allow>,
        input: &CallerInput<'_>,
        now: u64,
        cache: &mut TokenCache,
        keys: &KeySets,
    ) -> Result<Authorized, Box<Refusal>> {
        let caller = self.identify(input, now, cache, keys)?;
        if let Verdict::Refused { by_route } = evaluate(target, route, &caller) {
            let reason = if by_route {
                "the route's allow does not list this caller"
            } else {
                "the target's allow does not list this caller"
            };
            return Err(Box::new(Refusal {
                reply: LocalReply::error(403, "forbidden", "this caller may not use this route"),
                reason: reason.into(),
                caller,
                jwks: None,
            }));
        }
        let (remove, cookie) = self.sources.removal(input.header);
        Ok(Authorized {
            caller,
            remove,
            cookie,
        })
    }
}
