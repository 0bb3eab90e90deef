//! `moto_server` (PyPI `moto[server]`, installed by tests/support/install-cloud-deps.sh into
//! `<repo>/.venv-cloud`): the AWS stand-in of the cloud tests. With IAM authentication
//! enforced it checks every SigV4 signature with botocore (SignatureDoesNotMatch otherwise).

use anyhow::{bail, Context, Result};
use egress_e2e::{free_port, repo_root, scratch_dir, Request};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_DEADLINE: Duration = Duration::from_secs(90);

/// A running moto server, killed on drop (by its own pid).
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// An IAM user's access key, created while moto still accepts unsigned setup calls.
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

fn moto_bin() -> Result<PathBuf> {
    let bin = repo_root().join(".venv-cloud/bin/moto_server");
    if !bin.is_file() {
        bail!(
            "{} is missing: run `bash tests/support/install-cloud-deps.sh`",
            bin.display()
        );
    }
    Ok(bin)
}

impl Moto {
    /// Starts moto. `enforce_after`: `Some(n)` enforces IAM authentication once `n` setup
    /// calls are spent; `None` never enforces (an STS that answers unsigned calls).
    pub fn start(enforce_after: Option<u32>) -> Result<Moto> {
        let dir = scratch_dir()?;
        let port = free_port()?;
        let log = dir.path().join("moto.log");
        let out = std::fs::File::create(&log).context("creating the moto log")?;
        let mut cmd = Command::new(moto_bin()?);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let Some(n) = enforce_after {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd.spawn().context("starting moto_server")?;
        let mut moto = Moto {
            child,
            port,
            log,
            _dir: dir,
        };
        // Ready when it accepts connections (an HTTP probe could spend a setup call).
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(moto);
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                bail!("moto_server exited ({status}):\n{}", moto.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "moto_server not listening after {START_DEADLINE:?}:\n{}",
                    moto.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An IAM query-API call sent before enforcement starts (the signature is not checked
    /// then; the header only names the service for moto's dispatcher). Counts as one setup
    /// call.
    pub fn setup_call(&self, form: &[(&str, &str)]) -> Result<String> {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let r = Request::post(&format!("{}/", self.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.join("&"))
            .send()?;
        if r.status != 200 {
            bail!("moto setup call {form:?}: {} {}", r.status, r.body);
        }
        Ok(r.body)
    }

    /// Three setup calls: an IAM user, its access key, and a policy allowing everything.
    pub fn create_user_with_key(&self, user: &str) -> Result<AccessKey> {
        self.setup_call(&[
            ("Action", "CreateUser"),
            ("Version", "2010-05-08"),
            ("UserName", user),
        ])?;
        let xml = self.setup_call(&[
            ("Action", "CreateAccessKey"),
            ("Version", "2010-05-08"),
            ("UserName", user),
        ])?;
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        self.setup_call(&[
            ("Action", "PutUserPolicy"),
            ("Version", "2010-05-08"),
            ("UserName", user),
            ("PolicyName", "all"),
            ("PolicyDocument", policy),
        ])?;
        Ok(AccessKey {
            id: xml_text(&xml, "AccessKeyId").context("AccessKeyId in CreateAccessKey")?,
            secret: xml_text(&xml, "SecretAccessKey")
                .context("SecretAccessKey in CreateAccessKey")?,
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- moto log ----\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// The text of the first `<tag>...</tag>`.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_string())
}

/// Form/query encoding of one value (unreserved bytes kept, the rest `%XX`).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
