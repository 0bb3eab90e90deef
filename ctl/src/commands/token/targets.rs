//! Where `token refresh` pushes: fixed push listener URLs (`--proxy`) and DNS names
//! (`--proxy-dns NAME:PORT`) whose every A/AAAA record is a proxy, looked up again each round
//! so replicas that come and go are followed (in Kubernetes: a headless Service over the
//! Envoy pods' push port).

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

/// `--proxy-dns NAME:PORT`: every address NAME resolves to is a push listener on PORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsProxy {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?}: want NAME:PORT, e.g. egress-push.egress.svc:9902 (a DNS name whose every address is a push listener)")]
pub struct BadDnsProxy(String);

impl FromStr for DnsProxy {
    type Err = BadDnsProxy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDnsProxy(s.to_string());
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !host_ok || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for DnsProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

type LookupFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;
/// Resolves `NAME:PORT` to socket addresses (the system resolver; tests give their own).
pub type Lookup = Arc<dyn Fn(DnsProxy) -> LookupFuture + Send + Sync>;

/// The system resolver (getaddrinfo: A and AAAA records, /etc/hosts, search domains).
pub fn system_lookup() -> Lookup {
    Arc::new(|d: DnsProxy| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((d.host.as_str(), d.port))
                .await?
                .collect())
        })
    })
}

/// Every proxy `token refresh` pushes to.
pub struct Proxies {
    pub fixed: Vec<String>,
    pub dns: Vec<DnsProxy>,
    pub lookup: Lookup,
}

/// One round's proxies, and the names that did not resolve (with why).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub urls: Vec<String>,
    pub failed: Vec<String>,
}

impl Proxies {
    /// The fixed URLs, then `http://ADDR` for each address of each name (sorted, no
    /// duplicates). A name with no address is a failure, named in [`Resolved::failed`].
    pub async fn resolve(&self) -> Resolved {
        let mut out = Resolved {
            urls: self.fixed.clone(),
            failed: Vec::new(),
        };
        for d in &self.dns {
            match (self.lookup)(d.clone()).await {
                Ok(addrs) if !addrs.is_empty() => {
                    let set: BTreeSet<SocketAddr> = addrs.into_iter().collect();
                    for a in set {
                        let url = format!("http://{a}");
                        if !out.urls.contains(&url) {
                            out.urls.push(url);
                        }
                    }
                }
                Ok(_) => out.failed.push(format!("{d}: no address")),
                Err(e) => out.failed.push(format!("{d}: {e}")),
            }
        }
        out
    }

    /// For messages: what is pushed to.
    pub fn describe(&self) -> String {
        self.fixed
            .iter()
            .cloned()
            .chain(self.dns.iter().map(|d| format!("every address of {d}")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn proxy_dns_takes_name_and_port_only() {
        let d: DnsProxy = "egress-push.egress.svc:9902".parse().unwrap();
        assert_eq!(d.host, "egress-push.egress.svc");
        assert_eq!(d.port, 9902);
        for bad in [
            "egress-push",
            "http://egress:9902",
            "a:0",
            "a:65536",
            ":9902",
            "a..b:1",
            "-a:1",
        ] {
            assert!(bad.parse::<DnsProxy>().is_err(), "{bad}");
        }
    }

    fn fake(map: Arc<Mutex<Vec<SocketAddr>>>) -> Lookup {
        Arc::new(move |d: DnsProxy| {
            let addrs = map.lock().unwrap().clone();
            Box::pin(async move {
                if d.host == "proxies.test" {
                    Ok(addrs)
                } else {
                    Err(std::io::Error::other("no such host"))
                }
            })
        })
    }

    #[tokio::test]
    async fn every_address_of_a_name_is_a_proxy_and_each_round_looks_again() {
        let addrs = Arc::new(Mutex::new(vec![
            "[::1]:9902".parse().unwrap(),
            "127.0.0.1:9902".parse().unwrap(),
            "127.0.0.1:9902".parse().unwrap(),
        ]));
        let p = Proxies {
            fixed: vec!["http://10.0.0.9:9902".into()],
            dns: vec!["proxies.test:9902".parse().unwrap()],
            lookup: fake(addrs.clone()),
        };
        let r = p.resolve().await;
        assert_eq!(
            r.urls,
            vec![
                "http://10.0.0.9:9902",
                "http://127.0.0.1:9902",
                "http://[::1]:9902"
            ]
        );
        assert!(r.failed.is_empty());
        // A replica went away, another came.
        *addrs.lock().unwrap() = vec!["127.0.0.2:9902".parse().unwrap()];
        assert_eq!(
            p.resolve().await.urls,
            vec!["http://10.0.0.9:9902", "http://127.0.0.2:9902"]
        );
        *addrs.lock().unwrap() = vec![];
        let r = p.resolve().await;
        assert_eq!(r.failed, vec!["proxies.test:9902: no address"]);
        let p = Proxies {
            fixed: vec![],
            dns: vec!["nowhere.test:1".parse().unwrap()],
            lookup: fake(addrs),
        };
        assert_eq!(
            p.resolve().await.failed,
            vec!["nowhere.test:1: no such host"]
        );
    }

    #[tokio::test]
    async fn the_system_resolver_finds_localhost() {
        let p = Proxies {
            fixed: vec![],
            dns: vec!["localhost:9902".parse().unwrap()],
            lookup: system_lookup(),
        };
        let r = p.resolve().await;
        assert!(
            r.urls.contains(&"http://127.0.0.1:9902".to_string()),
            "{r:?}"
        );
    }
}
