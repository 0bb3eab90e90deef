//! The connection manager's `local_reply_config` (both engines): Envoy's own answers (no
//! healthy upstream, connection failure, timeouts, resets) turned into
//! the JSON errors of [`egress_core::engine::PROXY_REPLIES`], selected by response flags only,
//! so the filter's and the route table's own JSON answers are never touched.

use egress_core::engine::{ProxyReply, PROXY_REPLIES};
use serde_json::{json, Value};

fn mapper(r: &ProxyReply) -> Value {
    let reply = r.reply();
    let filter = json!({ "response_flag_filter": { "flags": r.flags } });
    let content_type = reply
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map_or("application/json", |(_, v)| v.as_str())
        .to_string();
    json!({
        "filter": filter,
        "status_code": reply.status,
        "body_format_override": {
            "text_format_source": { "inline_string": reply.body },
            "content_type": content_type,
        },
    })
}

/// The `local_reply_config` of the egress connection manager.
pub fn local_reply_config() -> Value {
    json!({ "mappers": PROXY_REPLIES.iter().map(mapper).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapper_is_selected_by_response_flags_and_answers_the_cores_json() {
        let config = local_reply_config();
        let mappers = config["mappers"].as_array().unwrap();
        assert_eq!(mappers.len(), PROXY_REPLIES.len());
        for (m, r) in mappers.iter().zip(PROXY_REPLIES) {
            let text = m["filter"].to_string();
            assert!(text.contains("response_flag_filter"), "{text}");
            assert_eq!(m["status_code"], r.answer_status);
            let body = m["body_format_override"]["text_format_source"]["inline_string"]
                .as_str()
                .unwrap();
            let body: Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["error"], r.code);
            assert_eq!(
                m["body_format_override"]["content_type"],
                "application/json"
            );
        }
    }
}
