//! The per-worker verified-token cache: a caller reusing its token pays a hash and a lookup,
//! not a signature check. Keyed by SHA-256 of the token (the token itself is not kept), each
//! entry valid until the token's `exp` (plus the issuer's clock skew), at most `capacity`
//! entries.

use super::JwtCaller;
use std::collections::HashMap;

/// Entries kept per worker by default.
pub const DEFAULT_CAPACITY: usize = 4096;

#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<[u8; 32], Entry>,
    hits: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    caller: JwtCaller,
    /// Last second (Unix) the entry is valid.
    until: u64,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

pub fn token_key(token: &str) -> [u8; 32] {
    hmac_sha256::Hash::hash(token.as_bytes())
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            hits: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Lookups answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// The cached caller of `key`, if still valid at `now`; an expired entry is dropped.
    pub fn get(&mut self, key: &[u8; 32], now: u64) -> Option<JwtCaller> {
        match self.entries.get(key) {
            Some(e) if now <= e.until => {
                self.hits += 1;
                Some(e.caller.clone())
            }
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps a verified caller until `until`. When full, expired entries go first; if none
    /// expired, the entry expiring soonest.
    pub fn insert(&mut self, key: [u8; 32], caller: JwtCaller, until: u64, now: u64) {
        if until < now {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| now <= e.until);
            if self.entries.len() >= self.capacity {
                if let Some(k) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.until)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(key, Entry { caller, until });
    }
}
