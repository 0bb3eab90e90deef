//! The SigV4 signing key (four chained HMACs of the secret, the date, the region and the
//! service), kept between requests: it only changes with the day, the keys, the region or the
//! service, so a worker derives it once a day per target instead of on every request.

use super::AwsKeys;
use crate::secret::Secret;

/// Signing keys kept per worker at most (one per target and day is all a config needs).
pub const MAX_SIGNING_KEYS: usize = 32;

/// Derived signing keys, host-free. An entry is used only when the date, the region, the
/// service, the access key id and the secret all match; a new day or a rotated secret derives
/// a new key, which replaces the entry of the same access key id, region and service.
#[derive(Default)]
pub struct SigningKeys {
    entries: Vec<Entry>,
}

struct Entry {
    date: String,
    region: String,
    service: String,
    access_key_id: String,
    secret: Secret,
    key: [u8; 32],
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are credentials: only how many are kept.
        f.debug_struct("SigningKeys")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl SigningKeys {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The signing key of `keys` for `date` (`YYYYMMDD`), `region` and `service`.
    pub fn get(&mut self, keys: &AwsKeys, date: &str, region: &str, service: &str) -> [u8; 32] {
        let same_scope = |e: &Entry| {
            e.region == region && e.service == service && e.access_key_id == keys.access_key_id
        };
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| same_scope(e) && e.date == date && e.secret == keys.secret_access_key)
        {
            return e.key;
        }
        let key = derive(keys.secret_access_key.expose(), date, region, service);
        // Another day (or other keys) for the same scope replaces the old entry.
        self.entries.retain(|e| !same_scope(e));
        if self.entries.len() >= MAX_SIGNING_KEYS {
            self.entries.remove(0);
        }
        self.entries.push(Entry {
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            access_key_id: keys.access_key_id.clone(),
            secret: keys.secret_access_key.clone(),
            key,
        });
        key
    }
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn derive(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_secret = format!("AWS4{secret}");
    let k_date = super::hmac(k_secret.as_bytes(), date.as_bytes());
    let k_region = super::hmac(&k_date, region.as_bytes());
    let k_service = super::hmac(&k_region, service.as_bytes());
    super::hmac(&k_service, b"aws4_request")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(id: &str, secret: &str) -> AwsKeys {
        AwsKeys {
            access_key_id: id.into(),
            secret_access_key: Secret::new(secret),
            session_token: None,
        }
    }

    #[test]
    fn a_kept_key_is_the_derived_key_and_is_reused_the_same_day() {
        let mut cache = SigningKeys::new();
        let k = keys("AKID", "s1");
        let first = cache.get(&k, "20261130", "us-east-1", "s3");
        assert_eq!(first, derive("s1", "20261130", "us-east-1", "s3"));
        assert_eq!(cache.get(&k, "20261130", "us-east-1", "s3"), first);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_new_day_or_rotated_keys_derive_a_new_key_and_replace_the_old_one() {
        let mut cache = SigningKeys::new();
        let k = keys("AKID", "s1");
        let day1 = cache.get(&k, "20261130", "us-east-1", "s3");
        let day2 = cache.get(&k, "20261201", "us-east-1", "s3");
        assert_ne!(day1, day2);
        assert_eq!(day2, derive("s1", "20261201", "us-east-1", "s3"));
        assert_eq!(cache.len(), 1);
        // Same access key id, new secret (a rotated secret): never the old key.
        let rotated = cache.get(&keys("AKID", "s2"), "20261201", "us-east-1", "s3");
        assert_eq!(rotated, derive("s2", "20261201", "us-east-1", "s3"));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn other_regions_and_services_are_kept_apart_and_the_cache_is_bounded() {
        let mut cache = SigningKeys::new();
        let k = keys("AKID", "s1");
        let a = cache.get(&k, "20261130", "us-east-1", "s3");
        let b = cache.get(&k, "20261130", "eu-west-1", "s3");
        let c = cache.get(&k, "20261130", "us-east-1", "sts");
        assert!(a != b && a != c && b != c);
        assert_eq!(cache.len(), 3);
        for i in 0..(MAX_SIGNING_KEYS * 2) {
            let region = format!("r{i}");
            assert_eq!(
                cache.get(&k, "20261130", &region, "s3"),
                derive("s1", "20261130", &region, "s3")
            );
        }
        assert_eq!(cache.len(), MAX_SIGNING_KEYS);
    }

    #[test]
    fn debug_shows_no_key() {
        let mut cache = SigningKeys::new();
        cache.get(&keys("AKID", "s1"), "20261130", "us-east-1", "s3");
        let shown = format!("{cache:?}");
        assert!(
            !shown.contains("AKID") && !shown.contains("s1\""),
            "{shown}"
        );
    }
}
