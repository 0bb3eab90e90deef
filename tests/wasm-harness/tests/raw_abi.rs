//! ABI edge cases driven by hand-written WAT modules: bad guest pointers,
//! unimplemented imports, memory handed back through the module's allocator.

use proxy_wasm_harness::{Error, Host, LogLevel, Status};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A minimal module with a bump allocator. `proxy_on_vm_start` runs `$body`
/// and returns its i32 result; results are inspected through the log.
fn module(imports: &str, body: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  {imports}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "hello")
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    global.get $heap
    local.set $p
    global.get $heap
    local.get $size
    i32.add
    global.set $heap
    local.get $p)
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    {body})
  (func (export "proxy_abi_version_0_2_1")))"#
    )
}

#[test]
fn bad_guest_pointer_returns_invalid_memory_access() -> TestResult {
    let host = Host::from_bytes(
        module(
            "",
            "(i32.eq (call $log (i32.const 2) (i32.const 0xfffffff0) (i32.const 100)) (i32.const 6))",
        ).as_bytes(),
    )?;
    let worker = host.worker()?;
    // on_vm_start returns whether proxy_log answered INVALID_MEMORY_ACCESS (6).
    assert!(worker.start(b"", b"")?);
    assert!(worker.logs().is_empty());

    let host = Host::from_bytes(
        module(
            "",
            "(call $log (i32.const 2) (i32.const 16) (i32.const 5)) i32.eqz",
        )
        .as_bytes(),
    )?;
    let worker = host.worker()?;
    assert!(worker.start(b"", b"")?);
    assert_eq!(worker.logs()[0].message, "hello");
    assert_eq!(worker.logs()[0].level, LogLevel::Info);
    Ok(())
}

#[test]
fn bad_out_pointer_returns_invalid_memory_access_status() -> TestResult {
    let imports = r#"(import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))"#;
    let host = Host::from_bytes(
        module(
            imports,
            "(i32.eq (call $now (i32.const 0xfffffffc)) (i32.const 6))",
        )
        .as_bytes(),
    )?;
    assert!(host.worker()?.start(b"", b"")?);
    Ok(())
}

#[test]
fn unknown_imports_are_stubbed_with_unimplemented() -> TestResult {
    let imports = r#"
  (import "env" "proxy_from_the_future" (func $future (param i32) (result i32)))
  (import "other" "thing" (func $thing (result i64)))
  (import "env" "proxy_log_wrong_sig" (func $unused (param i64)))"#;
    let body = "(i32.eq (call $future (i32.const 1)) (i32.const 12))";
    let host = Host::from_bytes(module(imports, body).as_bytes())?;
    assert_eq!(
        host.stubbed_imports(),
        [
            "env::proxy_from_the_future",
            "other::thing",
            "env::proxy_log_wrong_sig"
        ]
    );
    let worker = host.worker()?;
    assert!(worker.start(b"", b"")?);
    assert_eq!(worker.unimplemented_calls(), ["env::proxy_from_the_future"]);
    assert_eq!(Status::Unimplemented.code(), 12);
    Ok(())
}

#[test]
fn import_with_mismatched_signature_is_stubbed_instead_of_failing_to_link() -> TestResult {
    // proxy_done takes no parameters; this module declares it with one.
    let imports = r#"(import "env" "proxy_done" (func $done (param i32) (result i32)))"#;
    let host = Host::from_bytes(
        module(
            imports,
            "(i32.eq (call $done (i32.const 0)) (i32.const 12))",
        )
        .as_bytes(),
    )?;
    let worker = host.worker()?;
    assert!(worker.start(b"", b"")?);
    assert_eq!(worker.done_calls(), 0);
    Ok(())
}

#[test]
fn get_buffer_bytes_copies_through_the_module_allocator() -> TestResult {
    // Reads 3 bytes of the plugin config at offset 1 and logs them.
    let imports = r#"(import "env" "proxy_get_buffer_bytes" (func $get (param i32 i32 i32 i32 i32) (result i32)))"#;
    let body = r#"
    (drop (call $get (i32.const 6) (i32.const 1) (i32.const 3) (i32.const 100) (i32.const 104)))
    (drop (call $log (i32.const 3) (i32.load (i32.const 100)) (i32.load (i32.const 104))))
    i32.const 1"#;
    let host = Host::from_bytes(module(imports, body).as_bytes())?;
    let worker = host.worker()?;
    assert!(worker.start(b"abcdef", b"")?);
    assert_eq!(worker.logs()[0].message, "bcd");
    assert_eq!(worker.logs()[0].level, LogLevel::Warn);
    Ok(())
}

#[test]
fn trap_in_vm_start_is_reported_as_trap() -> TestResult {
    let host = Host::from_bytes(module("", "unreachable").as_bytes())?;
    let worker = host.worker()?;
    match worker.start(b"", b"") {
        Err(Error::Trap { callback, .. }) => assert_eq!(callback, "proxy_on_vm_start"),
        other => return Err(format!("expected a trap, got {other:?}").into()),
    }
    assert!(matches!(worker.tick(), Err(Error::VmFailed)));
    Ok(())
}

#[test]
fn shared_queue_items_reach_the_registering_worker() -> TestResult {
    let imports = r#"
  (import "env" "proxy_register_shared_queue" (func $reg (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $deq (param i32 i32 i32) (result i32)))"#;
    let body = "(drop (call $reg (i32.const 16) (i32.const 5) (i32.const 200))) i32.const 1";
    let wat = module(imports, body).replace(
        r#"(func (export "proxy_abi_version_0_2_1"))"#,
        r#"(func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_queue_ready") (param i32 i32)
    (drop (call $deq (local.get 1) (i32.const 300) (i32.const 304)))
    (drop (call $log (i32.const 2) (i32.load (i32.const 300)) (i32.load (i32.const 304)))))"#,
    );
    let host = Host::from_bytes(wat.as_bytes())?;
    let worker = host.worker()?;
    assert!(worker.start(b"", b"")?);
    host.enqueue("hello", "item-1")?;
    assert_eq!(host.dispatch_queue_ready()?, 1);
    assert_eq!(worker.logs()[0].message, "item-1");
    assert_eq!(host.dequeue("hello"), None);
    Ok(())
}

#[test]
fn wasi_random_get_works() -> TestResult {
    let imports = r#"(import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))"#;
    let body = "(i32.eqz (call $random (i32.const 400) (i32.const 32)))";
    let host = Host::from_bytes(module(imports, body).as_bytes())?;
    assert!(host.stubbed_imports().is_empty());
    assert!(host.worker()?.start(b"", b"")?);
    Ok(())
}
