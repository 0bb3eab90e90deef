//! `proxy_get_property` / `proxy_set_property`.
//!
//! Paths arrive as segments joined by `\0` (the SDK's encoding). Lookup order
//! for `get`: what the module itself set in the effective context, then what
//! the test set on that stream, then host-wide properties.

use crate::memory::{copy_out, finish, read, HostResult};
use crate::state::StoreData;
use crate::types::Status;
use wasmtime::{Caller, Linker};

/// Splits an SDK-encoded property path into its segments.
pub(crate) fn decode_path(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn lookup(data: &mut StoreData, path: &[String]) -> Option<Vec<u8>> {
    let root = data.root_id;
    let ctx = data.effective_context;
    if ctx == root {
        if let Some(v) = data.root_properties.get(path) {
            return Some(v.clone());
        }
    } else if let Some(stream) = data.streams.get(&ctx) {
        if let Some(v) = stream
            .filter_properties
            .get(path)
            .or_else(|| stream.host_properties.get(path))
        {
            return Some(v.clone());
        }
    }
    data.shared.lock().properties.get(path).cloned()
}

fn get(c: &mut Caller<'_, StoreData>, path: (u32, u32), ptr_ptr: u32, size_ptr: u32) -> HostResult {
    let path = decode_path(&read(c, path.0, path.1)?);
    let value = lookup(c.data_mut(), &path).ok_or(Status::NotFound)?;
    copy_out(c, &value, ptr_ptr, size_ptr)
}

fn set(c: &mut Caller<'_, StoreData>, path: (u32, u32), value: (u32, u32)) -> HostResult {
    let path = decode_path(&read(c, path.0, path.1)?);
    let value = read(c, value.0, value.1)?;
    let data = c.data_mut();
    if data.effective_context == data.root_id {
        data.root_properties.insert(path, value);
    } else {
        let stream = data.current_stream().ok_or(Status::NotFound)?;
        stream.filter_properties.insert(path, value);
    }
    Ok(())
}

type C<'a> = Caller<'a, StoreData>;

pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, pp: u32, pl: u32, p: u32, s: u32| finish(get(&mut c, (pp, pl), p, s)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, pp: u32, pl: u32, vp: u32, vl: u32| finish(set(&mut c, (pp, pl), (vp, vl))),
    )?;
    Ok(())
}
