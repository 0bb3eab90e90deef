//! AWS SigV4 glue, with the signer of `egress_core::sigv4`.
//!
//! `payload: unsigned`: the egress filter signs in the request-headers callback, once the
//! final path is set.
//!
//! `payload: signed`: the signature needs the body's hash, and a proxy-wasm filter in Envoy
//! cannot change request headers once it has seen the body (pausing the headers stops the body
//! callbacks; letting them go makes them read-only). So `egressctl compile` renders, for
//! configs with such targets, the egress filter, a buffer filter, a second instance of this
//! module in the sign role, then the router. The egress filter hashes the body chunk by chunk
//! as it passes and records the digest as a filter-state property; the buffer filter holds the
//! headers back until the whole body is there; the signer then signs the headers with the
//! recorded digest. The cost: the whole body is held in Envoy (up to
//! `SIGNED_PAYLOAD_MAX_BYTES`, 413 beyond) and the request starts upstream only once it is
//! complete.

use crate::host::{self, Headers, Host};
use egress_core::engine::{Engine, Forward, LocalReply};
use egress_core::plan::{wire, LogLevel};
use egress_core::sigv4::pushed::AwsCredCache;
use egress_core::sigv4::{self, AwsKeys, AwsSigv4Credential, Payload, PayloadMode};
use egress_core::tokens::coord::HostError;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// This worker's derived signing keys (one per target and day): the four chained HMACs
    /// run once a day per target, not per request.
    static SIGNING_KEYS: RefCell<sigv4::SigningKeys> = RefCell::new(sigv4::SigningKeys::new());
    /// This worker's copies of pushed temporary credentials (`web_identity` targets).
    static PUSHED: RefCell<AwsCredCache> = RefCell::new(AwsCredCache::default());
}

/// `web_identity` targets without valid pushed credentials (for the readiness endpoint).
pub fn not_ready(engine: &Engine) -> Vec<String> {
    engine
        .targets()
        .iter()
        .filter_map(|t| {
            let cred = t.sigv4.as_ref().filter(|c| c.keys.is_none())?;
            match keys_for(&t.name, cred) {
                Ok(Some(_)) => None,
                _ => Some(t.name.clone()),
            }
        })
        .collect()
}

/// The keys to sign with: the static ones, or the pushed temporary credentials while valid.
/// `None`: no valid credentials (answer 503, never forward unsigned).
fn keys_for(target: &str, cred: &AwsSigv4Credential) -> Result<Option<AwsKeys>, HostError> {
    if let Some(k) = &cred.keys {
        return Ok(Some(k.clone()));
    }
    let now = host::now_ms()?;
    Ok(PUSHED.with(|c| {
        c.try_borrow_mut()
            .ok()
            .and_then(|mut c| c.keys(&Host, target, now))
    }))
}

/// The SigV4 state of one request in the egress filter.
#[derive(Default)]
pub struct Signing {
    /// `payload: signed`: the running hash of the body seen so far.
    hashing: Option<hmac_sha256::Hash>,
}

impl Signing {
    /// Called after the forward's header edits are written. `None`: go on. `Some(action)`:
    /// return it (the request was answered).
    pub fn on_forward(
        &mut self,
        engine: &Engine,
        fwd: &Forward,
        method: &str,
        headers: &Headers,
        end_of_stream: bool,
    ) -> Result<Option<Action>, HostError> {
        let Some(target) = engine.target(fwd.target) else {
            return Ok(None);
        };
        let Some(cred) = &target.sigv4 else {
            return Ok(None);
        };
        let Some(keys) = keys_for(&target.name, cred)? else {
            // Temporary credentials come by push; none is there, or they expired.
            host::reply_or_reset(&engine.credentials_unavailable(fwd.target));
            return Ok(Some(Action::Pause));
        };
        match cred.payload {
            PayloadMode::Unsigned => {
                sign_now(
                    cred,
                    &keys,
                    method,
                    &target.authority,
                    &fwd.path,
                    headers,
                    None,
                )?;
            }
            // The signer instance signs; with a body, it needs the digest recorded here.
            PayloadMode::Signed if !end_of_stream => {
                self.hashing = Some(hmac_sha256::Hash::new());
            }
            PayloadMode::Signed => {}
        }
        Ok(None)
    }

    /// A body chunk passes: hash it; at the end, record the digest for the signer.
    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(hash) = self.hashing.as_mut() else {
            return Action::Continue;
        };
        let chunk = match host::request_body(body_size) {
            Ok(c) if c.len() == body_size => c,
            _ => return self.fail("could not read the request body"),
        };
        hash.update(&chunk);
        if end_of_stream {
            if let Some(h) = self.hashing.take() {
                let digest = hex(&h.finalize());
                if host::set_property(wire::PROP_BODY_SHA256, &digest).is_err() {
                    return self.fail("could not record the body digest");
                }
            }
        }
        Action::Continue
    }

    fn fail(&mut self, why: &str) -> Action {
        self.hashing = None;
        host::log(LogLevel::Error, &format!("egress: aws_sigv4: {why}"));
        host::reply_or_reset(&LocalReply::error(
            500,
            "internal_error",
            "the egress filter could not sign the request",
        ));
        Action::Pause
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Signs with the host's clock and writes the signature headers. `digest`: the body's
/// SHA-256 for `payload: signed` (`None` there means an empty body).
fn sign_now(
    cred: &AwsSigv4Credential,
    keys: &AwsKeys,
    method: &str,
    host_name: &str,
    path: &str,
    headers: &Headers,
    digest: Option<&str>,
) -> Result<(), HostError> {
    let req = sigv4::Request {
        method,
        host: host_name,
        path,
        headers: sigv4::caller_headers_to_sign(
            headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        ),
    };
    let payload = match cred.payload {
        PayloadMode::Unsigned => Payload::Unsigned,
        PayloadMode::Signed => match digest {
            Some(d) => Payload::Sha256Hex(d),
            None => Payload::Body(&[]),
        },
    };
    let now = host::now_ms()?;
    let signed = SIGNING_KEYS.with(|cache| match cache.try_borrow_mut() {
        Ok(mut cache) => sigv4::sign_with(
            keys,
            &cred.region,
            &cred.service,
            &req,
            payload,
            now,
            &mut cache,
        ),
        // Never expected (one thread, no re-entry): derive the key afresh.
        Err(_) => sigv4::sign(keys, &cred.region, &cred.service, &req, payload, now),
    });
    for (name, value) in &signed.headers {
        host::set_request_header(name, value)?;
    }
    Ok(())
}

/// The module in the sign role: signs requests of `payload: signed` targets, whose headers
/// the egress filter already rewrote and the buffer filter held until the body was complete.
pub struct SignHttp {
    engine: Rc<Engine>,
    log_level: LogLevel,
}

impl SignHttp {
    pub fn new(engine: Rc<Engine>, log_level: LogLevel) -> Self {
        Self { engine, log_level }
    }

    fn handle(&self) -> Result<Action, HostError> {
        let headers = host::request_headers()?;
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let Some(name) = get(wire::TARGET_HEADER) else {
            return Ok(Action::Continue);
        };
        let Some(target) = self.engine.targets().iter().find(|t| t.name == name) else {
            return Ok(Action::Continue);
        };
        let Some(cred) = target
            .sigv4
            .as_ref()
            .filter(|c| c.payload == PayloadMode::Signed)
        else {
            return Ok(Action::Continue);
        };
        let digest = host::get_property(wire::PROP_BODY_SHA256)
            .and_then(|d| String::from_utf8(d).ok())
            .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()));
        if self.log_level <= LogLevel::Debug {
            host::log(
                LogLevel::Debug,
                &format!("egress: {name}: signing with payload digest {digest:?}"),
            );
        }
        let Some(keys) = keys_for(name, cred)? else {
            // Expired while the body was buffered: never forward unsigned.
            let index = self.engine.targets().iter().position(|t| t.name == name);
            host::reply_or_reset(&index.map_or_else(
                || LocalReply::error(503, "credentials_unavailable", "no AWS credentials"),
                |i| self.engine.credentials_unavailable(i),
            ));
            return Ok(Action::Pause);
        };
        sign_now(
            cred,
            &keys,
            get(":method").unwrap_or(""),
            &target.authority,
            get(":path").unwrap_or(""),
            &headers,
            digest.as_deref(),
        )?;
        Ok(Action::Continue)
    }
}

impl Context for SignHttp {}

impl HttpContext for SignHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.handle() {
            Ok(action) => action,
            Err(e) => {
                host::log(LogLevel::Error, &format!("egress: aws_sigv4: {e}"));
                host::reply_or_reset(&LocalReply::error(
                    500,
                    "internal_error",
                    "the egress filter could not sign the request",
                ));
                Action::Pause
            }
        }
    }
}
