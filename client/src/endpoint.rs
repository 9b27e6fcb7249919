//! Connect strings (`host1:2181,host2:2181/chroot`) and the host list.

use std::fmt;

use crate::error::{Error, Result};

/// ZooKeeper's default client port.
pub const DEFAULT_PORT: u16 = 2181;

/// One server address from a connect string: a host name or IP literal, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses a connect string: comma-separated `host[:port]` entries (IPv6 as `[addr]:port`), then
/// an optional chroot starting at the first `/`. Returns the hosts and the chroot.
pub(crate) fn parse_connect_string(s: &str) -> Result<(Vec<HostPort>, Option<String>)> {
    let bad = |why: &str| Error::InvalidArgument(format!("connect string {s:?}: {why}"));
    let (hosts_part, chroot) = match s.find('/') {
        Some(i) => (&s[..i], Some(s[i..].to_owned())),
        None => (s, None),
    };
    let mut hosts = Vec::new();
    for entry in hosts_part.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => DEFAULT_PORT,
                None => return Err(bad("junk after ']'")),
            };
            (addr.to_owned(), port)
        } else {
            match entry.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
                None => (entry.to_owned(), DEFAULT_PORT),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        hosts.push(HostPort { host, port });
    }
    if hosts.is_empty() {
        return Err(bad("no hosts"));
    }
    Ok((hosts, chroot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses() {
        let (h, c) = parse_connect_string("h1:2181,h2:2182/app").unwrap();
        assert_eq!(h, vec![hp("h1", 2181), hp("h2", 2182)]);
        assert_eq!(c.as_deref(), Some("/app"));
        let (h, c) = parse_connect_string("localhost").unwrap();
        assert_eq!(h, vec![hp("localhost", 2181)]);
        assert_eq!(c, None);
        let (h, _) = parse_connect_string("[::1]:2000,[fe80::1],10.0.0.1:5").unwrap();
        assert_eq!(
            h,
            vec![hp("::1", 2000), hp("fe80::1", 2181), hp("10.0.0.1", 5)]
        );
        assert_eq!(hp("::1", 2000).to_string(), "[::1]:2000");
        assert!(parse_connect_string("").is_err());
        assert!(parse_connect_string("/app").is_err());
        assert!(parse_connect_string("h:notaport").is_err());
        assert!(parse_connect_string("[::1:2181").is_err());
    }
}
