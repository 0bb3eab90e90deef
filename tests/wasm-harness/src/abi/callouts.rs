//! `proxy_http_call`: records the callout; tests answer it through
//! [`crate::Worker::respond_callout`] / [`crate::Worker::fail_callout`].

use super::headers::{deserialize_map, find};
use crate::memory::{finish, read, read_string, write_u32, HostResult};
use crate::state::StoreData;
use crate::types::{Callout, Status};
use std::time::Duration;
use wasmtime::{Caller, Linker};

#[allow(clippy::too_many_arguments)]
fn http_call(
    c: &mut Caller<'_, StoreData>,
    upstream: (u32, u32),
    headers: (u32, u32),
    body: (u32, u32),
    trailers: (u32, u32),
    timeout_ms: u32,
    token_ptr: u32,
) -> HostResult {
    let upstream = read_string(c, upstream.0, upstream.1)?;
    let headers = deserialize_map(&read(c, headers.0, headers.1)?).ok_or(Status::BadArgument)?;
    let body = read(c, body.0, body.1)?;
    let trailers = deserialize_map(&read(c, trailers.0, trailers.1)?).ok_or(Status::BadArgument)?;
    let (rejected, now) = {
        let shared = c.data().shared.lock();
        (
            shared.rejected_upstreams.get(&upstream).copied(),
            shared.now_nanos,
        )
    };
    if let Some(status) = rejected {
        return Err(status.into());
    }
    // Envoy refuses callouts without the pseudo headers it needs to route them.
    if [":method", ":path", ":authority"]
        .iter()
        .any(|h| find(&headers, h).is_none())
    {
        return Err(Status::BadArgument.into());
    }
    let token = c.data().next_token;
    write_u32(c, token_ptr, token)?;
    let data = c.data_mut();
    data.next_token = data.next_token.wrapping_add(1).max(1);
    let callout = Callout {
        token,
        upstream,
        headers,
        body,
        trailers,
        timeout: Duration::from_millis(u64::from(timeout_ms)),
        context_id: data.effective_context,
        dispatched_at_nanos: now,
    };
    data.callouts.insert(token, callout);
    Ok(())
}

type C<'a> = Caller<'a, StoreData>;

pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         up: u32,
         ul: u32,
         hp: u32,
         hl: u32,
         bp: u32,
         bl: u32,
         tp: u32,
         tl: u32,
         timeout: u32,
         token: u32| {
            finish(http_call(
                &mut c,
                (up, ul),
                (hp, hl),
                (bp, bl),
                (tp, tl),
                timeout,
                token,
            ))
        },
    )?;
    Ok(())
}
