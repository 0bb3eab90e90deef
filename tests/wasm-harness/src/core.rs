//! The instance behind a [`crate::Worker`]: store, instance, and the plumbing
//! to invoke module exports the way Envoy does.

use crate::error::{Error, Result};
use crate::state::StoreData;
use crate::types::CalloutResponse;
use std::cell::RefCell;
use std::rc::Rc;
use wasmtime::{Instance, Store, WasmParams, WasmResults};

pub(crate) type CoreRef = Rc<RefCell<WorkerCore>>;

pub(crate) struct WorkerCore {
    pub(crate) store: Store<StoreData>,
    pub(crate) instance: Instance,
    pub(crate) failed: bool,
    pub(crate) started: bool,
}

impl WorkerCore {
    /// Calls export `name` with `effective_context` set to `context_id`.
    /// A missing export yields `Ok(None)` (Envoy skips absent callbacks); a
    /// trap marks the worker failed and yields [`Error::Trap`].
    pub(crate) fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
        context_id: u32,
        params: P,
    ) -> Result<Option<R>> {
        if self.failed {
            return Err(Error::VmFailed);
        }
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let typed = func
            .typed::<P, R>(&self.store)
            .map_err(|_| Error::BadExport(name.to_string()))?;
        self.store.data_mut().effective_context = context_id;
        match typed.call(&mut self.store, params) {
            Ok(result) => Ok(Some(result)),
            Err(err) => {
                self.failed = true;
                Err(Error::Trap {
                    callback: name.to_string(),
                    message: format!("{err:?}"),
                })
            }
        }
    }

    /// Runs the module's initializer: `_initialize` (reactor, what the Rust
    /// SDK produces) or else `_start`; `proc_exit(0)` from `_start` is fine.
    pub(crate) fn initialize(&mut self) -> Result<()> {
        for name in ["_initialize", "_start"] {
            let Some(func) = self.instance.get_func(&mut self.store, name) else {
                continue;
            };
            let typed = func
                .typed::<(), ()>(&self.store)
                .map_err(|_| Error::BadExport(name.to_string()))?;
            return match typed.call(&mut self.store, ()) {
                Ok(()) => Ok(()),
                Err(err)
                    if err
                        .downcast_ref::<wasmtime_wasi::I32Exit>()
                        .is_some_and(|exit| exit.0 == 0) =>
                {
                    Ok(())
                }
                Err(err) => {
                    self.failed = true;
                    Err(Error::Trap {
                        callback: name.to_string(),
                        message: format!("{err:?}"),
                    })
                }
            };
        }
        Ok(())
    }

    pub(crate) fn root_id(&self) -> u32 {
        self.store.data().root_id
    }

    /// Delivers `proxy_on_http_call_response` for `token` with `response`
    /// readable through map types 6/7 and buffer type 4 during the call.
    pub(crate) fn deliver_callout(&mut self, token: u32, response: CalloutResponse) -> Result<()> {
        if self.store.data_mut().callouts.remove(&token).is_none() {
            return Err(Error::Usage(format!(
                "no pending callout with token {token}"
            )));
        }
        let root = self.root_id();
        let args = (
            root,
            token,
            len_u32(response.headers.len()),
            len_u32(response.body.len()),
            len_u32(response.trailers.len()),
        );
        self.store.data_mut().callout_response = Some(response);
        let result = self.call::<_, ()>("proxy_on_http_call_response", root, args);
        self.store.data_mut().callout_response = None;
        result.map(|_| ())
    }
}

pub(crate) fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}
