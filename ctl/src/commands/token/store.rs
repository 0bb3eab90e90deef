//! `token_store: redis`: one token per target shared by every refresher (key
//! `<key_prefix><target>`, value the `TokenRecord` JSON, expiring with the token). A refresher
//! that needs a new token takes `<key_prefix><target>:lock` (SET NX PX), re-checks the stored
//! token, fetches only if still needed, stores it and releases the lock if it is still its own.

use super::fetch::{FetchFailure, Fetcher};
use crate::proxy::{now_ms, random_id};
use egress_core::config::RedisStore;
use egress_core::tokens::schedule::{need, Need, LEASE_MARGIN_MS};
use egress_core::tokens::TokenRecord;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use std::time::Duration;

const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/// How long a stopping refresher waits for redis to release its lock ([`Redis::release_on_stop`]).
const RELEASE_ON_STOP: Duration = Duration::from_secs(2);

pub struct Redis {
    conn: MultiplexedConnection,
    prefix: String,
    /// This refresher's lock owner id.
    id: String,
}

/// Where a token came from, for the report line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This process fetched it.
    Fetched,
    /// Another refresher did; read from redis.
    Shared,
}

impl Redis {
    pub async fn connect(cfg: &RedisStore) -> anyhow::Result<Self> {
        let (host, port) = split_addr(&cfg.address)?;
        let mut settings = RedisConnectionInfo::default().set_db(i64::from(cfg.db));
        if let Some(p) = cfg.password.as_ref().filter(|p| !p.is_empty()) {
            settings = settings.set_password(p.expose());
        }
        let info = ConnectionAddr::Tcp(host, port)
            .into_connection_info()?
            .set_redis_settings(settings);
        let client = redis::Client::open(info)?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| anyhow::anyhow!("redis at {}: no answer within 5s", cfg.address))?
        .map_err(|e| anyhow::anyhow!("redis at {}: {e}", cfg.address))?;
        Ok(Self {
            conn,
            prefix: cfg.key_prefix.clone(),
            id: random_id(),
        })
    }

    fn key(&self, target: &str) -> String {
        format!("{}{target}", self.prefix)
    }

    /// The stored token, if any (an unreadable value counts as none).
    pub async fn get(&self, target: &str) -> anyhow::Result<Option<TokenRecord>> {
        let mut c = self.conn.clone();
        let v: Option<Vec<u8>> = c.get(self.key(target)).await?;
        Ok(v.as_deref().and_then(TokenRecord::from_bytes))
    }

    /// Another record kind's bytes at `<key_prefix><name>` (AWS credentials: `aws/<target>`).
    pub(super) async fn get_raw(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut c = self.conn.clone();
        Ok(c.get(self.key(name)).await?)
    }

    /// Stores another record kind's bytes at `<key_prefix><name>`, expiring after `ttl_ms`.
    pub(super) async fn set_raw(
        &self,
        name: &str,
        bytes: &[u8],
        ttl_ms: u64,
    ) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.key(name))
            .arg(bytes)
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    async fn store(&self, target: &str, record: &TokenRecord) -> anyhow::Result<()> {
        let ttl = record.expires_at_ms.saturating_sub(now_ms()).max(1);
        let mut c = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.key(target))
            .arg(record.to_bytes())
            .arg("PX")
            .arg(ttl)
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    pub(super) async fn try_lock(&self, target: &str, ttl_ms: u64) -> anyhow::Result<bool> {
        let mut c = self.conn.clone();
        let r: Option<String> = redis::cmd("SET")
            .arg(format!("{}:lock", self.key(target)))
            .arg(&self.id)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut c)
            .await?;
        Ok(r.is_some())
    }

    pub(super) async fn unlock(&self, target: &str) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        let _: i64 = redis::Script::new(RELEASE)
            .key(format!("{}:lock", self.key(target)))
            .arg(&self.id)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// After a stop dropped an obtain of `name` mid-flight (the lock taken, the fetch not done):
    /// releases `name`'s lock if this refresher still holds it, through [`Redis::unlock`] (so
    /// another refresher's lock is left alone, and a lock this refresher never took is a no-op).
    /// Waits at most [`RELEASE_ON_STOP`]: a dead redis must not hold up the shutdown (the lock
    /// then expires by itself).
    pub(super) async fn release_on_stop(&self, name: &str) {
        match tokio::time::timeout(RELEASE_ON_STOP, self.unlock(name)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("egressctl: {name}: releasing the redis lock: {e}"),
            Err(_) => eprintln!(
                "egressctl: {name}: releasing the redis lock: no answer within {}s; it expires by itself",
                RELEASE_ON_STOP.as_secs()
            ),
        }
    }

    /// A token that does not need refreshing: the stored one when it is good, else one this
    /// refresher fetches under the lock, else (another refresher holds the lock) the one it
    /// stores, waiting up to the lock's lifetime.
    pub async fn obtain(&self, fetcher: &Fetcher) -> Result<(TokenRecord, Origin), ObtainError> {
        let target = &fetcher.target;
        let before = fetcher.cred.refresh_before_expiry_ms;
        let lock_ttl = fetcher.cred.token_timeout_ms + LEASE_MARGIN_MS;
        let deadline = now_ms() + lock_ttl + 1_000;
        loop {
            let stored = self.get(target).await.map_err(ObtainError::Redis)?;
            if let Some(r) = &stored {
                if need(Some(r), now_ms(), before) == Need::Nothing {
                    return Ok((r.clone(), Origin::Shared));
                }
            }
            if self
                .try_lock(target, lock_ttl)
                .await
                .map_err(ObtainError::Redis)?
            {
                let result = self.fetch_locked(fetcher).await;
                if let Err(e) = self.unlock(target).await {
                    eprintln!("egressctl: {target}: releasing the redis lock: {e}");
                }
                return result;
            }
            // Another refresher is fetching.
            if now_ms() >= deadline {
                // It took too long; use what is stored while valid.
                return match stored {
                    Some(r) if r.is_valid(now_ms()) => Ok((r, Origin::Shared)),
                    _ => Err(ObtainError::Redis(anyhow::anyhow!(
                        "another refresher holds the lock and stored no token"
                    ))),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn fetch_locked(&self, fetcher: &Fetcher) -> Result<(TokenRecord, Origin), ObtainError> {
        let target = &fetcher.target;
        // Re-check: someone may have stored a fresh token between our read and the lock.
        let stored = self.get(target).await.map_err(ObtainError::Redis)?;
        if let Some(r) = &stored {
            if need(Some(r), now_ms(), fetcher.cred.refresh_before_expiry_ms) == Need::Nothing {
                return Ok((r.clone(), Origin::Shared));
            }
        }
        let mut record = fetcher.fetch().await.map_err(ObtainError::Fetch)?;
        record.version = stored.map_or(0, |r| r.version) + 1;
        self.store(target, &record)
            .await
            .map_err(ObtainError::Redis)?;
        Ok((record, Origin::Fetched))
    }
}

#[derive(Debug)]
pub enum ObtainError {
    Fetch(FetchFailure),
    Redis(anyhow::Error),
}

impl std::fmt::Display for ObtainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObtainError::Fetch(e) => write!(f, "token fetch failed: {e}"),
            ObtainError::Redis(e) => write!(f, "redis: {e}"),
        }
    }
}

fn split_addr(addr: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("redis address {addr:?} is not host:port"))?;
    let port = port
        .parse()
        .map_err(|_| anyhow::anyhow!("redis address {addr:?}: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((
        if host.is_empty() { "127.0.0.1" } else { host }.to_string(),
        port,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_addresses() {
        assert_eq!(
            split_addr("127.0.0.1:6379").unwrap(),
            ("127.0.0.1".into(), 6379)
        );
        assert_eq!(split_addr("[::1]:7000").unwrap(), ("::1".into(), 7000));
        assert!(split_addr("redis").is_err());
    }
}
