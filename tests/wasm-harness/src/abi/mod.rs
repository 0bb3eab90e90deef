//! Host side of the proxy-wasm ABI 0.2.1: one module per hostcall family, and
//! stubs for every import the harness does not implement.

pub(crate) mod buffers;
pub(crate) mod callouts;
pub(crate) mod headers;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod misc;
pub(crate) mod properties;
pub(crate) mod shared_data;
pub(crate) mod stream;

use crate::state::StoreData;
use crate::types::Status;
use wasmtime::{Caller, ExternType, Linker, Module, Store, Val, ValType};

/// Adds every implemented hostcall (plus WASI preview1) to `linker`.
pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |data: &mut StoreData| &mut data.wasi)?;
    buffers::link(linker)?;
    callouts::link(linker)?;
    headers::link(linker)?;
    logging::link(linker)?;
    metrics::link(linker)?;
    misc::link(linker)?;
    properties::link(linker)?;
    shared_data::link(linker)?;
    stream::link(linker)?;
    Ok(())
}

/// For every function import of `module` that `linker` does not satisfy
/// (missing, or defined with another signature), defines a stub that records
/// the call and returns `UNIMPLEMENTED` (12) (zero for non-i32 results), so
/// loading never fails on an import the module does not actually use.
pub(crate) fn stub_missing_imports(
    linker: &mut Linker<StoreData>,
    module: &Module,
    probe: &mut Store<StoreData>,
) -> wasmtime::Result<Vec<String>> {
    linker.allow_shadowing(true);
    let mut stubbed = Vec::new();
    for import in module.imports() {
        let ExternType::Func(wanted) = import.ty() else {
            continue;
        };
        let satisfied = match linker.get(&mut *probe, import.module(), import.name()) {
            Ok(existing) => match existing.ty(&*probe) {
                ExternType::Func(have) => have.matches(&wanted),
                _ => false,
            },
            Err(_) => false,
        };
        if satisfied {
            continue;
        }
        let label = format!("{}::{}", import.module(), import.name());
        let recorded = label.clone();
        linker.func_new(
            import.module(),
            import.name(),
            wanted.clone(),
            move |mut caller: Caller<'_, StoreData>, _params: &[Val], results: &mut [Val]| {
                caller.data_mut().unimplemented_calls.push(recorded.clone());
                for (slot, ty) in results.iter_mut().zip(wanted.results()) {
                    *slot = match ty {
                        ValType::I32 => Val::I32(Status::Unimplemented.code()),
                        ValType::I64 => Val::I64(0),
                        ValType::F32 => Val::F32(0),
                        ValType::F64 => Val::F64(0),
                        other => Val::default_for_ty(&other).unwrap_or(Val::I32(0)),
                    };
                }
                Ok(())
            },
        )?;
        stubbed.push(label);
    }
    linker.allow_shadowing(false);
    Ok(stubbed)
}
