//! A filter whose config was refused still answers every request, with a JSON 503: the host
//! gets an HTTP context (the SDK traps without one) and nothing is forwarded.
//!
//! Build the module first: `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proxy_wasm_harness::{Action, Host};

#[test]
fn requests_to_a_filter_whose_config_was_refused_get_a_json_503_and_the_vm_lives() {
    let wasm = proxy_wasm_harness::egress_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    let host = Host::from_file(wasm).unwrap();
    for config in [&b"{not json"[..], b"", br#"{"version": 999}"#] {
        let worker = host.worker().unwrap();
        assert!(
            !worker.start(b"", config).unwrap(),
            "config {:?} accepted",
            String::from_utf8_lossy(config)
        );
        for path in ["/egress/crm/Contact/1", "/ready", "/"] {
            let stream = worker
                .http_request(
                    [
                        (":method", "GET"),
                        (":path", path),
                        (":authority", "egress"),
                    ],
                    true,
                )
                .unwrap();
            let reply = stream
                .local_response()
                .unwrap_or_else(|| panic!("{path}: not answered"));
            assert_eq!(reply.status, 503, "{path}");
            let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(body["error"], "filter_unavailable", "{path}");
            assert_eq!(stream.last_action(), Some(Action::Pause));
            assert_eq!(stream.request_resumed(), 0);
        }
        assert!(!worker.is_failed(), "the VM trapped: {:?}", worker.logs());
    }
}
