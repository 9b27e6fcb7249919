//! TLS for the secure client port and for the quorum: ZooKeeper's `ssl.*` and `ssl.quorum.*`
//! key and trust stores loaded into rustls, and loaded again when their files change.
//!
//! Stores are PEM (`ssl.keyStore.type=PEM`: one file holding the private key and its
//! certificate chain; a trust store of CA certificates) or PKCS12. Java's JKS is refused with a
//! message saying how to convert it. Certificates are checked against the configured trust store
//! only, never the system's roots, and never by a reverse DNS lookup of the peer's address.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// The largest store file read, in bytes: stores hold a few certificates, not megabytes.
const MAX_STORE_BYTES: u64 = 1 << 20;

/// How often the store files are checked for changes, in ms.
pub const RELOAD_CHECK_MS: u64 = 1000;

/// A TLS setting or store that cannot be used. Messages name files and keys, never passwords.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A store file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which store.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A store's contents are unusable.
    #[error("{what} {path}: {reason}")]
    Store {
        /// Which store.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The settings do not fit together.
    #[error("{0}")]
    Settings(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A store's file format (`ssl.keyStore.type`, `ssl.trustStore.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    /// PEM: certificates, and for a key store the private key, in one file.
    Pem,
    /// PKCS12 (`.p12`, `.pfx`).
    Pkcs12,
}

impl StoreType {
    /// Parses a `*.type` value, as ZooKeeper's `KeyStoreFileType` does (case-insensitive).
    pub fn parse(value: &str) -> Result<StoreType, String> {
        match value.to_ascii_uppercase().as_str() {
            "PEM" => Ok(StoreType::Pem),
            "PKCS12" => Ok(StoreType::Pkcs12),
            "JKS" | "BCFKS" => Err(format!(
                "{value} stores are Java-only; convert with `keytool -importkeystore \
                 -deststoretype PKCS12` or use PEM"
            )),
            _ => Err("expected PEM or PKCS12".into()),
        }
    }

    /// The type a file's extension implies, as ZooKeeper infers it when `*.type` is absent.
    pub fn from_path(path: &Path) -> Result<StoreType, String> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "pem" | "crt" | "key" => Ok(StoreType::Pem),
            "p12" | "pfx" => Ok(StoreType::Pkcs12),
            "jks" => StoreType::parse("JKS"),
            _ => Err("cannot tell the store type from the file name; set the *.type key".into()),
        }
    }
}

/// A password from the configuration; it never appears in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The password itself, for the code that decrypts a store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One key or trust store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// `*.location`.
    pub location: PathBuf,
    /// `*.type`, or what the file name implies.
    pub kind: StoreType,
    /// `*.password` (or the contents of `*.passwordPath`).
    pub password: Option<Secret>,
}

/// Whether the server asks for client certificates (`ssl.clientAuth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asked for.
    None,
    /// Asked for; a client without one is still served (without an x509 identity).
    Want,
    /// Required: ZooKeeper's default.
    Need,
}

/// The settings behind one TLS endpoint: the secure client port (`ssl.*`) or the quorum
/// (`ssl.quorum.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `*.keyStore.*`: this server's certificate chain and private key.
    pub key_store: Option<Store>,
    /// `*.trustStore.*`: the CAs that peers' certificates must chain to.
    pub trust_store: Option<Store>,
    /// `*.clientAuth`.
    pub client_auth: ClientAuth,
    /// `*.enabledProtocols` or `*.protocol`: TLSv1.2 and/or TLSv1.3 (both by default).
    pub tls12: bool,
    /// See `tls12`.
    pub tls13: bool,
    /// `*.hostnameVerification`: whether a server's certificate must name the host dialled
    /// (the quorum's outgoing connections; on by default, as in ZooKeeper).
    pub hostname_verification: bool,
    /// `*.handshakeDetectionTimeoutMillis`: how long a TLS handshake may take, in ms.
    pub handshake_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            key_store: None,
            trust_store: None,
            client_auth: ClientAuth::Need,
            tls12: true,
            tls13: true,
            hostname_verification: true,
            handshake_timeout_ms: 5000,
        }
    }
}

/// The `*.keyStore.*`/`*.trustStore.*` keys as read, before they are checked together.
#[derive(Debug, Default)]
pub struct SettingsBuilder {
    settings: Settings,
    key: StoreKeys,
    trust: StoreKeys,
}

#[derive(Debug, Default)]
struct StoreKeys {
    location: Option<PathBuf>,
    kind: Option<StoreType>,
    password: Option<Secret>,
    password_path: Option<PathBuf>,
}

impl SettingsBuilder {
    /// Takes one key with its `ssl.` or `ssl.quorum.` prefix removed. `Ok(false)`: not a key of
    /// ours (the caller warns); `Err`: a bad value, described without echoing secrets.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, String> {
        let value = value.trim();
        match key {
            "keyStore.location" => self.key.location = Some(PathBuf::from(value)),
            "keyStore.type" => self.key.kind = Some(StoreType::parse(value)?),
            "keyStore.password" => self.key.password = Some(Secret::new(value)),
            "keyStore.passwordPath" => self.key.password_path = Some(PathBuf::from(value)),
            "trustStore.location" => self.trust.location = Some(PathBuf::from(value)),
            "trustStore.type" => self.trust.kind = Some(StoreType::parse(value)?),
            "trustStore.password" => self.trust.password = Some(Secret::new(value)),
            "trustStore.passwordPath" => self.trust.password_path = Some(PathBuf::from(value)),
            "clientAuth" => {
                self.settings.client_auth = match value.to_ascii_lowercase().as_str() {
                    "none" => ClientAuth::None,
                    "want" => ClientAuth::Want,
                    "need" => ClientAuth::Need,
                    _ => return Err("expected none, want or need".into()),
                }
            }
            "protocol" | "enabledProtocols" => {
                let (mut tls12, mut tls13) = (false, false);
                for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    match p {
                        "TLSv1.2" => tls12 = true,
                        // ZooKeeper's `ssl.protocol=TLSv1.3` still lets the JVM fall back to 1.2.
                        "TLSv1.3" if key == "protocol" => (tls12, tls13) = (true, true),
                        "TLSv1.3" => tls13 = true,
                        "TLS" => (tls12, tls13) = (true, true),
                        _ => return Err(format!("{p} is not supported (TLSv1.2 or TLSv1.3)")),
                    }
                }
                if !tls12 && !tls13 {
                    return Err("no protocol given".into());
                }
                self.settings.tls12 = tls12;
                self.settings.tls13 = tls13;
            }
            "hostnameVerification" => {
                self.settings.hostname_verification = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err("expected true or false".into()),
                }
            }
            "handshakeDetectionTimeoutMillis" => {
                self.settings.handshake_timeout_ms = value
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .ok_or("expected a positive number of ms")?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the keys together; `what` names the endpoint in messages.
    pub fn build(self, what: &str) -> Result<Settings, String> {
        let mut settings = self.settings;
        settings.key_store = self.key.into_store(&format!("{what}.keyStore"))?;
        settings.trust_store = self.trust.into_store(&format!("{what}.trustStore"))?;
        if settings.key_store.is_none() {
            return Err(format!("{what}.keyStore.location is required"));
        }
        if settings.client_auth != ClientAuth::None && settings.trust_store.is_none() {
            return Err(format!(
                "{what}.trustStore.location is required to check client certificates \
                 ({what}.clientAuth is want or need)"
            ));
        }
        Ok(settings)
    }
}

impl StoreKeys {
    fn into_store(self, prefix: &str) -> Result<Option<Store>, String> {
        let Some(location) = self.location else {
            return Ok(None);
        };
        let kind = match self.kind {
            Some(k) => k,
            None => StoreType::from_path(&location).map_err(|e| format!("{prefix}: {e}"))?,
        };
        let password = match (self.password, self.password_path) {
            (Some(p), _) => Some(p),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("{prefix}.passwordPath: cannot read {}: {e}", path.display())
                })?;
                Some(Secret::new(text.trim_end_matches(['\r', '\n'])))
            }
            (None, None) => None,
        };
        Ok(Some(Store {
            location,
            kind,
            password,
        }))
    }
}

fn read_store(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_err = |source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_STORE_BYTES {
        return Err(store_err(what, path, "larger than 1 MiB; not a store"));
    }
    std::fs::read(path).map_err(read_err)
}

fn store_err(what: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Store {
        what,
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn open_pkcs12(
    what: &'static str,
    store: &Store,
    data: &[u8],
) -> Result<p12_keystore::KeyStore, TlsError> {
    let password = store.password.as_ref().map_or("", |p| p.expose());
    // The crate's error can quote the store's structure but never the password.
    p12_keystore::KeyStore::from_pkcs12(data, password).map_err(|e| {
        store_err(
            what,
            &store.location,
            format!("not a readable PKCS12 store (wrong password?): {e}"),
        )
    })
}

/// Reads a key store: the certificate chain (leaf first) and its private key.
pub fn load_identity(
    store: &Store,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    const WHAT: &str = "key store";
    let data = read_store(WHAT, &store.location)?;
    let (chain, key) = match store.kind {
        StoreType::Pem => {
            let chain = CertificateDer::pem_slice_iter(&data)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| store_err(WHAT, &store.location, format!("bad PEM: {e}")))?;
            let key = match PrivateKeyDer::from_pem_slice(&data) {
                Ok(k) => k,
                Err(_) if contains(&data, b"ENCRYPTED PRIVATE KEY") => {
                    return Err(store_err(
                        WHAT,
                        &store.location,
                        "encrypted PEM private keys are not supported; use an unencrypted \
                         key (protected by file permissions) or a PKCS12 store",
                    ))
                }
                Err(_) => {
                    return Err(store_err(
                        WHAT,
                        &store.location,
                        "no private key in the file",
                    ))
                }
            };
            (chain, key)
        }
        StoreType::Pkcs12 => {
            let ks = open_pkcs12(WHAT, store, &data)?;
            let Some((_, entry)) = ks.private_key_chain() else {
                return Err(store_err(WHAT, &store.location, "no private key entry"));
            };
            let chain = entry
                .chain()
                .iter()
                .map(|c| CertificateDer::from(c.as_der().to_vec()))
                .collect();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(entry.key().to_vec()));
            (chain, key)
        }
    };
    if chain.is_empty() {
        return Err(store_err(
            WHAT,
            &store.location,
            "no certificate in the file",
        ));
    }
    Ok((chain, key))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads a trust store: the CA certificates that peers' certificates must chain to.
pub fn load_roots(store: &Store) -> Result<RootCertStore, TlsError> {
    const WHAT: &str = "trust store";
    let data = read_store(WHAT, &store.location)?;
    let certs: Vec<CertificateDer<'static>> = match store.kind {
        StoreType::Pem => CertificateDer::pem_slice_iter(&data)
            .collect::<Result<_, _>>()
            .map_err(|e| store_err(WHAT, &store.location, format!("bad PEM: {e}")))?,
        StoreType::Pkcs12 => {
            let ks = open_pkcs12(WHAT, store, &data)?;
            ks.entries()
                .flat_map(|(_, entry)| match entry {
                    p12_keystore::KeyStoreEntry::Certificate(c) => vec![c.as_der().to_vec()],
                    p12_keystore::KeyStoreEntry::PrivateKeyChain(k) => {
                        k.chain().iter().map(|c| c.as_der().to_vec()).collect()
                    }
                    #[allow(unreachable_patterns)]
                    _ => Vec::new(),
                })
                .map(CertificateDer::from)
                .collect()
        }
    };
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(store_err(WHAT, &store.location, "no usable CA certificate"));
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn versions(s: &Settings) -> Vec<&'static SupportedProtocolVersion> {
    let mut v = Vec::with_capacity(2);
    if s.tls13 {
        v.push(&rustls::version::TLS13);
    }
    if s.tls12 {
        v.push(&rustls::version::TLS12);
    }
    v
}

/// The rustls server configuration for `s` (the secure client port, or a quorum member's
/// accepting side).
pub fn server_config(s: &Settings) -> Result<ServerConfig, TlsError> {
    let key_store = s
        .key_store
        .as_ref()
        .ok_or_else(|| TlsError::Settings("no key store".into()))?;
    let (chain, key) = load_identity(key_store)?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(&versions(s))?;
    let builder = match (s.client_auth, &s.trust_store) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Settings(
                "a trust store is required to check client certificates".into(),
            ))
        }
        (auth, Some(trust)) => {
            let roots = Arc::new(load_roots(trust)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if auth == ClientAuth::Want {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Settings(format!("client certificate verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(builder.with_single_cert(chain, key)?)
}

/// The rustls client configuration for `s`: a quorum member dialling another, presenting its
/// own certificate and checking the other's against the trust store.
pub fn client_config(s: &Settings) -> Result<ClientConfig, TlsError> {
    let key_store = s
        .key_store
        .as_ref()
        .ok_or_else(|| TlsError::Settings("no key store".into()))?;
    let trust = s
        .trust_store
        .as_ref()
        .ok_or_else(|| TlsError::Settings("no trust store".into()))?;
    let (chain, key) = load_identity(key_store)?;
    let roots = Arc::new(load_roots(trust)?);
    let builder =
        ClientConfig::builder_with_provider(provider()).with_protocol_versions(&versions(s))?;
    let builder = if s.hostname_verification {
        builder.with_root_certificates(roots)
    } else {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError::Settings(format!("server certificate verifier: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(inner)))
    };
    Ok(builder.with_client_auth_cert(chain, key)?)
}

/// A server verifier that checks the chain but not the name (`hostnameVerification=false`).
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A configuration built from store files, rebuilt when they change on disk: a renewed
/// certificate takes effect for new connections without a restart, and a broken renewal
/// keeps the previous configuration (with a warning) instead of taking the port down.
pub struct Reloading<T> {
    current: ArcSwap<T>,
    build: Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>,
    files: Vec<PathBuf>,
    stamp: Mutex<Vec<Option<(SystemTime, u64)>>>,
    what: &'static str,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the first configuration; an error here is a configuration error.
    pub fn new(
        what: &'static str,
        s: &Settings,
        build: impl Fn(&Settings) -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let files: Vec<PathBuf> = [&s.key_store, &s.trust_store]
            .into_iter()
            .flatten()
            .map(|st| st.location.clone())
            .collect();
        let stamp = stamps(&files);
        let first = build(s)?;
        let s = s.clone();
        Ok(Arc::new(Reloading {
            current: ArcSwap::from_pointee(first),
            build: Box::new(move || build(&s)),
            files,
            stamp: Mutex::new(stamp),
            what,
        }))
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Rebuilds the configuration if a store file changed since the last look.
    pub fn check(&self) {
        let now = stamps(&self.files);
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == now {
            return;
        }
        *last = now;
        match (self.build)() {
            Ok(next) => {
                self.current.store(Arc::new(next));
                tracing::info!(what = self.what, "TLS certificates reloaded");
            }
            Err(e) => {
                tracing::warn!(what = self.what, error = %e, "TLS certificates changed but cannot be loaded; keeping the previous ones");
            }
        }
    }

    /// Checks the files every [`RELOAD_CHECK_MS`] until `shutdown`.
    pub fn watch(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(RELOAD_CHECK_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let Some(me) = me.upgrade() else { return };
                // Reading and parsing stores is blocking file I/O.
                let _ = tokio::task::spawn_blocking(move || me.check()).await;
            }
        });
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// Why a TLS handshake did not complete, for the connection's log line.
pub async fn handshake<IO>(
    acceptor: tokio_rustls::TlsAcceptor,
    io: IO,
    timeout_ms: u64,
) -> Result<tokio_rustls::server::TlsStream<IO>, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(Duration::from_millis(timeout_ms), acceptor.accept(io)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
        Err(_) => Err("TLS handshake timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_types_follow_zookeepers_names_and_extensions() {
        assert_eq!(StoreType::parse("pem"), Ok(StoreType::Pem));
        assert_eq!(StoreType::parse("PKCS12"), Ok(StoreType::Pkcs12));
        assert!(StoreType::parse("JKS").unwrap_err().contains("keytool"));
        assert_eq!(
            StoreType::from_path(Path::new("/x/server.P12")),
            Ok(StoreType::Pkcs12)
        );
        assert_eq!(
            StoreType::from_path(Path::new("/x/server.pem")),
            Ok(StoreType::Pem)
        );
        assert!(StoreType::from_path(Path::new("/x/server")).is_err());
    }

    #[test]
    fn settings_need_a_key_store_and_a_trust_store_for_client_auth() {
        let mut b = SettingsBuilder::default();
        assert_eq!(b.set("keyStore.location", "/k.pem"), Ok(true));
        assert_eq!(b.set("keyStore.password", "hunter2"), Ok(true));
        assert_eq!(b.set("bogus", "x"), Ok(false));
        let err = b.build("ssl").unwrap_err();
        assert!(err.contains("ssl.trustStore.location"), "{err}");

        let mut b = SettingsBuilder::default();
        b.set("clientAuth", "none").unwrap();
        assert!(b.build("ssl").unwrap_err().contains("keyStore.location"));

        let mut b = SettingsBuilder::default();
        b.set("keyStore.location", "/k.pem").unwrap();
        b.set("keyStore.password", "hunter2").unwrap();
        b.set("clientAuth", "WANT").unwrap();
        b.set("trustStore.location", "/t.pem").unwrap();
        b.set("enabledProtocols", "TLSv1.3").unwrap();
        let s = b.build("ssl").unwrap();
        assert_eq!(s.client_auth, ClientAuth::Want);
        assert!(s.tls13 && !s.tls12);
        assert!(
            !format!("{s:?}").contains("hunter2"),
            "a password in Debug output"
        );
        assert!(SettingsBuilder::default()
            .set("clientAuth", "maybe")
            .is_err());
        assert!(SettingsBuilder::default()
            .set("enabledProtocols", "SSLv3")
            .is_err());
    }

    #[test]
    fn missing_and_oversized_stores_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Store {
            location: dir.path().join("nope.pem"),
            kind: StoreType::Pem,
            password: None,
        };
        let err = load_identity(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");

        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'a'; (MAX_STORE_BYTES + 1) as usize]).unwrap();
        let err = load_roots(&Store {
            location: big,
            kind: StoreType::Pem,
            password: None,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("1 MiB"), "{err}");

        let junk = dir.path().join("junk.p12");
        std::fs::write(&junk, b"not a store").unwrap();
        let err = load_identity(&Store {
            location: junk,
            kind: StoreType::Pkcs12,
            password: Some(Secret::new("s3cr3t-value")),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("PKCS12") && !err.contains("s3cr3t"), "{err}");
    }
}
