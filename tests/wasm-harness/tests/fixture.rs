//! End-to-end tests of the harness against the fixture module in `fixture/`
//! (built on demand by `proxy_wasm_harness::fixture_wasm`).

use proxy_wasm_harness::{
    Action, BufferType, Error, Host, LogLevel, MetricType, Status, Stream, Worker,
};
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn host() -> Result<Host, Error> {
    Host::from_file(proxy_wasm_harness::fixture_wasm()?)
}

fn started(host: &Host, plugin_config: &str) -> Result<Worker, Error> {
    let worker = host.worker()?;
    assert!(worker.start(b"vm-config", plugin_config.as_bytes())?);
    Ok(worker)
}

fn get(worker: &Worker, path: &str) -> Result<Stream, Error> {
    worker.http_request(
        [
            (":method", "GET"),
            (":path", path),
            (":authority", "example.com"),
        ],
        true,
    )
}

#[test]
fn start_runs_vm_start_and_configure_with_their_configurations() -> TestResult {
    let host = host()?;
    let worker = started(&host, "tick_ms=0")?;
    assert!(worker.logged(LogLevel::Info, "vm start: vm-config"));
    assert!(worker.logged(LogLevel::Info, "configure: tick_ms=0"));
    assert_eq!(
        worker.root_property(&["fixture", "configured"]),
        Some(b"yes".to_vec())
    );
    assert!(host
        .stubbed_imports()
        .iter()
        .all(|i| !i.contains("proxy_log")));
    Ok(())
}

#[test]
fn start_returns_false_when_configure_or_vm_start_rejects() -> TestResult {
    let host = host()?;
    assert!(!host.worker()?.start(b"", b"fail=1")?);
    assert!(!host.worker()?.start(b"fail-vm", b"")?);
    Ok(())
}

#[test]
fn request_headers_are_read_added_replaced_and_removed() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = worker.http_request(
        [
            (":method", "GET"),
            (":path", "/plain"),
            ("X-Replace", "old"),
            ("x-replace", "dup"),
            ("x-remove", "gone"),
            ("keep", "me"),
        ],
        false,
    )?;
    assert_eq!(stream.last_action(), Some(Action::Continue));
    assert_eq!(
        stream.request_header("x-fixture-seen").as_deref(),
        Some("1")
    );
    assert_eq!(
        stream.request_header("x-replace").as_deref(),
        Some("replaced")
    );
    assert_eq!(
        stream
            .request_header_map()
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-replace"))
            .count(),
        1
    );
    assert_eq!(stream.request_header("x-remove"), None);
    assert_eq!(stream.request_header("keep").as_deref(), Some("me"));
    Ok(())
}

#[test]
fn set_header_map_pairs_replaces_the_whole_map() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = get(&worker, "/replace-all")?;
    assert_eq!(
        stream.request_header_map(),
        vec![
            (":path".to_string(), "/rewritten".to_string()),
            ("x-only".to_string(), "1".to_string())
        ]
    );
    Ok(())
}

#[test]
fn local_response_is_captured_with_status_headers_and_body() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = get(&worker, "/deny")?;
    assert_eq!(stream.last_action(), Some(Action::Pause));
    let response = stream.local_response().ok_or("no local response")?;
    assert_eq!(response.status, 403);
    assert_eq!(response.header("x-fixture"), Some("denied"));
    assert_eq!(response.body_str(), "denied by fixture");
    assert_eq!(response.grpc_status, -1);
    assert!(get(&worker, "/plain")?.local_response().is_none());
    Ok(())
}

#[test]
fn callout_is_recorded_and_its_reply_resumes_the_paused_request() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = get(&worker, "/callout")?;
    assert_eq!(stream.last_action(), Some(Action::Pause));
    let callouts = worker.callouts();
    assert_eq!(callouts.len(), 1);
    let callout = &callouts[0];
    assert_eq!(callout.upstream, "authz");
    assert_eq!(callout.header(":path"), Some("/check"));
    assert_eq!(
        callout.header("x-ctx"),
        Some(stream.id().to_string().as_str())
    );
    assert_eq!(callout.body, b"ping");
    assert_eq!(callout.timeout, Duration::from_secs(5));
    assert_eq!(callout.context_id, stream.id());
    assert_eq!(stream.request_resumed(), 0);

    worker.respond_callout(callout.token, 200, [("x-verdict", "allow")], b"pong")?;
    assert!(worker.callouts().is_empty());
    assert_eq!(stream.request_resumed(), 1);
    assert_eq!(
        stream.request_header("x-authz").as_deref(),
        Some("allow:pong")
    );
    assert!(stream.local_response().is_none());
    Ok(())
}

#[test]
fn callout_reply_with_error_status_yields_local_response() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = get(&worker, "/callout")?;
    let token = worker.callouts()[0].token;
    worker.respond_callout(token, 401, Vec::<(String, String)>::new(), b"nope")?;
    let response = stream.local_response().ok_or("no local response")?;
    assert_eq!(
        (response.status, response.body_str().as_str()),
        (403, "nope")
    );
    assert_eq!(stream.request_resumed(), 0);
    Ok(())
}

#[test]
fn failed_callout_is_delivered_with_zero_headers() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = get(&worker, "/callout")?;
    let token = worker.callouts()[0].token;
    worker.fail_callout(token)?;
    let response = stream.local_response().ok_or("no local response")?;
    assert_eq!(response.status, 503);
    assert_eq!(response.header("x-fixture"), Some("callout-failed"));
    assert!(worker.logged(LogLevel::Info, "answered with 0 headers"));
    assert!(matches!(worker.fail_callout(token), Err(Error::Usage(_))));
    Ok(())
}

#[test]
fn callout_times_out_when_the_clock_passes_its_deadline() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = get(&worker, "/callout")?;
    host.advance_and_tick(Duration::from_secs(4))?;
    assert_eq!(worker.callouts().len(), 1);
    host.advance_and_tick(Duration::from_secs(1))?;
    assert!(worker.callouts().is_empty());
    assert_eq!(stream.local_response().map(|r| r.status), Some(503));
    Ok(())
}

#[test]
fn http_call_to_rejected_cluster_returns_the_configured_status() -> TestResult {
    let host = host()?;
    host.reject_http_calls_to("no-such-cluster", Status::BadArgument);
    let worker = started(&host, "")?;
    let stream = get(&worker, "/callout-unknown")?;
    assert!(worker.callouts().is_empty());
    let response = stream.local_response().ok_or("no local response")?;
    assert_eq!(response.body_str(), "callout failed: BadArgument");
    Ok(())
}

#[test]
fn ticks_fire_once_per_elapsed_period_on_every_worker() -> TestResult {
    let host = host()?;
    let a = started(&host, "tick_ms=1000")?;
    let b = started(&host, "tick_ms=500")?;
    assert_eq!(a.tick_period(), Some(Duration::from_secs(1)));
    assert_eq!(b.tick_period(), Some(Duration::from_millis(500)));
    assert_eq!(host.advance_and_tick(Duration::from_millis(999))?, 1); // b at 500ms
    assert_eq!(host.advance_and_tick(Duration::from_millis(1))?, 2); // a and b at 1000ms
    assert_eq!(host.advance_and_tick(Duration::from_secs(2))?, 6); // a: 2, b: 4
                                                                   // 1 + 2 + 6 ticks, all incrementing one shared-data counter through CAS.
    let (value, _cas) = host.shared_data("fixture.ticks").ok_or("no counter")?;
    assert_eq!(value, b"9");
    assert_eq!(host.metric("fixture.ticks"), Some(9));
    Ok(())
}

#[test]
fn tick_sees_the_harness_clock() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let start = host.now();
    host.advance(Duration::from_secs(60));
    worker.tick()?;
    let expected = start
        .checked_add(Duration::from_secs(60))
        .ok_or("overflow")?
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    assert!(worker.logged(LogLevel::Info, &format!("tick 1 at {expected}")));
    Ok(())
}

#[test]
fn shared_data_is_shared_between_workers_with_cas() -> TestResult {
    let host = host()?;
    let a = started(&host, "")?;
    let b = started(&host, "")?;
    a.tick()?;
    b.tick()?;
    let stream = get(&a, "/shared")?;
    assert_eq!(stream.request_header("x-ticks").as_deref(), Some("2"));
    let (_, cas) = host.shared_data("fixture.ticks").ok_or("missing")?;
    assert_eq!(stream.request_header("x-cas"), Some(cas.to_string()));

    // Host-side CAS semantics mirror the hostcalls.
    assert_eq!(host.set_shared_data("k", "v1", 0), Ok(()));
    let (_, cas) = host.shared_data("k").ok_or("missing")?;
    assert_eq!(
        host.set_shared_data("k", "v2", cas + 1),
        Err(Status::CasMismatch)
    );
    assert_eq!(host.set_shared_data("k", "v2", cas), Ok(()));
    assert_eq!(
        host.set_shared_data("k", "v3", cas),
        Err(Status::CasMismatch)
    );
    assert_eq!(host.shared_data("k").map(|(v, _)| v), Some(b"v2".to_vec()));
    Ok(())
}

#[test]
fn missing_shared_data_reads_as_not_found() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = get(&worker, "/shared")?;
    assert_eq!(stream.request_header("x-ticks").as_deref(), Some("none"));
    Ok(())
}

#[test]
fn logs_are_captured_per_worker() -> TestResult {
    let host = host()?;
    let a = started(&host, "")?;
    let b = started(&host, "")?;
    get(&a, "/only-a")?;
    assert!(a.logged(LogLevel::Info, "request /only-a"));
    assert!(!b.logged(LogLevel::Trace, "request /only-a"));
    assert!(!a.logged(LogLevel::Warn, "request /only-a"));
    let taken = a.take_logs();
    assert!(taken.iter().any(|l| l.message == "request /only-a"));
    assert!(a.logs().is_empty());
    Ok(())
}

#[test]
fn log_level_is_settable() -> TestResult {
    let host = host()?;
    host.set_log_level(LogLevel::Warn);
    let worker = started(&host, "")?;
    let stream = get(&worker, "/plain")?;
    assert_eq!(
        stream.request_header("x-log-level").as_deref(),
        Some("Warn")
    );
    Ok(())
}

#[test]
fn properties_are_served_and_set_property_is_recorded_per_stream() -> TestResult {
    let host = host()?;
    host.set_property(&["fixture", "tag"], "host-wide");
    let worker = started(&host, "")?;
    let first = get(&worker, "/first")?;
    assert_eq!(first.request_header("x-tag").as_deref(), Some("host-wide"));
    assert_eq!(
        first.filter_property(&["fixture", "path"]),
        Some(b"/first".to_vec())
    );

    let second = worker.create_stream()?;
    second.set_property(&["fixture", "tag"], "per-stream");
    second.request_headers([(":path", "/second")], true)?;
    assert_eq!(
        second.request_header("x-tag").as_deref(),
        Some("per-stream")
    );
    assert_eq!(
        second.filter_property(&["fixture", "path"]),
        Some(b"/second".to_vec())
    );
    assert_eq!(
        first.filter_property(&["fixture", "path"]),
        Some(b"/first".to_vec())
    );
    Ok(())
}

#[test]
fn finish_calls_done_log_and_delete() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = get(&worker, "/plain")?;
    assert_eq!(stream.filter_property(&["fixture", "logged"]), None);
    stream.finish()?;
    assert!(stream.is_finished());
    assert_eq!(
        stream.filter_property(&["fixture", "logged"]),
        Some(b"yes".to_vec())
    );
    assert!(worker.logged(LogLevel::Info, &format!("stream {} done", stream.id())));
    assert!(matches!(stream.finish(), Err(Error::Usage(_))));
    assert!(matches!(
        stream.response_headers([(":status", "200")], true),
        Err(Error::Usage(_))
    ));
    Ok(())
}

#[test]
fn response_headers_phase_reads_and_modifies_response_map() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = get(&worker, "/plain")?;
    let action = stream.response_headers([(":status", "201"), ("server", "upstream")], false)?;
    assert_eq!(action, Action::Continue);
    assert_eq!(
        stream.response_header("x-fixture-response").as_deref(),
        Some("seen-201")
    );
    assert_eq!(stream.response_header("server"), None);
    Ok(())
}

#[test]
fn request_body_is_buffered_while_paused_and_rewritten() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = worker.http_request([(":method", "POST"), (":path", "/plain")], false)?;
    assert_eq!(stream.request_body(b"hello ", false)?, Action::Pause);
    assert_eq!(stream.request_body(b"world", true)?, Action::Continue);
    assert_eq!(stream.buffer(BufferType::HttpRequestBody), b"HELLO WORLD");

    let stream = worker.http_request([(":method", "POST"), (":path", "/plain")], false)?;
    stream.request_body(b"a forbidden thing", true)?;
    assert_eq!(stream.local_response().map(|r| r.status), Some(400));
    Ok(())
}

#[test]
fn metrics_are_aggregated_by_name_across_workers() -> TestResult {
    let host = host()?;
    let a = started(&host, "")?;
    let b = started(&host, "")?;
    get(&a, "/1")?;
    get(&b, "/22")?;
    get(&b, "/333")?;
    assert_eq!(host.metric("fixture.requests"), Some(3));
    assert_eq!(
        host.metric_type("fixture.requests"),
        Some(MetricType::Counter)
    );
    assert_eq!(host.histogram("fixture.latency_ms"), vec![2, 3, 4]);
    assert_eq!(host.metrics().get("fixture.ticks"), Some(&0));
    Ok(())
}

#[test]
fn foreign_function_returns_not_found_unless_registered_and_is_recorded() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let stream = get(&worker, "/foreign")?;
    assert_eq!(
        stream.request_header("x-foreign").as_deref(),
        Some("NotFound")
    );

    host.register_foreign_function("clear_route_cache", |_args| Ok(b"cleared".to_vec()));
    let stream = get(&worker, "/foreign")?;
    assert_eq!(
        stream.request_header("x-foreign").as_deref(),
        Some("ok:cleared")
    );
    let calls = worker.foreign_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].name, "clear_route_cache");
    assert_eq!(
        (calls[0].status, calls[1].status),
        (Status::NotFound, Status::Ok)
    );
    Ok(())
}

#[test]
fn module_trap_surfaces_as_error_and_fails_the_worker() -> TestResult {
    let host = host()?;
    let worker = started(&host, "")?;
    let err = get(&worker, "/trap").err().ok_or("expected a trap")?;
    assert!(err.is_trap(), "{err}");
    assert!(
        err.to_string().contains("proxy_on_request_headers"),
        "{err}"
    );
    assert!(worker.is_failed());
    assert!(matches!(get(&worker, "/plain"), Err(Error::VmFailed)));
    // Other workers are unaffected.
    let other = started(&host, "")?;
    assert_eq!(get(&other, "/plain")?.last_action(), Some(Action::Continue));
    Ok(())
}
