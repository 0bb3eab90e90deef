//! Building blocks for end-to-end tests: a real Envoy, Python stand-ins for the
//! external services, real third-party servers (nginx, redis, an OAuth2 server), a
//! throwaway PKI and a small HTTP client.
//!
//! Everything here is blocking and owns its processes: [`Standin`], [`Envoy`] and the
//! others stop their child process on drop and, when dropped during a panic (a failing
//! test), print the tail of the child's log so the failure explains itself.
//!
//! Waiting is done one way ([`wait`]): poll for the condition with one generous deadline,
//! scaled by `$EGRESS_TEST_TIME_FACTOR`; a process that exits while waited for fails the wait
//! at once, with its log. A dependency that is not installed fails the test with the install
//! step ([`require`]); nothing is skipped.
//!
//! ```no_run
//! use egress_e2e::*;
//! # fn main() -> anyhow::Result<()> {
//! let pki = Pki::generate()?;
//! let notify = Standin::start(StandinOpts::new("notify").tls(pki.server()))?;
//! let (listen, admin) = (free_port()?, free_port()?);
//! let scratch = scratch_dir()?;
//! let bootstrap = scratch.path().join("envoy.yaml");
//! std::fs::write(&bootstrap, format!("...uses {listen}, {admin} and {}...", notify.port()))?;
//! let envoy = Envoy::start(&bootstrap, &[])?;
//! envoy.wait_ready(&format!("127.0.0.1:{admin}"))?;
//! let echo = get(&format!("http://127.0.0.1:{listen}/notify/email"))?.json()?;
//! assert_eq!(echo["path"], "/email");
//! # Ok(()) }
//! ```
//!
//! Behaviour parity is the test of the two engines (`egressctl compile --engine auto|wasm`):
//! behaviour tests take an [`Engine`] and [`engine_tests!`] runs each as `<test>::wasm` and
//! `<test>::auto`; `tests/parity.rs` sends the same requests through both and compares the
//! answers and the request-log lines. Tests about the filter's own internals (token fetching,
//! signing, the push listener, the refresher) render the wasm engine only, and say so.
//!
//! Requirements: `python3` (or `$PYTHON`) and `openssl` on PATH, Envoy (see
//! [`envoy_bin`]; `bash envoy/install.sh` installs it into `<repo>/.venv`), and for some
//! tests nginx, redis-server and node with `oidc-provider`
//! (`bash tests/support/install-test-deps.sh`).

pub use tempfile::TempDir;

mod bins;
pub use bins::{
    egressctl, envoy_bin, filter_wasm, free_port, repo_root, require, scratch_dir, target_dir,
    INSTALL_TEST_DEPS,
};
pub mod wait;
pub use wait::{patience, scaled, time_factor, wait_for, wait_until, Probe, PATIENCE};
mod process;
pub use process::log_tail;
mod pki;
pub use pki::{CertKey, Pki, CLIENT_CERT_CN};
mod http;
pub use http::{get, read_http1_reply, request, Request, Response};
mod standin;
pub use standin::{Standin, StandinOpts};
mod envoy;
pub use envoy::Envoy;
pub mod nginx;
pub use nginx::{nginx_bin, nginx_or_skip, require_nginx, Nginx, NginxOpts};
pub mod oauth;
pub use oauth::{
    jose_sign, node_bin, oauth_server_available, oauth_server_dir, oauth_server_or_skip,
    require_oauth_server, FailMode, OAuthClient, OAuthClientAuth, OAuthOpts, OAuthServer,
    OAUTH_TOKEN_PATH,
};
pub mod redis;
pub use redis::{redis_bin, require_redis, Redis};

use bins::find_on_path;
use process::Proc;
pub mod oauth2_proxy;
pub use oauth2_proxy::{
    bearer, now_unix_ms, output_text, OAuth2Proxy, OAuth2ProxyOpts, TargetAuth, TokenStore, CRM,
};
pub mod ctl;
pub use ctl::{
    compile_command, envoy_from_compile, status_json, target_status, token_refresh, Watcher,
};
mod engine;
#[doc(hidden)]
pub use anyhow;
pub use engine::{Engine, Outcome};
