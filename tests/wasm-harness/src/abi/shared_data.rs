//! Shared data (`proxy_get_shared_data` / `proxy_set_shared_data`, with CAS)
//! and shared queues. Both live in the host-wide [`crate::shared::Shared`].

use crate::memory::{copy_out, finish, read, read_string, write_u32, HostResult};
use crate::state::StoreData;
use crate::types::Status;
use wasmtime::{Caller, Linker};

fn get(
    c: &mut Caller<'_, StoreData>,
    key: (u32, u32),
    ptr_ptr: u32,
    size_ptr: u32,
    cas_ptr: u32,
) -> HostResult {
    let key = read_string(c, key.0, key.1)?;
    let (value, cas) = c
        .data()
        .shared
        .lock()
        .data
        .get(&key)
        .cloned()
        .ok_or(Status::NotFound)?;
    write_u32(c, cas_ptr, cas)?;
    copy_out(c, &value, ptr_ptr, size_ptr)
}

fn set(c: &mut Caller<'_, StoreData>, key: (u32, u32), value: (u32, u32), cas: u32) -> HostResult {
    let key = read_string(c, key.0, key.1)?;
    let value = read(c, value.0, value.1)?;
    match c.data().shared.lock().set_shared_data(&key, value, cas) {
        Status::Ok => Ok(()),
        status => Err(status.into()),
    }
}

fn register_queue(c: &mut Caller<'_, StoreData>, name: (u32, u32), id_ptr: u32) -> HostResult {
    let name = read_string(c, name.0, name.1)?;
    let worker = c.data().worker_id;
    let id = c.data().shared.lock().register_queue(&name, Some(worker));
    write_u32(c, id_ptr, id)
}

fn resolve_queue(
    c: &mut Caller<'_, StoreData>,
    vm_id: (u32, u32),
    name: (u32, u32),
    id_ptr: u32,
) -> HostResult {
    // Single VM: the vm_id is read (to validate the pointer) but not matched.
    read(c, vm_id.0, vm_id.1)?;
    let name = read_string(c, name.0, name.1)?;
    let id = c
        .data()
        .shared
        .lock()
        .queue_id(&name)
        .ok_or(Status::NotFound)?;
    write_u32(c, id_ptr, id)
}

fn enqueue(c: &mut Caller<'_, StoreData>, id: u32, value: (u32, u32)) -> HostResult {
    let value = read(c, value.0, value.1)?;
    let shared = c.data().shared.clone();
    let mut state = shared.lock();
    let queue = state.queue_mut(id).ok_or(Status::NotFound)?;
    queue.items.push_back(value);
    queue.pending_notifications += 1;
    Ok(())
}

fn dequeue(c: &mut Caller<'_, StoreData>, id: u32, ptr_ptr: u32, size_ptr: u32) -> HostResult {
    let item = {
        let shared = c.data().shared.clone();
        let mut state = shared.lock();
        let queue = state.queue_mut(id).ok_or(Status::NotFound)?;
        queue.items.pop_front().ok_or(Status::Empty)?
    };
    copy_out(c, &item, ptr_ptr, size_ptr)
}

type C<'a> = Caller<'a, StoreData>;

pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: u32, kl: u32, p: u32, s: u32, cas: u32| {
            finish(get(&mut c, (kp, kl), p, s, cas))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: u32, kl: u32, vp: u32, vl: u32, cas: u32| {
            finish(set(&mut c, (kp, kl), (vp, vl), cas))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: u32, nl: u32, id: u32| finish(register_queue(&mut c, (np, nl), id)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: u32, vl: u32, np: u32, nl: u32, id: u32| {
            finish(resolve_queue(&mut c, (vp, vl), (np, nl), id))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: u32, vp: u32, vl: u32| finish(enqueue(&mut c, id, (vp, vl))),
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: u32, p: u32, s: u32| finish(dequeue(&mut c, id, p, s)),
    )?;
    Ok(())
}
