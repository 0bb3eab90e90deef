#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use egress_core::secret::Secret;

#[test]
fn credentials_are_refreshed_ahead_of_expiry_and_never_printed() {
    let h = Held {
        access_key_id: "ASIAEXAMPLE".into(),
        secret_access_key: Secret::new("SECRETVALUE"),
        session_token: Secret::new("SESSIONTOKEN"),
        expires_at_ms: 3_600_000,
        obtained_at_ms: 0,
    };
    assert_eq!(h.refresh_at_ms(), 3_600_000 - REFRESH_BEFORE_MS);
    let short = Held {
        expires_at_ms: 60_000,
        ..h.clone()
    };
    assert_eq!(
        short.refresh_at_ms(),
        30_000,
        "at most half the lifetime ahead"
    );
    let text = format!(
        "{h:?} {:?} {}",
        h.push_body("s3"),
        obtained_line("s3", &h, Origin::Fetched)
    );
    assert!(
        !text.contains("SECRETVALUE") && !text.contains("SESSIONTOKEN"),
        "{text}"
    );
    assert!(text.contains("ASIAEXAMPLE"));
}
