//! Metrics: defined by name in the host-wide registry, so every worker that
//! defines `"x"` updates the same value (like Envoy's stats store).

use crate::memory::{finish, read_string, write_u32, write_u64, HostResult};
use crate::state::StoreData;
use crate::types::{MetricType, Status};
use wasmtime::{Caller, Linker};

fn define(c: &mut Caller<'_, StoreData>, kind: u32, name: (u32, u32), id_ptr: u32) -> HostResult {
    let kind = MetricType::from_raw(kind).ok_or(Status::BadArgument)?;
    let name = read_string(c, name.0, name.1)?;
    let id = c.data().shared.lock().define_metric(kind, &name);
    write_u32(c, id_ptr, id)
}

fn increment(c: &mut Caller<'_, StoreData>, id: u32, delta: i64) -> HostResult {
    let shared = c.data().shared.clone();
    let mut state = shared.lock();
    let metric = state.metric_mut(id).ok_or(Status::NotFound)?;
    if metric.kind == MetricType::Counter && delta < 0 {
        return Err(Status::BadArgument.into());
    }
    metric.value = metric
        .value
        .checked_add_signed(delta)
        .ok_or(Status::BadArgument)?;
    Ok(())
}

fn record(c: &mut Caller<'_, StoreData>, id: u32, value: u64) -> HostResult {
    let shared = c.data().shared.clone();
    let mut state = shared.lock();
    let metric = state.metric_mut(id).ok_or(Status::NotFound)?;
    metric.value = value;
    if metric.kind == MetricType::Histogram {
        metric.recorded.push(value);
    }
    Ok(())
}

fn get(c: &mut Caller<'_, StoreData>, id: u32, ptr: u32) -> HostResult {
    let value = {
        let shared = c.data().shared.clone();
        let mut state = shared.lock();
        state.metric_mut(id).ok_or(Status::NotFound)?.value
    };
    write_u64(c, ptr, value)
}

type C<'a> = Caller<'a, StoreData>;

pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, t: u32, np: u32, nl: u32, id: u32| finish(define(&mut c, t, (np, nl), id)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: C<'_>, id: u32, d: i64| finish(increment(&mut c, id, d)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: C<'_>, id: u32, v: u64| finish(record(&mut c, id, v)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: u32, p: u32| finish(get(&mut c, id, p)),
    )?;
    Ok(())
}
