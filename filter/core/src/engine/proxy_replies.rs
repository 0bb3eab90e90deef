//! The answers Envoy gives by itself (no healthy upstream, connection failure, timeouts,
//! resets), as the same JSON errors as the filter's own
//! ([`LocalReply::error`]): one table, which `egressctl` renders into the connection
//! manager's `local_reply_config` for both engines. Each entry is selected by Envoy's response
//! flags only, so the filter's and the route table's own JSON answers (no flag) are never
//! touched. Messages are fixed text: never a secret, a host name or an address.
//!
//! Not here: HTTP/1 requests Envoy's codec cannot parse (400, 431 for oversized headers): the
//! codec answers them before a stream exists, so the connection manager's mapping never sees
//! them (seen with Envoy 1.40: plain text whatever `local_reply_config` says).

use super::LocalReply;

/// One of Envoy's own answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyReply {
    /// Envoy's response flags (short names) that select it; any of them.
    pub flags: &'static [&'static str],
    /// The status the answer is given (Envoy's own for these flags).
    pub answer_status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

impl ProxyReply {
    /// The JSON answer (body and content type), as the filter's errors are built.
    pub fn reply(&self) -> LocalReply {
        LocalReply::error(self.answer_status, self.code, self.message)
    }
}

/// Envoy's own answers, in the order Envoy is asked to match them (first wins).
pub const PROXY_REPLIES: &[ProxyReply] = &[
    ProxyReply {
        flags: &["UT"],
        answer_status: 504,
        code: "upstream_timeout",
        message: "the target did not answer in time",
    },
    ProxyReply {
        flags: &["UH"],
        answer_status: 503,
        code: "no_healthy_upstream",
        message: "no healthy upstream for this target",
    },
    ProxyReply {
        flags: &["UF"],
        answer_status: 503,
        code: "upstream_connect_failed",
        message: "the proxy could not connect to the target",
    },
    ProxyReply {
        flags: &["UO"],
        answer_status: 503,
        code: "upstream_overflow",
        message: "too many requests to this target at once",
    },
    ProxyReply {
        flags: &["UC", "UR", "URX"],
        answer_status: 503,
        code: "upstream_reset",
        message: "the target closed the connection before answering",
    },
];

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn every_proxy_reply_is_our_json_error_with_a_distinct_selector() {
        let mut seen = Vec::new();
        for r in PROXY_REPLIES {
            let reply = r.reply();
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["error"], r.code);
            assert_eq!(body["message"], r.message);
            assert_eq!(
                reply.headers,
                vec![("content-type", "application/json".to_string())]
            );
            assert!(!r.flags.is_empty());
            assert!(
                !r.message.contains('%'),
                "{}: Envoy would format it",
                r.code
            );
            for f in r.flags {
                assert!(!seen.contains(f), "{f} twice");
                seen.push(*f);
            }
        }
    }
}
