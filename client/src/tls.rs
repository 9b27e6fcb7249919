//! TLS settings: rustls (ring provider) with caller-chosen roots and an optional client
//! certificate.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, Result};

/// How to connect over TLS (to ZooKeeper's `secureClientPort`).
///
/// Certificates are verified against the roots given here only (no system roots): ZooKeeper
/// deployments normally use a private CA. The server name checked is the host from the connect
/// string (a DNS name or an IP address), unless [`TlsOptions::with_server_name`] overrides it.
///
/// ```no_run
/// # async fn demo() -> rookery_client::Result<()> {
/// use rookery_client::{Client, TlsOptions};
///
/// let ca = std::fs::read("ca.pem").expect("CA file");
/// let tls = TlsOptions::new().with_ca_pem(&ca)?;
/// let client = Client::builder("zk1.example:2281").tls(tls).connect().await?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Default)]
pub struct TlsOptions {
    roots: Vec<CertificateDer<'static>>,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    server_name: Option<String>,
}

impl Clone for TlsOptions {
    fn clone(&self) -> Self {
        TlsOptions {
            roots: self.roots.clone(),
            client_auth: self
                .client_auth
                .as_ref()
                .map(|(c, k)| (c.clone(), k.clone_key())),
            server_name: self.server_name.clone(),
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("roots", &self.roots.len())
            .field("client_auth", &self.client_auth.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsOptions {
    /// No roots yet: add at least one CA before connecting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts every certificate in a PEM bundle.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the PEM holds no certificate or does not parse.
    ///
    /// # Cancellation safety
    /// Not async.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidArgument(format!("CA PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::InvalidArgument("CA PEM holds no certificate".into()));
        }
        self.roots.extend(certs);
        Ok(self)
    }

    /// Trusts one DER-encoded certificate.
    pub fn with_ca_der(mut self, der: Vec<u8>) -> Self {
        self.roots.push(CertificateDer::from(der));
        self
    }

    /// Presents a client certificate (chain in PEM) with its private key (PEM, PKCS#8, PKCS#1
    /// or SEC1), for servers that require client authentication (ZooKeeper's default
    /// `ssl.clientAuth=need`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if either PEM does not parse or holds nothing usable.
    ///
    /// # Cancellation safety
    /// Not async.
    pub fn with_client_cert_pem(mut self, cert_chain: &[u8], key: &[u8]) -> Result<Self> {
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidArgument(format!("client certificate PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::InvalidArgument(
                "client certificate PEM holds no certificate".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| Error::InvalidArgument(format!("client key PEM: {e}")))?;
        self.client_auth = Some((certs, key));
        Ok(self)
    }

    /// Checks the server certificate against `name` instead of the connect-string host.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    pub(crate) fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The rustls configuration.
    pub(crate) fn build(&self) -> Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        for cert in &self.roots {
            roots
                .add(cert.clone())
                .map_err(|e| Error::InvalidArgument(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(Error::InvalidArgument(
                "TLS needs at least one CA certificate".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidArgument(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((certs, key)) => builder
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(|e| Error::InvalidArgument(format!("client certificate: {e}")))?,
        };
        Ok(Arc::new(config))
    }
}
