//! What the token manager reports: counters, error lines and its structured log.

use super::super::shared::UpdateError;
use super::super::TokenHost;
use super::TokenManager;
use crate::plan::LogLevel;
use crate::tokens::time::rfc3339;

impl TokenManager {
    /// Counts a request answered 503 for want of a token.
    pub fn count_unavailable(&mut self, host: &dyn TokenHost, target: usize) {
        if let Some(name) = self
            .slot_of(target)
            .and_then(|i| self.slots.get(i))
            .map(|s| s.target.name.clone())
        {
            self.count(host, &format!("egress.{name}.credentials_unavailable"));
        }
    }

    /// Counts a request refused for its caller: `egress.<target>.caller_refused_401` or
    /// `..._403`.
    pub fn count_caller_refused(&mut self, host: &dyn TokenHost, target: &str, status: u16) {
        self.count(host, &format!("egress.{target}.caller_refused_{status}"));
    }

    pub(super) fn count_conflicts(&mut self, host: &dyn TokenHost, name: &str, conflicts: u32) {
        for _ in 0..conflicts {
            self.count(host, &format!("egress.{name}.shared_data_conflicts"));
        }
    }

    pub(super) fn update_failed(
        &mut self,
        host: &dyn TokenHost,
        name: &str,
        what: &str,
        e: &UpdateError,
    ) {
        self.count_conflicts(host, name, e.conflicts());
        self.count(host, &format!("egress.{name}.shared_data_errors"));
        self.error(
            host,
            name,
            &format!("Shared data update failed: {what}"),
            &e.to_string(),
        );
    }

    pub(super) fn error(&self, host: &dyn TokenHost, name: &str, msg: &str, detail: &str) {
        let line = serde_json::json!({
            "level": "error", "msg": msg, "target": name, "detail": detail, "type": "oauth2",
        });
        host.log(LogLevel::Error, &line.to_string());
    }

    pub(super) fn count(&mut self, host: &dyn TokenHost, name: &str) {
        let id = match self.counters.get(name) {
            Some(id) => Some(*id),
            None => match host.define_counter(name) {
                Ok(id) => {
                    self.counters.insert(name.to_string(), id);
                    Some(id)
                }
                Err(e) => {
                    host.log(LogLevel::Debug, &format!("egress: counter {name}: {e}"));
                    None
                }
            },
        };
        if let Some(id) = id {
            if let Err(e) = host.increment(id) {
                host.log(LogLevel::Debug, &format!("egress: counter {name}: {e}"));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn log(
        &self,
        host: &dyn TokenHost,
        level: LogLevel,
        target: &str,
        msg: &str,
        now: u64,
        expires_at_ms: Option<u64>,
    ) {
        if self.log_level > level {
            return;
        }
        let mut line = serde_json::json!({
            "level": level.as_str(),
            "ts": rfc3339(now),
            "msg": msg,
            "target": target,
            "type": "oauth2",
        });
        if let (Some(exp), Some(fields)) = (expires_at_ms, line.as_object_mut()) {
            fields.insert("expires_at".into(), serde_json::Value::String(rfc3339(exp)));
        }
        host.log(level, &line.to_string());
    }
}
