//! `proxy_log` (captured per worker, echoed to stderr with `HARNESS_LOG=1`)
//! and `proxy_get_log_level`.

use crate::memory::{finish, read_string, write_u32, HostResult};
use crate::state::StoreData;
use crate::types::{LogEntry, LogLevel, Status};
use wasmtime::{Caller, Linker};

fn log(c: &mut Caller<'_, StoreData>, level: u32, ptr: u32, len: u32) -> HostResult {
    let level = LogLevel::from_raw(level).ok_or(Status::BadArgument)?;
    let message = read_string(c, ptr, len)?;
    let data = c.data_mut();
    if data.shared.lock().echo_logs {
        eprintln!(
            "[wasm worker={} ctx={}] {:?}: {}",
            data.worker_id, data.effective_context, level, message
        );
    }
    data.logs.push(LogEntry { level, message });
    Ok(())
}

fn get_log_level(c: &mut Caller<'_, StoreData>, ptr: u32) -> HostResult {
    let level = c.data().shared.lock().log_level;
    write_u32(c, ptr, level as u32)
}

type C<'a> = Caller<'a, StoreData>;

pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, l: u32, p: u32, n: u32| finish(log(&mut c, l, p, n)),
    )?;
    linker.func_wrap("env", "proxy_get_log_level", |mut c: C<'_>, p: u32| {
        finish(get_log_level(&mut c, p))
    })?;
    Ok(())
}
