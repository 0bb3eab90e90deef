//! What the token push tests share: the token server and echo target, proxies of target
//! `crm` compiled by egressctl, and client load.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use egress_e2e::*;

pub const CLIENT_ID: &str = "crm-push-client";
/// Unique, so a leak is easy to find.
pub const CLIENT_SECRET: &str = "SECRET-push-oauth-client-secret-83b2";

/// The real OAuth2 server (TLS, test CA) and a TLS echo stand-in as `crm`.
pub struct Upstreams {
    pub server: OAuthServer,
    pub crm: Standin,
    /// The engine the proxies are compiled with.
    pub engine: Engine,
}

impl Upstreams {
    /// Proxies compiled with the wasm engine.
    pub fn start(ttl: u64) -> Result<Upstreams> {
        Self::start_for(ttl, Engine::Wasm)
    }

    /// Proxies compiled with `engine`.
    pub fn start_for(ttl: u64, engine: Engine) -> Result<Upstreams> {
        let pki = Pki::generate()?;
        let server = OAuthServer::start(
            OAuthOpts::new(ttl, vec![OAuthClient::basic(CLIENT_ID, CLIENT_SECRET)])
                .tls(pki.server()),
        )?;
        let crm = Standin::start(StandinOpts::new("crm").tls(pki.server()))?;
        Ok(Upstreams {
            server,
            crm,
            engine,
        })
    }

    /// A proxy of `crm` in its own state directory; the redis store when given (push-only),
    /// else memory; `push_key` copied in first, so one key signs pushes to several proxies.
    pub fn proxy(&self, redis: Option<&Redis>, push_key: Option<&Path>) -> Result<OAuth2Proxy> {
        let store = match redis {
            Some(r) => TokenStore::Redis(r.addr()),
            None => TokenStore::Memory,
        };
        self.proxy_with_store(store, push_key)
    }

    pub fn proxy_with_store(
        &self,
        store: TokenStore,
        push_key: Option<&Path>,
    ) -> Result<OAuth2Proxy> {
        let mut opts = self.proxy_opts(store);
        if let Some(key) = push_key {
            opts = opts.push_key(key);
        }
        self.proxy_with_opts(&opts)
    }

    /// What [`Upstreams::proxy_with_store`] starts a proxy with (token timeout 3s), to change.
    pub fn proxy_opts(&self, store: TokenStore) -> OAuth2ProxyOpts {
        let mut opts = OAuth2ProxyOpts::new(&self.server.token_url(), CLIENT_ID, CLIENT_SECRET)
            .token_timeout("3s")
            .log_level("info")
            .store(store)
            .engine(self.engine);
        opts.wasm_debug = false;
        opts
    }

    /// A proxy of `crm` started with `opts`.
    pub fn proxy_with_opts(&self, opts: &OAuth2ProxyOpts) -> Result<OAuth2Proxy> {
        OAuth2Proxy::start_with(opts, self.crm.port())
    }
}

/// Client threads hammering every proxy until `secs` have passed; (ok requests, failures,
/// tokens seen).
pub fn load(
    proxies: &[Arc<OAuth2Proxy>],
    threads: usize,
    secs: u64,
) -> (u64, Vec<String>, BTreeSet<String>) {
    let end = Instant::now() + Duration::from_secs(secs);
    let tokens: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let p = proxies[i % proxies.len()].clone();
            let tokens = tokens.clone();
            thread::spawn(move || {
                let (mut ok, mut bad) = (0u64, Vec::new());
                while Instant::now() < end {
                    match p.get(&format!("{CRM}/load/{i}")).and_then(|r| bearer(&r)) {
                        Ok(t) => {
                            ok += 1;
                            tokens.lock().unwrap().insert(t);
                        }
                        Err(e) => bad.push(format!("{e:#}")),
                    }
                }
                (ok, bad)
            })
        })
        .collect();
    let (mut ok, mut bad) = (0, Vec::new());
    for h in handles {
        let (o, b) = h.join().unwrap();
        ok += o;
        bad.extend(b);
    }
    let seen = tokens.lock().unwrap().clone();
    (ok, bad, seen)
}
