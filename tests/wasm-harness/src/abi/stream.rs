//! Stream control: `proxy_send_local_response`, `proxy_continue_stream`,
//! `proxy_close_stream`, plus the ABI 0.1.0 / alternative spellings
//! (`proxy_continue_request`, `proxy_resume_http_request`, ...).

use super::headers::deserialize_map;
use crate::memory::{finish, read, read_string, HostResult};
use crate::state::StoreData;
use crate::types::{LocalResponse, Status, StreamType};
use wasmtime::{Caller, Linker};

#[allow(clippy::too_many_arguments)]
fn send_local_response(
    c: &mut Caller<'_, StoreData>,
    status: u32,
    details: (u32, u32),
    body: (u32, u32),
    headers: (u32, u32),
    grpc_status: i32,
) -> HostResult {
    let details = read_string(c, details.0, details.1)?;
    let body = read(c, body.0, body.1)?;
    let headers = deserialize_map(&read(c, headers.0, headers.1)?).ok_or(Status::BadArgument)?;
    let stream = c.data_mut().current_stream().ok_or(Status::NotFound)?;
    stream.local_response = Some(LocalResponse {
        status,
        details,
        body,
        headers,
        grpc_status,
    });
    Ok(())
}

fn record(c: &mut Caller<'_, StoreData>, stream_type: u32, close: bool) -> HostResult {
    let stream_type = StreamType::from_raw(stream_type).ok_or(Status::BadArgument)?;
    let stream = c.data_mut().current_stream().ok_or(Status::NotFound)?;
    let counts = if close {
        &mut stream.closed
    } else {
        &mut stream.resumed
    };
    *counts.entry(stream_type).or_default() += 1;
    Ok(())
}

type C<'a> = Caller<'a, StoreData>;

pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         status: u32,
         dp: u32,
         dl: u32,
         bp: u32,
         bl: u32,
         hp: u32,
         hl: u32,
         grpc: i32| {
            finish(send_local_response(
                &mut c,
                status,
                (dp, dl),
                (bp, bl),
                (hp, hl),
                grpc,
            ))
        },
    )?;
    linker.func_wrap("env", "proxy_continue_stream", |mut c: C<'_>, t: u32| {
        finish(record(&mut c, t, false))
    })?;
    linker.func_wrap("env", "proxy_close_stream", |mut c: C<'_>, t: u32| {
        finish(record(&mut c, t, true))
    })?;
    for (name, stream_type) in [
        ("proxy_continue_request", StreamType::HttpRequest),
        ("proxy_resume_http_request", StreamType::HttpRequest),
        ("proxy_continue_response", StreamType::HttpResponse),
        ("proxy_resume_http_response", StreamType::HttpResponse),
    ] {
        linker.func_wrap("env", name, move |mut c: C<'_>| {
            finish(record(&mut c, stream_type as u32, false))
        })?;
    }
    for (name, stream_type) in [
        ("proxy_reset_http_request", StreamType::HttpRequest),
        ("proxy_reset_http_response", StreamType::HttpResponse),
    ] {
        linker.func_wrap("env", name, move |mut c: C<'_>| {
            finish(record(&mut c, stream_type as u32, true))
        })?;
    }
    Ok(())
}
