//! No credential is readable on Envoy's admin interface: the listeners carry environment
//! variable names and sealed values, the values reach the wasm VM through Envoy's process
//! environment (`secrets.env`, as `egressctl up` starts it). Every admin endpoint is read and
//! searched for every secret (and its encodings) while the filter is shown to inject them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use egress_e2e::*;
use std::process::Command;
use std::time::{Duration, Instant};

const API_KEY: &str = "adm-apikey-K7q2Zr";
const BEARER: &str = "adm-bearer-T9w4Xs";
const BASIC_USER: &str = "adm-user";
const BASIC_PASSWORD: &str = "adm-password-P3v8Lm";
const CLIENT_SECRET: &str = "adm-client-secret-C5n1Qa";
const ROTATED_KEY: &str = "adm-apikey-rotated-R2d6Hf";

fn ctl(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = egressctl().unwrap();
    cmd.current_dir(dir)
        .args(args)
        .env("EGRESS_FILTER_WASM", filter_wasm());
    cmd.output().unwrap()
}

use std::path::Path;

fn config(listen: u16, upstream: u16, token: u16, key_file: &str, api_key: &str) -> String {
    format!(
        r#"http:
  addr: "127.0.0.1:{listen}"
egress:
  targets:
    apikey:
      url: "http://127.0.0.1:{upstream}"
      auth: {{type: api_key, header: X-API-Key, key: "{api_key}"}}
    bearer:
      url: "http://127.0.0.1:{upstream}"
      auth: {{type: bearer, token: "{BEARER}"}}
    basic:
      url: "http://127.0.0.1:{upstream}"
      auth: {{type: basic, username: "{BASIC_USER}", password: "{BASIC_PASSWORD}"}}
    oauth:
      url: "http://127.0.0.1:{upstream}"
      auth:
        type: oauth2_client_credentials
        token_url: "http://127.0.0.1:{token}/oauth/token"
        client_id: adm-client
        client_secret: "{CLIENT_SECRET}"
        client_auth: client_secret_post
    jwt-client:
      url: "http://127.0.0.1:{upstream}"
      auth:
        type: oauth2_client_credentials
        token_url: "http://127.0.0.1:{token}/oauth/token"
        client_id: adm-jwt-client
        client_auth: private_key_jwt
        private_key: "{key_file}"
        signing_alg: ES256
  routes:
    - {{path_prefix: /egress/apikey, target: apikey, strip_prefix: /egress/apikey}}
    - {{path_prefix: /egress/bearer, target: bearer, strip_prefix: /egress/bearer}}
    - {{path_prefix: /egress/basic, target: basic, strip_prefix: /egress/basic}}
    - {{path_prefix: /egress/oauth, target: oauth, strip_prefix: /egress/oauth}}
    - {{path_prefix: /egress/jwt, target: jwt-client, strip_prefix: /egress/jwt}}
endpoints:
  health: /health
  metrics: /metrics
"#
    )
}

/// Every spelling of every secret that must not be on the admin interface.
fn needles(pem: &str, api_key: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut n = vec![
        api_key.to_string(),
        BEARER.to_string(),
        BASIC_PASSWORD.to_string(),
        b64.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}")),
        CLIENT_SECRET.to_string(),
        b64.encode(pem),
    ];
    // Each line of the private key's body (the PEM as in a JSON string would join them).
    n.extend(
        pem.lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
            .map(str::to_string),
    );
    n
}

const ENDPOINTS: [&str; 10] = [
    "/config_dump",
    "/config_dump?include_eds",
    "/config_dump?include_eds=true",
    "/stats",
    "/stats/prometheus",
    "/clusters",
    "/clusters?format=json",
    "/server_info",
    "/listeners?format=json",
    "/runtime",
];

fn assert_admin_clean(envoy: &Envoy, admin: &str, egress: u16, needles: &[String]) {
    let mut pages = Vec::new();
    for ep in ENDPOINTS {
        let resp = Request::get(&format!("http://{admin}{ep}"))
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap();
        assert_eq!(resp.status, 200, "{ep}: {}", resp.body);
        pages.push((ep.to_string(), resp.body));
    }
    pages.push((
        "egress /metrics".into(),
        get(&format!("http://127.0.0.1:{egress}/metrics"))
            .unwrap()
            .body,
    ));
    let dump = &pages[0].1;
    assert!(
        dump.contains("EGRESS_SECRET_APIKEY__KEY") && dump.contains("host_env_keys"),
        "the listener names the variable"
    );
    for (ep, body) in &pages {
        for n in needles {
            assert!(!body.contains(n.as_str()), "{ep} shows a credential");
        }
    }
    assert!(envoy.exited().is_none());
}

/// Polls until `path` answers 200 with the echoed header `name`, returning its value.
fn echoed(egress: u16, path: &str, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let last = match get(&format!("http://127.0.0.1:{egress}{path}")) {
            Ok(r) if r.status == 200 => match r
                .json()
                .ok()
                .and_then(|j| j["headers"][name].as_str().map(str::to_string))
            {
                Some(v) => return v,
                None => format!("no {name}: {}", r.body),
            },
            Ok(r) => format!("{} {}", r.status, r.body),
            Err(e) => format!("{e:#}"),
        };
        assert!(Instant::now() < deadline, "{path}: {last}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn no_credential_is_readable_on_the_admin_interface_before_or_after_a_rotation(engine: Engine) {
    let upstream = Standin::start(StandinOpts::new("upstream")).unwrap();
    let token =
        Standin::start(StandinOpts::new("idp").token_endpoint("/oauth/token", 3600)).unwrap();
    let dir = scratch_dir().unwrap();
    let key_file = dir.path().join("jwt.pem");
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read_to_string(&key_file).unwrap();
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let admin_addr = format!("127.0.0.1:{admin}");
    let write = |api_key: &str| {
        std::fs::write(
            dir.path().join("config.yaml"),
            config(
                listen,
                upstream.port(),
                token.port(),
                &key_file.display().to_string(),
                api_key,
            ),
        )
        .unwrap()
    };
    write(API_KEY);
    let out = ctl(
        dir.path(),
        &[
            "compile",
            "config.yaml",
            "--out",
            "state",
            "--admin",
            &admin_addr,
            "--engine",
            engine.as_str(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for n in needles(&pem, API_KEY) {
        assert!(!stdout.contains(&n), "compile printed a credential");
    }
    // The state directory: listeners and filter.json hold no credential; secrets.env does,
    // readable by its owner only.
    for f in ["lds.json", "filter.json", "envoy.yaml", "cds.yaml"] {
        let text = std::fs::read_to_string(dir.path().join("state").join(f)).unwrap();
        for n in needles(&pem, API_KEY) {
            assert!(!text.contains(&n), "{f} holds a credential");
        }
    }
    let state = dir.path().join("state");
    assert_secret_files_hold(&state, API_KEY, engine);

    let envoy = Envoy::start(&dir.path().join("state/envoy.yaml"), &[]).unwrap();
    envoy.wait_ready(&admin_addr).unwrap();
    // The filter has the values (from the environment).
    assert_eq!(echoed(listen, "/egress/apikey/x", "x-api-key"), API_KEY);
    assert_eq!(
        echoed(listen, "/egress/bearer/x", "authorization"),
        format!("Bearer {BEARER}")
    );
    assert!(echoed(listen, "/egress/basic/x", "authorization").starts_with("Basic "));
    assert!(echoed(listen, "/egress/oauth/x", "authorization").starts_with("Bearer "));
    assert!(echoed(listen, "/egress/jwt/x", "authorization").starts_with("Bearer "));
    assert_admin_clean(&envoy, &admin_addr, listen, &needles(&pem, API_KEY));

    // A rotated credential reaches the running Envoy (sealed), and is not readable either.
    write(ROTATED_KEY);
    let out = ctl(dir.path(), &["apply", "config.yaml", "--out", "state"]);
    // (No --engine: apply keeps the state's.)
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("~ target apikey: credential changed"),
        "{printed}"
    );
    assert!(!printed.contains(ROTATED_KEY) && !printed.contains(API_KEY));
    let deadline = Instant::now() + Duration::from_secs(120);
    while echoed(listen, "/egress/apikey/x", "x-api-key") != ROTATED_KEY {
        assert!(Instant::now() < deadline, "the rotated key never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut after = needles(&pem, ROTATED_KEY);
    after.push(API_KEY.to_string());
    assert_admin_clean(&envoy, &admin_addr, listen, &after);
    assert_secret_files_hold(&state, ROTATED_KEY, engine);
}

/// Where a state directory may keep credential values: `secrets.env` (the environment the
/// filter reads, wasm engine) and `sds/<target>.yaml` (the SDS secrets Envoy's injector reads,
/// auto engine). `value` is in one of them, and each is readable by its owner only.
fn assert_secret_files_hold(state: &Path, value: &str, engine: Engine) {
    use std::os::unix::fs::PermissionsExt;
    let mut files = vec![state.join("secrets.env")];
    if let Ok(dir) = std::fs::read_dir(state.join("sds")) {
        files.extend(dir.map(|e| e.unwrap().path()));
    }
    let mut found = false;
    for f in files.iter().filter(|f| f.exists()) {
        found |= std::fs::read_to_string(f).unwrap().contains(value);
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{engine}: {} is readable by others",
            f.display()
        );
    }
    assert!(found, "{engine}: no secret file holds the value: {files:?}");
    if engine == Engine::Wasm {
        let env = std::fs::read_to_string(state.join("secrets.env")).unwrap();
        assert!(
            env.contains(&format!("EGRESS_SECRET_APIKEY__KEY={value}\n")),
            "{env}"
        );
    }
}

engine_tests!(no_credential_is_readable_on_the_admin_interface_before_or_after_a_rotation,);
