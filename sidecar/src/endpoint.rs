//! [`Endpoint`]: one instance of a service as the registry describes it, whatever format it
//! was written in.

use serde::{Deserialize, Serialize};

/// One instance of a service: where it listens and how much traffic it takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// Its id (the node's name).
    pub id: String,
    /// Host name or IP.
    pub host: String,
    /// Plain port.
    pub port: u16,
    /// TLS port, if any.
    pub ssl_port: Option<u16>,
    /// Relative weight, at least 1.
    pub weight: u32,
    /// Zone label, if any.
    pub zone: Option<String>,
    /// Whether it takes traffic (Curator's `enabled`, a serverset's `status == "ALIVE"`).
    pub enabled: bool,
}

impl Endpoint {
    /// `host:port` for the port a connection uses (`tls`: the TLS port).
    pub fn authority(&self, tls: bool) -> Option<String> {
        let port = if tls { self.ssl_port? } else { self.port };
        Some(if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        })
    }
}
