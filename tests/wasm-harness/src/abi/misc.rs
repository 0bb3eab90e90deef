//! Clock, ticks, context plumbing, `proxy_done`, `proxy_get_status` and
//! foreign functions.

use crate::memory::{copy_out, finish, read, read_string, write_u32, write_u64, HostResult};
use crate::state::StoreData;
use crate::types::{ForeignCall, Status};
use wasmtime::{Caller, Linker};

fn current_time(c: &mut Caller<'_, StoreData>, ptr: u32) -> HostResult {
    let now = c.data().shared.lock().now_nanos;
    write_u64(c, ptr, now)
}

fn set_tick_period(c: &mut Caller<'_, StoreData>, period_ms: u32) -> HostResult {
    let now = c.data().shared.lock().now_nanos;
    let data = c.data_mut();
    data.tick_period_ms = period_ms;
    data.next_tick_nanos = now.saturating_add(u64::from(period_ms) * 1_000_000);
    Ok(())
}

fn set_effective_context(c: &mut Caller<'_, StoreData>, context_id: u32) -> HostResult {
    let data = c.data_mut();
    if context_id != data.root_id && !data.streams.contains_key(&context_id) {
        return Err(Status::BadArgument.into());
    }
    data.effective_context = context_id;
    Ok(())
}

/// No gRPC support: the last status is always `0` with no message.
fn get_status(
    c: &mut Caller<'_, StoreData>,
    code_ptr: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    write_u32(c, code_ptr, 0)?;
    copy_out(c, &[], ptr_ptr, size_ptr)
}

fn call_foreign(
    c: &mut Caller<'_, StoreData>,
    name: (u32, u32),
    args: (u32, u32),
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let name = read_string(c, name.0, name.1)?;
    let arguments = read(c, args.0, args.1)?;
    let func = c.data().shared.lock().foreign.get(&name).cloned();
    let result = match func {
        Some(func) => func(&arguments),
        None => Err(Status::NotFound),
    };
    c.data_mut().foreign_calls.push(ForeignCall {
        name,
        arguments,
        status: result.as_ref().err().copied().unwrap_or(Status::Ok),
    });
    copy_out(c, &result?, ptr_ptr, size_ptr)
}

type C<'a> = Caller<'a, StoreData>;

pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, p: u32| finish(current_time(&mut c, p)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: u32| finish(set_tick_period(&mut c, ms)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: u32| finish(set_effective_context(&mut c, id)),
    )?;
    linker.func_wrap("env", "proxy_done", |mut c: C<'_>| {
        c.data_mut().done_calls += 1;
        finish(Ok(()))
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C<'_>, code: u32, p: u32, s: u32| finish(get_status(&mut c, code, p, s)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C<'_>, np: u32, nl: u32, ap: u32, al: u32, p: u32, s: u32| {
            finish(call_foreign(&mut c, (np, nl), (ap, al), p, s))
        },
    )?;
    Ok(())
}
