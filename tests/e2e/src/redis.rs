//! A throwaway `redis-server` for the `token_store: redis` tests: a free loopback port, no
//! persistence, stopped on drop.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::wait::Probe;
use crate::{free_port, require, scratch_dir, Proc, TempDir};

/// The redis-server binary: `$REDIS_SERVER_BIN`, else `redis-server` on `PATH`, `/usr/bin` or
/// `/usr/sbin`.
pub fn redis_bin() -> Result<PathBuf> {
    if let Some(b) = std::env::var_os("REDIS_SERVER_BIN") {
        return Ok(PathBuf::from(b));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("no redis-server (REDIS_SERVER_BIN, PATH, /usr/bin, /usr/sbin)"))
}

/// The redis-server binary, or an error naming the install step (never a skip).
pub fn require_redis() -> Result<PathBuf> {
    require("redis-server", redis_bin())
}

/// A running redis-server on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct Redis {
    proc: Proc,
    port: u16,
    _dir: TempDir,
}

impl Redis {
    /// Starts redis-server on a free port and waits until it answers `PING`.
    pub fn start() -> Result<Redis> {
        let bin = require_redis()?;
        let dir = scratch_dir()?;
        let port = free_port()?;
        let log = dir.path().join("redis.log");
        let out = File::create(&log).context("creating the redis log")?;
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().context("cloning the log handle")?)
            .stderr(out)
            .spawn()
            .context("starting redis-server")?;
        let redis = Redis {
            proc: Proc::new(format!("redis-server (port {port})"), child, log),
            port,
            _dir: dir,
        };
        redis.proc.wait_ready(|| {
            Ok(match redis.command("PING") {
                Ok(reply) if reply == "+PONG" => Probe::Ready(()),
                Ok(reply) => Probe::Pending(format!("PING: {reply}")),
                Err(e) => Probe::Pending(format!("{e:#}")),
            })
        })?;
        Ok(redis)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One inline command; the first line of the reply (e.g. `+PONG`, `:1`).
    pub fn command(&self, cmd: &str) -> Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .with_context(|| format!("connecting to redis on port {}", self.port))?;
        s.set_read_timeout(Some(crate::scaled(Duration::from_secs(10))))?;
        s.write_all(format!("{cmd}\r\n").as_bytes())?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(buf.get(..n).unwrap_or_default())
            .lines()
            .next()
            .unwrap_or("")
            .to_string())
    }

    /// Stops redis now (also done on drop).
    pub fn stop(self) -> Result<()> {
        self.proc.stop()
    }
}
