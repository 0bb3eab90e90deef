//! The connection manager's `local_reply_config` (both engines): Envoy's own answers (no
//! healthy upstream, connection failure, timeouts, resets, a request that does not arrive in
//! time, a body too large to hold) turned into the JSON errors of
//! [`egress_core::engine::PROXY_REPLIES`], each selected by a response flag or by Envoy's exact
//! response code details (a CEL filter on `response.code_details`), so the filter's and the
//! route table's own JSON answers are never touched.

use super::access_log::cel_filter;
use egress_core::engine::{ProxyReply, ReplySelector, PROXY_REPLIES};
use serde_json::{json, Value};

/// The access-log filter that picks the answers of `selector`.
fn filter(selector: &ReplySelector) -> Value {
    match selector {
        ReplySelector::Flags(flags) => json!({ "response_flag_filter": { "flags": flags } }),
        ReplySelector::Details(details) => {
            // The core keeps details to plain identifiers: quoting them needs no escaping.
            let quoted: Vec<String> = details.iter().map(|d| format!("'{d}'")).collect();
            cel_filter(&format!("response.code_details in [{}]", quoted.join(", ")))
        }
    }
}

fn mapper(r: &ProxyReply) -> Value {
    let reply = r.reply();
    let content_type = reply
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map_or("application/json", |(_, v)| v.as_str())
        .to_string();
    json!({
        "filter": filter(&r.selector),
        "status_code": reply.status,
        "body_format_override": {
            "text_format_source": { "inline_string": reply.body },
            "content_type": content_type,
        },
    })
}

/// The `local_reply_config` of a connection manager (egress and push listeners).
pub fn local_reply_config() -> Value {
    json!({ "mappers": PROXY_REPLIES.iter().map(mapper).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapper_is_selected_by_its_flags_or_details_and_answers_the_cores_json() {
        let config = local_reply_config();
        let mappers = config["mappers"].as_array().unwrap();
        assert_eq!(mappers.len(), PROXY_REPLIES.len());
        for (m, r) in mappers.iter().zip(PROXY_REPLIES) {
            match r.selector {
                ReplySelector::Flags(flags) => {
                    assert_eq!(m["filter"]["response_flag_filter"]["flags"], json!(flags));
                }
                ReplySelector::Details(details) => {
                    let f = &m["filter"]["extension_filter"];
                    assert_eq!(f["name"], "envoy.access_loggers.extension_filters.cel");
                    let expr = f["typed_config"]["expression"].as_str().unwrap();
                    let want: Vec<String> = details.iter().map(|d| format!("'{d}'")).collect();
                    assert_eq!(
                        expr,
                        format!("response.code_details in [{}]", want.join(", "))
                    );
                }
            }
            // Never the status alone: our own replies share Envoy's status codes.
            assert!(m["filter"].get("status_code_filter").is_none(), "{m}");
            assert_eq!(m["status_code"], r.answer_status);
            let body = m["body_format_override"]["text_format_source"]["inline_string"]
                .as_str()
                .unwrap();
            let body: Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["error"], r.code);
            assert_eq!(body["message"], r.message);
            assert_eq!(
                m["body_format_override"]["content_type"],
                "application/json"
            );
        }
    }

    #[test]
    fn request_timeouts_and_oversized_bodies_are_selected_by_envoys_details() {
        let config = local_reply_config().to_string();
        for details in [
            "'request_overall_timeout', 'request_header_timeout'",
            "'max_duration_timeout'",
            "'request_payload_too_large'",
        ] {
            assert!(
                config.contains(&format!("response.code_details in [{details}]")),
                "{config}"
            );
        }
    }
}
