//! The filter in the routed role (`auto` engine): Envoy routed and rewrote the request; the
//! filter learns the config route from `xds.route_name`, checks the caller and attaches the
//! OAuth2 token with the egress role's waiting, 503, refresh and stale-on-401 behaviour. It
//! never touches the path, the authority or the routing header, never sets the access log
//! property, and refuses (JSON 500) a request whose route it does not know.
//!
//! Build the module first: `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod callers_support;
mod oauth2_support;

use callers_support::{caller, hs256_token, refused, secret_env};
use egress_core::config::load::load_str;
use egress_core::plan::wire::leaf_route_name;
use egress_core::plan::FilterConfig;
use oauth2_support::*;
use proxy_wasm_harness::{Action, Host, Stream, Worker};

/// The plugin config of `yaml` in the routed role.
fn routed_json(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<u8> {
    let config = load_str(yaml, env).unwrap_or_else(|e| panic!("the config does not load: {e:?}"));
    let mut json = serde_json::to_value(FilterConfig::from_config(&config)).unwrap();
    json["role"] = "routed".into();
    serde_json::to_vec(&json).unwrap()
}

fn start_routed(host: &Host, yaml: &str) -> Worker {
    let worker = host.worker().unwrap();
    assert!(
        worker.start(b"", &routed_json(yaml, &env_lookup)).unwrap(),
        "config rejected: {:?}",
        worker.logs()
    );
    worker
}

fn routed_worker() -> (Host, Worker) {
    let host = filter_host();
    let worker = start_routed(&host, &seed());
    (host, worker)
}

/// What reaches the routed filter on the seed's CRM route: Envoy has already rewritten the
/// path and authority; the caller's own Authorization is still there.
const CRM_HEADERS: [(&str, &str); 6] = [
    (":method", "GET"),
    (
        ":path",
        "/services/data/v58.0/sobjects/Contact/1?fields=Name",
    ),
    (":scheme", "http"),
    (":authority", "mycompany.salesforce.com"),
    ("authorization", "Bearer caller-token"),
    ("x-request-id", "r-1"),
];

/// A request on route leaf `route_name` (`None`: the host has no route name).
fn send(worker: &Worker, route_name: Option<&str>, headers: &[(&str, &str)]) -> Stream {
    let stream = worker.create_stream().unwrap();
    if let Some(name) = route_name {
        stream.set_route_name(name);
    }
    stream.request_headers(headers.to_vec(), true).unwrap();
    stream
}

/// A request to the seed's salesforce route (config route 0).
fn crm_routed(worker: &Worker) -> Stream {
    send(worker, Some(&leaf_route_name(0, "get")), &CRM_HEADERS)
}

/// Everything but `authorization` arrived as sent: path, authority, no routing header.
fn assert_untouched_but_authorization(stream: &Stream, sent: &[(&str, &str)]) {
    let map = stream.request_header_map();
    let others: Vec<(String, String)> = map
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .collect();
    let expected: Vec<(String, String)> = sent
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(others, expected, "the routed role changed other headers");
    assert_eq!(stream.request_header("x-egress-target"), None);
}

fn assert_no_log_property(stream: &Stream) {
    assert_eq!(
        stream.filter_property(&["egress_log"]),
        None,
        "the routed role set the access log property (Envoy sets it on routed leaves)"
    );
}

/// The log fragment a routed-role answer sets: what the egress role logs for the same request
/// (here the path is already the target's, which no route matches: `-` for target and URL).
fn assert_refusal_log_property(stream: &Stream) {
    let logged = stream
        .filter_property(&["egress_log"])
        .map(|v| String::from_utf8(v).unwrap());
    assert_eq!(
        logged.as_deref(),
        Some(
            r#"-","method":"GET","path":"/services/data/v58.0/sobjects/Contact/1","target_url":"-"#
        ),
    );
}

#[test]
fn a_cached_token_is_attached_and_nothing_else_is_touched() {
    let (host, worker) = routed_worker();
    with_token(&host, "tok-1", 3600);
    let s = crm_routed(&worker);
    expect_sent_with(&s, "tok-1");
    assert_untouched_but_authorization(&s, &CRM_HEADERS);
    assert_no_log_property(&s);
    assert!(
        s.filter_properties().is_empty(),
        "{:?}",
        s.filter_properties()
    );

    // A static-credential route: Envoy's credential_injector attaches it; the filter changes
    // nothing at all (not even the caller's headers, which Envoy removes natively).
    let notify = [
        (":method", "POST"),
        (":path", "/send"),
        (":scheme", "http"),
        (":authority", "notify.internal.svc"),
        ("x-request-id", "r-2"),
    ];
    let s = send(&worker, Some(&leaf_route_name(1, "post")), &notify);
    assert_eq!(s.local_response(), None);
    assert_eq!(s.last_action(), Some(Action::Continue));
    assert_eq!(
        s.request_header_map(),
        notify
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    );
    assert_no_log_property(&s);
    assert_logs_clean(&host, &["tok-1"]);
}

#[test]
fn without_a_token_the_request_waits_and_is_resumed_with_it() {
    let (host, worker) = routed_worker();
    let waiting = crm_routed(&worker);
    expect_waiting(&waiting);
    // The caller's credential went already: the token added on resume is the only one.
    assert!(authorizations(&waiting).is_empty());
    let (w, fetch) = tick_until_fetch(&host, 1_000);
    assert_eq!(fetch.upstream, CLUSTER);
    grant(&w, &fetch, "tok-1", Some(3600));
    expect_resumed_with(&waiting, "tok-1");
    assert_untouched_but_authorization(&waiting, &CRM_HEADERS);
    assert_no_log_property(&waiting);
    assert_eq!(metric(&host, TOKENS_FETCHED), 1);
}

#[test]
fn a_failed_fetch_answers_the_waiting_request_503_and_later_ones_at_once() {
    let (host, worker) = routed_worker();
    let waiting = crm_routed(&worker);
    expect_waiting(&waiting);
    let (w, fetch) = tick_until_fetch(&host, 1_000);
    refuse(&w, &fetch);
    expect_unavailable(&waiting);
    let later = crm_routed(&worker);
    expect_unavailable_now(&later);
    assert_eq!(metric(&host, UNAVAILABLE), 2);
    assert_refusal_log_property(&later);
    assert_eq!(later.request_header(":path"), Some(CRM_HEADERS[1].1.into()));
}

#[test]
fn a_401_marks_the_token_stale_and_causes_one_refresh() {
    let (host, worker) = routed_worker();
    with_token(&host, "tok-1", 3600);
    tick(&host);
    no_fetch(&host);
    let rejected = crm_routed(&worker);
    expect_sent_with(&rejected, "tok-1");
    rejected
        .response_headers([(":status", "401")], false)
        .unwrap();
    assert_eq!(
        metric(&host, "egress.salesforce.token_rejected_by_target"),
        1
    );
    assert_eq!(shared_record(&host)["stale"], true);
    let (w, fetch) = tick_until_fetch(&host, 1_000);
    grant(&w, &fetch, "tok-2", Some(3600));
    expect_sent_with(&crm_routed(&worker), "tok-2");
    assert_eq!(metric(&host, TOKENS_FETCHED), 2);
}

#[test]
fn a_request_resumed_with_a_token_marks_it_stale_on_a_401() {
    let (host, worker) = routed_worker();
    let waiting = crm_routed(&worker);
    let (w, fetch) = tick_until_fetch(&host, 1_000);
    grant(&w, &fetch, "tok-1", Some(3600));
    expect_resumed_with(&waiting, "tok-1");
    waiting
        .response_headers([(":status", "401")], false)
        .unwrap();
    assert_eq!(
        metric(&host, "egress.salesforce.token_rejected_by_target"),
        1
    );
}

#[test]
fn a_missing_or_unknown_route_name_is_refused_and_logged() {
    let (host, worker) = routed_worker();
    with_token(&host, "tok-1", 3600);
    let names = [
        None,
        Some(String::new()),
        Some("egress_route".to_string()),
        Some("egress/crm/get".to_string()),
        Some(leaf_route_name(5, "get")),
        Some(leaf_route_name(usize::MAX, "get")),
    ];
    for name in &names {
        worker.take_logs();
        let s = send(&worker, name.as_deref(), &CRM_HEADERS);
        let reply = s
            .local_response()
            .unwrap_or_else(|| panic!("{name:?}: forwarded"));
        assert_eq!(reply.status, 500, "{name:?}: {}", reply.body_str());
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["error"], "route_unknown", "{name:?}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(s.last_action(), Some(Action::Pause));
        assert_eq!(s.request_resumed(), 0);
        // Nothing was attached, nothing changed.
        assert_eq!(authorizations(&s), vec!["Bearer caller-token"], "{name:?}");
        assert_untouched_but_authorization(&s, &CRM_HEADERS);
        assert_refusal_log_property(&s);
        let logged = json_logs(&worker, "routed request refused");
        assert_eq!(logged.len(), 1, "{name:?}: {:?}", worker.logs());
        // An empty value is no value to the SDK.
        let shown = name.as_deref().filter(|n| !n.is_empty());
        assert_eq!(logged[0].1["route_name"], serde_json::json!(shown));
    }
    no_fetch(&host);
    assert_logs_clean(&host, &["tok-1"]);
}

#[test]
fn an_egress_and_a_routed_instance_on_one_proxy_make_one_fetch_and_share_the_token() {
    // The `auto` engine runs `egress.full` and `egress.routed` from one module and vm_id:
    // both roots tick and may fetch; the shared-data lease lets exactly one of them.
    let host = filter_host();
    let full = start_worker(&host, &seed());
    let routed = start_routed(&host, &seed());
    let via_routed = crm_routed(&routed);
    let via_full = crm(&full);
    expect_waiting(&via_routed);
    expect_waiting(&via_full);
    let (w, fetch) = tick_until_fetch(&host, 1_000);
    tick(&host);
    the_fetch(&host);
    grant(&w, &fetch, "tok-1", Some(3600));
    for _ in 0..3 {
        tick(&host);
        no_fetch(&host);
    }
    expect_resumed_with(&via_routed, "tok-1");
    expect_resumed_with(&via_full, "tok-1");
    assert_eq!(metric(&host, TOKENS_FETCHED), 1);
    expect_sent_with(&crm_routed(&routed), "tok-1");
    expect_sent_with(&crm(&full), "tok-1");
}

// ---- callers ----------------------------------------------------------------------------------

const CALLERS: &str = r#"
http: { addr: ":8080" }
egress:
  token_store: { type: memory }
  callers:
    jwt:
      - issuer: auth-service
        audiences: [egress-proxy]
        algorithms: [HS256]
        secret: "${JWT_SECRET}"
  targets:
    crm:
      url: http://127.0.0.1:9/api
      auth: { type: api_key, header: X-Api-Key, key: crm-key-123 }
      allow: { roles: [crm] }
    sso:
      url: https://sso.example.com
      auth:
        type: oauth2_client_credentials
        token_url: https://sso.example.com/token
        client_id: c
        client_secret: s
      allow: { subjects: [user-service] }
  routes:
    - { path_prefix: /egress/crm, target: crm }
    - { path_prefix: /egress/sso, target: sso }
"#;

fn callers_worker() -> (Host, Worker) {
    let host = filter_host();
    let worker = host.worker().unwrap();
    assert!(
        worker
            .start(b"", &routed_json(CALLERS, &secret_env))
            .unwrap(),
        "{:?}",
        worker.logs()
    );
    (host, worker)
}

fn sso_headers(authorization: Option<&str>) -> Vec<(&str, &str)> {
    let mut h = vec![
        (":method", "GET"),
        (":path", "/x"),
        (":scheme", "http"),
        (":authority", "sso.example.com"),
    ];
    if let Some(a) = authorization {
        h.push(("authorization", a));
    }
    h
}

#[test]
fn callers_are_checked_with_the_same_401_and_403_before_any_token_fetch() {
    let (host, worker) = callers_worker();
    let sso = leaf_route_name(1, "get");
    let anon = send(&worker, Some(&sso), &sso_headers(None));
    refused(&anon, 401, "unauthenticated");
    let intruder = format!("Bearer {}", hs256_token(&host, "intruder", &[], 300));
    let s = send(&worker, Some(&sso), &sso_headers(Some(&intruder)));
    refused(&s, 403, "forbidden");
    assert_eq!(caller(&s).as_deref(), Some("auth-service/intruder"));
    let mut forged = hs256_token(&host, "user-service", &[], 300);
    forged.push('x');
    let forged = format!("Bearer {forged}");
    let s = send(&worker, Some(&sso), &sso_headers(Some(&forged)));
    refused(&s, 401, "invalid_token");
    // (The root fetches on its first tick whatever the requests: none has come yet.)
    assert!(
        worker.callouts().is_empty(),
        "a refused request fetched a token"
    );
    assert_eq!(host.metric("egress.sso.caller_refused_403"), Some(1));

    // Admitted: the caller's token is taken off, the caller logged, the request waits for the
    // target's token and is resumed with it.
    let user = format!("Bearer {}", hs256_token(&host, "user-service", &[], 300));
    let s = send(&worker, Some(&sso), &sso_headers(Some(&user)));
    assert_eq!(s.local_response(), None, "{:?}", worker.logs());
    assert_eq!(s.last_action(), Some(Action::Pause));
    assert_eq!(caller(&s).as_deref(), Some("auth-service/user-service"));
    assert_eq!(s.request_header("authorization"), None);
    let (w, fetch) = {
        let until = elapsed_ms(&host) + 1_000;
        loop {
            tick(&host);
            if let Some(c) = worker.callouts().pop() {
                break (worker.clone(), c);
            }
            assert!(elapsed_ms(&host) < until, "no token fetch");
        }
    };
    assert_eq!(fetch.upstream, "egress_token_sso");
    grant(&w, &fetch, "sso-tok", Some(3600));
    assert_eq!(s.request_resumed(), 1);
    assert_eq!(authorizations(&s), vec!["Bearer sso-tok"]);
    assert_eq!(s.request_header(":path").as_deref(), Some("/x"));
    assert_eq!(s.filter_property(&["egress_log"]), None);

    // A static-credential route with callers: the caller check only (the key is Envoy's).
    let crm = leaf_route_name(0, "get");
    let no_role = format!("Bearer {}", hs256_token(&host, "svc-a", &[], 300));
    let s = send(&worker, Some(&crm), &sso_headers(Some(&no_role)));
    refused(&s, 403, "forbidden");
    let with_role = format!("Bearer {}", hs256_token(&host, "svc-a", &["crm"], 300));
    let s = send(&worker, Some(&crm), &sso_headers(Some(&with_role)));
    assert_eq!(s.local_response(), None);
    assert_eq!(s.last_action(), Some(Action::Continue));
    assert_eq!(s.request_header("x-api-key"), None);
    assert_eq!(s.request_header("authorization"), None);
    assert_eq!(caller(&s).as_deref(), Some("auth-service/svc-a"));
}
