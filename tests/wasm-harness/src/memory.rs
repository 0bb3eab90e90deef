//! Guest-memory access for hostcalls: bounds-checked reads and writes, and
//! returning host-owned bytes to the module through its allocator.

use crate::state::StoreData;
use crate::types::Status;
use wasmtime::Caller;

/// Why a hostcall could not complete: either a status for the module, or a
/// real failure (e.g. the module's allocator trapped) that aborts the call.
pub(crate) enum HostErr {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for HostErr {
    fn from(status: Status) -> HostErr {
        HostErr::Status(status)
    }
}

pub(crate) type HostResult<T = ()> = Result<T, HostErr>;

/// Converts the internal result into what a hostcall returns to wasmtime.
pub(crate) fn finish(result: HostResult) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(Status::Ok.code()),
        Err(HostErr::Status(status)) => Ok(status.code()),
        Err(HostErr::Trap(err)) => Err(err),
    }
}

fn memory(caller: &mut Caller<'_, StoreData>) -> HostResult<wasmtime::Memory> {
    if let Some(memory) = caller.data().memory {
        return Ok(memory);
    }
    let memory = caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or(Status::InvalidMemoryAccess)?;
    caller.data_mut().memory = Some(memory);
    Ok(memory)
}

/// Reads `len` bytes at `ptr`; `InvalidMemoryAccess` when out of bounds.
pub(crate) fn read(caller: &mut Caller<'_, StoreData>, ptr: u32, len: u32) -> HostResult<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let memory = memory(caller)?;
    let start = usize::try_from(ptr).map_err(|_| Status::InvalidMemoryAccess)?;
    let len = usize::try_from(len).map_err(|_| Status::InvalidMemoryAccess)?;
    let end = start.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
    memory
        .data(&*caller)
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(HostErr::Status(Status::InvalidMemoryAccess))
}

/// Reads a string (lossy UTF-8).
pub(crate) fn read_string(
    caller: &mut Caller<'_, StoreData>,
    ptr: u32,
    len: u32,
) -> HostResult<String> {
    let bytes = read(caller, ptr, len)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes raw bytes at `ptr`; `InvalidMemoryAccess` when out of bounds.
pub(crate) fn write(caller: &mut Caller<'_, StoreData>, ptr: u32, bytes: &[u8]) -> HostResult {
    let memory = memory(caller)?;
    let start = usize::try_from(ptr).map_err(|_| Status::InvalidMemoryAccess)?;
    memory
        .write(&mut *caller, start, bytes)
        .map_err(|_| HostErr::Status(Status::InvalidMemoryAccess))
}

/// Writes a little-endian u32 out-parameter.
pub(crate) fn write_u32(caller: &mut Caller<'_, StoreData>, ptr: u32, value: u32) -> HostResult {
    write(caller, ptr, &value.to_le_bytes())
}

/// Writes a little-endian u64 out-parameter.
pub(crate) fn write_u64(caller: &mut Caller<'_, StoreData>, ptr: u32, value: u64) -> HostResult {
    write(caller, ptr, &value.to_le_bytes())
}

/// Allocates `len` bytes in the guest through `proxy_on_memory_allocate`
/// (or `malloc`).
fn allocate(caller: &mut Caller<'_, StoreData>, len: u32) -> HostResult<u32> {
    let alloc = match caller.data().allocator.clone() {
        Some(alloc) => alloc,
        None => {
            let func = caller
                .get_export("proxy_on_memory_allocate")
                .or_else(|| caller.get_export("malloc"))
                .and_then(|e| e.into_func())
                .ok_or(Status::InternalFailure)?;
            let typed = func
                .typed::<u32, u32>(&*caller)
                .map_err(|_| HostErr::Status(Status::InternalFailure))?;
            caller.data_mut().allocator = Some(typed.clone());
            typed
        }
    };
    let ptr = alloc.call(&mut *caller, len).map_err(HostErr::Trap)?;
    if ptr == 0 {
        return Err(Status::InternalFailure.into());
    }
    Ok(ptr)
}

/// Hands `bytes` to the module like proxy-wasm-cpp-host's `copyToPointerSize`:
/// allocate in the guest, copy, then write pointer and size into the
/// out-params. Empty data is returned as a null pointer and size 0.
pub(crate) fn copy_out(
    caller: &mut Caller<'_, StoreData>,
    bytes: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let len = u32::try_from(bytes.len()).map_err(|_| Status::InternalFailure)?;
    // Check the out-params before allocating so a bad pointer leaks nothing.
    write_u32(caller, ptr_ptr, 0)?;
    write_u32(caller, size_ptr, 0)?;
    if len == 0 {
        return Ok(());
    }
    let ptr = allocate(caller, len)?;
    write(caller, ptr, bytes)?;
    write_u32(caller, ptr_ptr, ptr)?;
    write_u32(caller, size_ptr, len)
}
