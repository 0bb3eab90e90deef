//! `egress.token_store`: where OAuth2 tokens are kept.

use super::super::error::{ConfigErrors, FieldPath};
use super::super::model::*;
use super::super::raw::*;
use crate::secret::Secret;

pub(super) fn token_store(
    raw: Option<&RawTokenStore>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> TokenStore {
    let Some(raw) = raw else {
        return TokenStore::Memory;
    };
    // The redis block is checked whatever the type, so one run reports all of its problems.
    let redis_path = path.key("redis");
    let store = raw.redis.as_ref().map(|r| redis(r, &redis_path, errs));
    match raw.kind.as_str() {
        "memory" => {
            if raw.redis.is_some() {
                errs.push(redis_path.as_str(), "only applies to type: redis");
            }
            TokenStore::Memory
        }
        "redis" => match store {
            Some(s) => TokenStore::Redis(s),
            None => {
                errs.push(redis_path.as_str(), "is required when type is redis");
                TokenStore::Memory
            }
        },
        other => {
            errs.push(
                path.key("type").as_str(),
                format!("unknown token store {other:?}; expected memory or redis"),
            );
            TokenStore::Memory
        }
    }
}

fn redis(r: &RawRedis, path: &FieldPath, errs: &mut ConfigErrors) -> RedisStore {
    let port_ok = r.address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.trim().is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !port_ok {
        errs.push(
            path.key("address").as_str(),
            "must be host:port with a port from 1 to 65535",
        );
    }
    RedisStore {
        address: r.address.clone(),
        password: r
            .password
            .clone()
            .filter(|p| !p.is_empty())
            .map(Secret::new),
        db: r.db,
        key_prefix: r
            .key_prefix
            .clone()
            .unwrap_or_else(|| "egress:tokens:".into()),
    }
}
