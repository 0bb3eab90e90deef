//! A target's base URL: `scheme://host[:port][/base/path]`, nothing else.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A parsed target URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetUrl {
    pub scheme: Scheme,
    /// Host name or IP address; IPv6 without brackets.
    pub host: String,
    /// The port connected to (the scheme's default when the URL has none).
    pub port: u16,
    /// Whether the URL spelled the port out.
    pub explicit_port: bool,
    /// The base path without a trailing slash (`""` for the root).
    pub base_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("URL must start with http:// or https://")]
    Scheme,
    #[error("URL has no host")]
    NoHost,
    #[error("URL host {0:?} is not a valid host name or IP address")]
    BadHost(String),
    #[error("URL port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    #[error("URL must not carry user info, a query or a fragment")]
    Extra,
    #[error(
        "URL path {0:?} contains characters or segments that are not allowed (., .., //, %, \\)"
    )]
    BadPath(String),
}

impl TargetUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = if let Some(r) = text.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            return Err(UrlError::Scheme);
        };
        if rest.contains(['?', '#', '@']) {
            return Err(UrlError::Extra);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(UrlError::NoHost);
        }
        let (host, port) = split_host_port(authority)?;
        validate_host(host)?;
        let explicit_port = port.is_some();
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(UrlError::BadPort(p.to_string())),
            },
            None => scheme.default_port(),
        };
        let base_path = path.trim_end_matches('/').to_string();
        if base_path
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            || base_path.contains(['%', '\\'])
            || base_path.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(UrlError::BadPath(path.to_string()));
        }
        Ok(Self {
            scheme,
            host: host.to_string(),
            port,
            explicit_port,
            base_path,
        })
    }

    /// The `:authority` the upstream sees: host, plus the port when it is not the default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `scheme://authority`: the one place it is built (logs, explain, routes, token calls).
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority())
    }

    /// [`TargetUrl::origin`] followed by `path` (which starts with `/` or is empty).
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// `scheme://authority` followed by the base path: what the logs call the target URL prefix.
    pub fn origin_and_base(&self) -> String {
        self.url_for(&self.base_path)
    }

    /// Whether the host is an IP literal (Envoy connects with a STATIC cluster, no DNS).
    pub fn host_is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), UrlError> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or(UrlError::BadHost(authority.to_string()))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        if after.is_empty() {
            return Ok((host, None));
        }
        let port = after
            .strip_prefix(':')
            .ok_or(UrlError::BadHost(authority.to_string()))?;
        return Ok((host, Some(port)));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((authority, None)),
    }
}

fn validate_host(host: &str) -> Result<(), UrlError> {
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if crate::config::text::is_dns_name(host) {
        Ok(())
    } else {
        Err(UrlError::BadHost(host.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_target_urls() {
        let u = TargetUrl::parse("https://mycompany.salesforce.com/services/data/v58.0").unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.host, "mycompany.salesforce.com");
        assert_eq!(u.port, 443);
        assert_eq!(u.base_path, "/services/data/v58.0");
        assert_eq!(u.authority(), "mycompany.salesforce.com");

        let erp = TargetUrl::parse("https://erp.internal:8443/api").unwrap();
        assert_eq!(erp.port, 8443);
        assert_eq!(erp.authority(), "erp.internal:8443");
        assert_eq!(erp.origin_and_base(), "https://erp.internal:8443/api");
        assert_eq!(erp.origin(), "https://erp.internal:8443");
        assert_eq!(erp.url_for("/x"), "https://erp.internal:8443/x");

        let n = TargetUrl::parse("https://notify.internal.svc").unwrap();
        assert_eq!(n.base_path, "");
        let t = TargetUrl::parse("http://127.0.0.1:9000/").unwrap();
        assert!(t.host_is_ip());
        assert_eq!(t.base_path, "");
        let v6 = TargetUrl::parse("http://[::1]:9000/x").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.authority(), "[::1]:9000");
    }

    #[test]
    fn rejects_urls_that_are_not_a_plain_base() {
        for bad in [
            "ftp://x",
            "notaurl",
            "https://",
            "https://user:pw@host/",
            "https://host/?q=1",
            "https://host:0/",
            "https://host:99999/",
            "https://host:abc/",
            "https://ho st/",
            "https://host/a/../b",
            "https://host/a//b",
            "https://host/a%2fb",
        ] {
            assert!(TargetUrl::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
