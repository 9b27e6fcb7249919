//! Host name resolution with hickory-resolver (not libc): `/etc/resolv.conf` for name servers,
//! `/etc/hosts` (plus an optional extra hosts file) through hickory's hosts support. IP
//! literals are used as they are.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_resolver::config::{ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Hosts, Resolver as HickoryResolver, TokioResolver};

/// A resolver bound to the current tokio runtime.
pub struct Resolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// Reads the system configuration (falling back to hosts files only when there is no usable
    /// resolv.conf). `extra_hosts` is read on top of `/etc/hosts`. Must run inside a tokio
    /// runtime.
    pub fn new(extra_hosts: Option<&Path>) -> io::Result<Self> {
        let mut builder = match TokioResolver::builder_tokio() {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "no usable resolv.conf; resolving from hosts files only");
                HickoryResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
                    TokioRuntimeProvider::default(),
                )
            }
        };
        builder.options_mut().use_hosts_file = ResolveHosts::Always;
        let mut inner = builder.build().map_err(io::Error::other)?;
        if let Some(path) = extra_hosts {
            let mut hosts = Hosts::from_system().unwrap_or_default();
            hosts.read_hosts_conf(std::fs::File::open(path)?)?;
            inner.set_hosts(Arc::new(hosts));
        }
        Ok(Resolver { inner })
    }

    /// The addresses of `host`, in the resolver's order.
    pub async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let lookup = self.inner.lookup_ip(host).await.map_err(|e| {
            io::Error::new(io::ErrorKind::NotFound, format!("resolving {host}: {e}"))
        })?;
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no addresses"),
            ));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_come_from_hosts_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(
            &path,
            "127.0.0.9 zk-a.rookery.test\n::1 zk-b.rookery.test\n",
        )
        .unwrap();
        let r = Resolver::new(Some(&path)).unwrap();
        assert_eq!(
            r.resolve("zk-a.rookery.test").await.unwrap(),
            vec!["127.0.0.9".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            r.resolve("zk-b.rookery.test").await.unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        // /etc/hosts still applies, and IP literals need no lookup.
        assert!(r
            .resolve("localhost")
            .await
            .unwrap()
            .iter()
            .any(|a| a.is_loopback()));
        assert_eq!(
            r.resolve("10.1.2.3").await.unwrap(),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
    }
}
