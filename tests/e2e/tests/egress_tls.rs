//! The egress proxy end to end, continued (see `egress.rs`): upstream TLS verified against
//! the configured CA, a self-signed target refused without `insecure_skip_verify`, a filter
//! config the filter refuses, and `egressctl up` serving and stopping on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod demo_common;

use demo_common::*;
use egress_e2e::*;
use std::time::Duration;

fn tls_is_verified_against_the_configured_ca_and_refused_on_mismatch(engine: Engine) {
    let p = Proxy::start_with(
        engine,
        Setup {
            notification_wrong_ca: true,
            ..Setup::default()
        },
    )
    .unwrap();
    let r = p.send("POST", "/egress/notify/email");
    assert_eq!(
        r.status, 503,
        "a server whose CA we do not trust must not be reached"
    );
    assert!(
        p.envoy
            .stat("cluster.egress_target_notification.ssl.fail_verify_error")
            .unwrap()
            .unwrap_or(0)
            >= 1
    );
    // The ERP's self-signed certificate is accepted only because of insecure_skip_verify.
    echo(&p.send("GET", "/egress/erp/customers"));
}

fn a_self_signed_target_is_refused_without_insecure_skip_verify(engine: Engine) {
    let pki = Pki::generate().unwrap();
    // Point the ERP at a verified config: same demo, but the ERP's tls block verifies ca.crt.
    let state = scratch_dir().unwrap();
    let cfg = std::fs::read_to_string(demo_config()).unwrap().replace(
        "        insecure_skip_verify: true  # Self-signed cert",
        &format!(
            "        ca_cert: \"{}\"\n        server_name: erp.internal",
            pki.ca_cert().display()
        ),
    );
    let path = state.path().join("config.yaml");
    std::fs::write(&path, cfg).unwrap();
    let erp = Standin::start(StandinOpts::new("legacy-erp").tls(pki.self_signed())).unwrap();
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let mut env: Vec<(String, String)> = SECRETS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("DEMO_ERP_PORT".into(), erp.port().to_string()));
    env.push(("DEMO_LISTEN".into(), format!("127.0.0.1:{listen}")));
    env.push(("DEMO_PKI".into(), pki.dir().display().to_string()));
    env.push(("DEMO_STATE".into(), state.path().display().to_string()));
    let out = state.path().join("out");
    let o = compile_command(&path, &out, admin, engine)
        .unwrap()
        .envs(env)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let envoy = Envoy::start(&out.join("envoy.yaml"), &[]).unwrap();
    envoy.wait_ready(&format!("127.0.0.1:{admin}")).unwrap();
    let r = get(&format!("http://127.0.0.1:{listen}/egress/erp/customers")).unwrap();
    assert_eq!(r.status, 503);
}

/// Wasm engine only: the filter's own config check at load (what `auto` renders loads the
/// same module with the same config check).
#[test]
fn a_filter_config_the_filter_refuses_stops_the_plugin_with_a_clear_log_line() {
    let p = Proxy::start(Engine::Wasm).unwrap();
    let out = p.state.path().join("out");
    let lds = std::fs::read_to_string(out.join("lds.json")).unwrap();
    // A version the filter does not know: the filter must refuse it at load.
    // The filter config is a JSON string inside the listener file.
    let broken = lds.replace(r#"{\"version\":1,"#, r#"{\"version\":99,"#);
    assert!(
        broken != lds,
        "the inline filter config was not found in lds.json"
    );
    let dir = scratch_dir().unwrap();
    // The request log lived in the first proxy's state directory, which goes with it.
    let broken = broken.replace(
        p.state.path().to_str().unwrap(),
        dir.path().to_str().unwrap(),
    );
    std::fs::write(dir.path().join("lds.json"), broken).unwrap();
    std::fs::copy(out.join("cds.yaml"), dir.path().join("cds.yaml")).unwrap();
    let bootstrap = std::fs::read_to_string(out.join("envoy.yaml"))
        .unwrap()
        .replace(out.to_str().unwrap(), dir.path().to_str().unwrap());
    let broken_path = dir.path().join("envoy.yaml");
    std::fs::write(&broken_path, bootstrap).unwrap();
    let base = p.base.clone();
    drop(p); // frees the listener and admin ports the broken config reuses
    let envoy = Envoy::start(&broken_path, &[]);
    // Envoy refuses to start a listener whose wasm plugin fails to configure.
    let log = match envoy {
        Ok(e) => {
            wait_for("envoy to log the rejection or exit", || {
                Ok(e.log().contains("config rejected") || e.exited().is_some())
            })
            .unwrap();
            // If Envoy serves at all, nothing may be forwarded without the filter.
            if let Ok(r) = Request::post(&format!("{base}/egress/notify/email"))
                .timeout(Duration::from_secs(5))
                .send()
            {
                assert!(
                    r.status >= 500,
                    "forwarded without a working filter: {} {}",
                    r.status,
                    r.body
                );
                assert!(
                    !r.body.contains("\"service\""),
                    "reached an upstream: {}",
                    r.body
                );
            }
            e.log()
        }
        Err(err) => format!("{err:#}"),
    };
    assert!(log.contains("egress filter config rejected"), "{log}");
    assert!(log.contains("version 99"), "{log}");
    assert_no_secret(&log);
}

fn egressctl_up_serves_and_stops_cleanly_on_sigterm(engine: Engine) {
    let pki = Pki::generate().unwrap();
    let notify = Standin::start(StandinOpts::new("notification").tls(pki.server())).unwrap();
    let state = scratch_dir().unwrap();
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let mut cmd = egressctl().unwrap();
    cmd.args([
        "up",
        demo_config().to_str().unwrap(),
        "--out",
        state.path().join("up").to_str().unwrap(),
        "--admin",
        &format!("127.0.0.1:{admin}"),
        "--wasm",
        filter_wasm().to_str().unwrap(),
        "--base-id",
        // Unique per process and engine (both engines' tests run side by side).
        &(std::process::id() % 30_000 * 2 + 3_000 + u32::from(engine == Engine::Auto)).to_string(),
        "--concurrency",
        "1",
        "--engine",
        engine.as_str(),
    ]);
    cmd.envs(SECRETS.iter().map(|(k, v)| (*k, *v)))
        .env("DEMO_NOTIFY_PORT", notify.port().to_string())
        .env("DEMO_LISTEN", format!("127.0.0.1:{listen}"))
        .env("DEMO_PKI", pki.dir())
        .env("DEMO_STATE", state.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let url = format!("http://127.0.0.1:{listen}/egress/notify/email");
    let served = wait_until("egressctl up to serve", || {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("egressctl up exited ({status}) before serving");
        }
        Ok(
            match Request::post(&url).timeout(Duration::from_secs(5)).send() {
                Ok(r) => Probe::Ready(r),
                Err(e) => Probe::Pending(format!("{e:#}")),
            },
        )
    })
    .unwrap();
    assert_eq!(echo(&served)["headers"]["x-api-key"], "SECRET-notify-key");
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = wait_until("egressctl up to stop on SIGTERM", || {
        Ok(match child.try_wait()? {
            Some(s) => Probe::Ready(s),
            None => Probe::Pending("still running".into()),
        })
    })
    .unwrap();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exit {status}: {err}");
    assert!(err.contains("Envoy stopped"), "{err}");
    assert_no_secret(&err);
    assert!(
        get(&format!("http://127.0.0.1:{listen}/health")).is_err(),
        "Envoy still serving after stop"
    );
}

engine_tests!(
    tls_is_verified_against_the_configured_ca_and_refused_on_mismatch,
    a_self_signed_target_is_refused_without_insecure_skip_verify,
    egressctl_up_serves_and_stops_cleanly_on_sigterm,
);
