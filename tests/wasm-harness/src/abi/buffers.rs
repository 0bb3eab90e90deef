//! Buffer hostcalls: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`,
//! `proxy_get_buffer_status`.

use crate::memory::{copy_out, finish, read, write_u32, HostResult};
use crate::state::StoreData;
use crate::types::{BufferType, Status};
use wasmtime::{Caller, Linker};

fn with_buffer<R>(
    data: &mut StoreData,
    buffer_type: u32,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> Result<R, Status> {
    let buffer_type = BufferType::from_raw(buffer_type).ok_or(Status::BadArgument)?;
    let buffer = match buffer_type {
        BufferType::HttpRequestBody => data.current_stream().map(|s| &mut s.request_body),
        BufferType::HttpResponseBody => data.current_stream().map(|s| &mut s.response_body),
        BufferType::HttpCallResponseBody => data.callout_response.as_mut().map(|r| &mut r.body),
        BufferType::VmConfiguration => Some(&mut data.vm_config),
        BufferType::PluginConfiguration => Some(&mut data.plugin_config),
        BufferType::DownstreamData
        | BufferType::UpstreamData
        | BufferType::GrpcReceiveBuffer
        | BufferType::CallData => None,
    };
    buffer.map(f).ok_or(Status::NotFound)
}

fn get_bytes(
    c: &mut Caller<'_, StoreData>,
    buffer_type: u32,
    start: u32,
    max_size: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let bytes = with_buffer(c.data_mut(), buffer_type, |b| {
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(b.len());
        let end = start
            .saturating_add(usize::try_from(max_size).unwrap_or(usize::MAX))
            .min(b.len());
        b[start..end].to_vec()
    })?;
    copy_out(c, &bytes, ptr_ptr, size_ptr)
}

/// Envoy semantics: replace `size` bytes at `start` with the new data
/// (`start == 0 && size >= len` replaces everything; `start == len` appends).
fn set_bytes(
    c: &mut Caller<'_, StoreData>,
    buffer_type: u32,
    start: u32,
    size: u32,
    ptr: u32,
    len: u32,
) -> HostResult {
    let new = read(c, ptr, len)?;
    with_buffer(c.data_mut(), buffer_type, |b| {
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        if start > b.len() {
            return Err(Status::BadArgument);
        }
        let end = start
            .saturating_add(usize::try_from(size).unwrap_or(usize::MAX))
            .min(b.len());
        b.splice(start..end, new);
        Ok(())
    })??;
    Ok(())
}

fn get_status(
    c: &mut Caller<'_, StoreData>,
    buffer_type: u32,
    len_ptr: u32,
    flags_ptr: u32,
) -> HostResult {
    let len = with_buffer(c.data_mut(), buffer_type, |b| b.len())?;
    write_u32(c, len_ptr, u32::try_from(len).unwrap_or(u32::MAX))?;
    write_u32(c, flags_ptr, 0)
}

type C<'a> = Caller<'a, StoreData>;

pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, t: u32, start: u32, max: u32, p: u32, s: u32| {
            finish(get_bytes(&mut c, t, start, max, p, s))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, t: u32, start: u32, size: u32, p: u32, l: u32| {
            finish(set_bytes(&mut c, t, start, size, p, l))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: C<'_>, t: u32, l: u32, f: u32| finish(get_status(&mut c, t, l, f)),
    )?;
    Ok(())
}
