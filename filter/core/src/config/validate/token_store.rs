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
    match raw.kind.as_str() {
        "memory" => {
            if raw.redis.is_some() {
                errs.push(path.key("redis").as_str(), "only applies to type: redis");
            }
            TokenStore::Memory
        }
        "redis" => match &raw.redis {
            Some(r) => {
                let rp = path.key("redis");
                if r.address.trim().is_empty() || !r.address.contains(':') {
                    errs.push(rp.key("address").as_str(), "must be host:port");
                }
                TokenStore::Redis(RedisStore {
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
                })
            }
            None => {
                errs.push(path.key("redis").as_str(), "is required when type is redis");
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
