//! The answers Envoy gives by itself (no healthy upstream, connection failure, timeouts,
//! resets, a request that does not arrive in time, a body too large to hold), as the same JSON
//! errors as the filter's own ([`LocalReply::error`]): one table, which `egressctl` renders
//! into the connection manager's `local_reply_config` for both engines. Each entry is selected
//! by something only Envoy's own answer carries ([`ReplySelector`]): a response flag, or for the
//! answers Envoy gives without a flag the exact response code details its connection manager
//! or filter manager sets. The filter's and the route table's own JSON answers carry neither
//! (no flag; details `direct_response` or the filter's), so they are never touched. Messages
//! are fixed text: never a secret, a host name or an address.
//!
//! Facts behind the rows (Envoy 1.40, HTTP/1.1, `%RESPONSE_FLAGS%` / `%RESPONSE_CODE_DETAILS%`):
//! `request_timeout` fires 408 `-` / `request_overall_timeout`, also before the headers are
//! complete; `request_headers_timeout` 408 `-` / `request_header_timeout`;
//! `stream_idle_timeout` 408 `SI` / `stream_idle_timeout`; the downstream
//! `max_stream_duration` (`http.write_timeout`) 408 `-` / `max_duration_timeout` (no `DT`); the
//! buffer filter or the filter manager over a buffer limit 413 `-` /
//! `request_payload_too_large`. Each answers only while no response has started, and closes
//! the connection.
//!
//! Not here: HTTP/1 requests Envoy's codec cannot parse (400 `http1.codec_error`, 431
//! `http1.headers_too_large`, 426 `low_version`, all with the `DPE` flag): the codec answers
//! them itself, so the connection manager's mapping never applies (Envoy 1.40: plain text even
//! with a `DPE` mapper and `http_protocol_options.override_stream_error_on_invalid_http_message`).

use super::LocalReply;

/// What tells one of Envoy's own answers apart from every other local reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplySelector {
    /// Envoy's response flags (short names): any of them.
    Flags(&'static [&'static str]),
    /// Envoy's response code details (`%RESPONSE_CODE_DETAILS%`), exactly: any of them. For
    /// the answers Envoy gives without a response flag.
    Details(&'static [&'static str]),
}

impl ReplySelector {
    /// The flags or details it lists.
    pub fn values(&self) -> &'static [&'static str] {
        match self {
            ReplySelector::Flags(v) | ReplySelector::Details(v) => v,
        }
    }
}

/// One of Envoy's own answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyReply {
    pub selector: ReplySelector,
    /// The status the answer is given (Envoy's own for this selector).
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
        selector: ReplySelector::Flags(&["UT"]),
        answer_status: 504,
        code: "upstream_timeout",
        message: "the target did not answer in time",
    },
    ProxyReply {
        selector: ReplySelector::Flags(&["UH"]),
        answer_status: 503,
        code: "no_healthy_upstream",
        message: "no healthy upstream for this target",
    },
    ProxyReply {
        selector: ReplySelector::Flags(&["UF"]),
        answer_status: 503,
        code: "upstream_connect_failed",
        message: "the proxy could not connect to the target",
    },
    ProxyReply {
        selector: ReplySelector::Flags(&["UO"]),
        answer_status: 503,
        code: "upstream_overflow",
        message: "too many requests to this target at once",
    },
    ProxyReply {
        selector: ReplySelector::Flags(&["UC", "UR", "URX"]),
        answer_status: 503,
        code: "upstream_reset",
        message: "the target closed the connection before answering",
    },
    ProxyReply {
        selector: ReplySelector::Flags(&["SI"]),
        answer_status: 408,
        code: "stream_idle_timeout",
        message: "nothing was sent or received on this request for too long",
    },
    ProxyReply {
        selector: ReplySelector::Details(&["request_overall_timeout", "request_header_timeout"]),
        answer_status: 408,
        code: "request_timeout",
        message: "the request did not arrive in time",
    },
    ProxyReply {
        selector: ReplySelector::Details(&["max_duration_timeout"]),
        answer_status: 408,
        code: "request_duration_exceeded",
        message: "the request and its answer took longer than the proxy allows",
    },
    ProxyReply {
        selector: ReplySelector::Details(&["request_payload_too_large"]),
        answer_status: 413,
        code: "body_too_large",
        message: "the request body is larger than the proxy can hold",
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
            assert_eq!(reply.status, r.answer_status);
            assert_eq!(
                reply.headers,
                vec![("content-type", "application/json".to_string())]
            );
            assert!(!r.selector.values().is_empty());
            assert!(
                !r.message.contains('%'),
                "{}: Envoy would format it",
                r.code
            );
            for v in r.selector.values() {
                assert!(!seen.contains(v), "{v} twice");
                seen.push(*v);
            }
        }
    }

    /// Details are matched by an expression the renderer writes with them quoted: plain
    /// identifiers only, so no value needs escaping.
    #[test]
    fn details_selectors_are_plain_identifiers() {
        for r in PROXY_REPLIES {
            if let ReplySelector::Details(d) = r.selector {
                for v in d {
                    assert!(
                        !v.is_empty()
                            && v.bytes()
                                .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'),
                        "{v}"
                    );
                }
            }
        }
    }

    /// Envoy's own 408 (request, headers, idle stream, stream duration) and 413 (body over a
    /// buffer limit) answers are mapped; the idle stream by its flag.
    #[test]
    fn envoys_own_408_and_413_answers_are_mapped() {
        for (status, code) in [
            (408, "request_timeout"),
            (408, "stream_idle_timeout"),
            (408, "request_duration_exceeded"),
            (413, "body_too_large"),
        ] {
            assert!(
                PROXY_REPLIES
                    .iter()
                    .any(|r| r.answer_status == status && r.code == code),
                "{status} {code}"
            );
        }
        let flags = |want: &str| {
            PROXY_REPLIES
                .iter()
                .any(|r| matches!(r.selector, ReplySelector::Flags(f) if f.contains(&want)))
        };
        assert!(flags("SI") && flags("UT"));
    }
}
