//! AWS SigV4 glue: signs a forwarded request once its final path is set, with the signer of
//! `egress_core::sigv4`. With `payload: signed` and a body, the request waits in the filter
//! until the whole body is there (Envoy buffers it, up to the listener's buffer limit), then
//! is signed and let go.

use crate::host::{self, Headers, HostError};
use egress_core::engine::{Engine, Forward, LocalReply};
use egress_core::plan::LogLevel;
use egress_core::sigv4::{self, AwsKeys, Payload, PayloadMode};
use proxy_wasm::types::Action;

/// A request waiting for its body to be signed.
struct Pending {
    keys: AwsKeys,
    region: String,
    service: String,
    method: String,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
}

/// The SigV4 state of one request.
#[derive(Default)]
pub struct Signing {
    pending: Option<Pending>,
}

impl Signing {
    /// Called after the forward's header edits are written. `None`: not a SigV4 target, or
    /// signed already; go on. `Some(action)`: return it (waiting for the body, or answered).
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
        let Some(keys) = cred.keys.clone() else {
            // Temporary credentials come by push; none is there.
            host::send_local_reply(&engine.credentials_unavailable(fwd.target))?;
            return Ok(Some(Action::Pause));
        };
        let pending = Pending {
            keys,
            region: cred.region.clone(),
            service: cred.service.clone(),
            method: method.to_string(),
            host: target.authority.clone(),
            path: fwd.path.clone(),
            headers: sigv4::caller_headers_to_sign(
                headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            ),
        };
        match cred.payload {
            PayloadMode::Unsigned => apply(&pending, Payload::Unsigned).map(|()| None),
            PayloadMode::Signed if end_of_stream => {
                apply(&pending, Payload::Body(&[])).map(|()| None)
            }
            PayloadMode::Signed => {
                self.pending = Some(pending);
                Ok(Some(Action::Pause))
            }
        }
    }

    /// A body chunk arrived. Holds it until the end, then signs with the whole body.
    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(pending) = &self.pending else {
            return Action::Continue;
        };
        if !end_of_stream {
            // StopIterationAndBuffer: Envoy keeps the chunks and hands them all over at the end.
            return Action::Pause;
        }
        let body = host::request_body(body_size);
        let result = if body.len() == body_size {
            apply(pending, Payload::Body(&body))
        } else {
            Err(HostError::Status(
                "get_buffer(request body)",
                proxy_wasm::types::Status::InternalFailure,
            ))
        };
        self.pending = None;
        match result {
            Ok(()) => Action::Continue,
            Err(e) => {
                host::log(LogLevel::Error, &format!("egress: aws_sigv4: {e}"));
                let _ = host::send_local_reply(&LocalReply::error(
                    500,
                    "internal_error",
                    "the egress filter could not sign the request",
                ));
                Action::Pause
            }
        }
    }
}

/// Signs with the host's clock and writes the signature headers.
fn apply(p: &Pending, payload: Payload<'_>) -> Result<(), HostError> {
    let req = sigv4::Request {
        method: &p.method,
        host: &p.host,
        path: &p.path,
        headers: p.headers.clone(),
    };
    let signed = sigv4::sign(
        &p.keys,
        &p.region,
        &p.service,
        &req,
        payload,
        host::now_ms(),
    );
    for (name, value) in &signed.headers {
        host::set_request_header(name, value)?;
    }
    Ok(())
}
