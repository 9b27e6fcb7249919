//! Test certificates: a CA and leaf certificates signed by it (made with rcgen), written as
//! the PEM stores ZooKeeper and Rookery read.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate authority that signs leaf certificates.
pub struct Ca {
    /// The CA certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl Leaf {
    /// A PEM key store as ZooKeeper reads it: the key and the certificate in one file.
    pub fn write_key_store(&self, path: &Path) -> PathBuf {
        std::fs::write(path, format!("{}{}", self.key_pem, self.cert_pem)).unwrap();
        path.to_path_buf()
    }
}

/// What a leaf is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A server certificate (also usable as a client's, as quorum members need).
    Server,
    /// A client certificate.
    Client,
}

impl Ca {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// Writes the CA certificate as a PEM trust store.
    pub fn write_trust_store(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).unwrap();
        path.to_path_buf()
    }

    /// A leaf with common name `cn`, valid for `names` (DNS names or IP addresses).
    pub fn leaf(&self, cn: &str, names: &[&str], usage: Usage) -> Leaf {
        self.leaf_with(cn, names, usage, |_| {})
    }

    /// A leaf whose subject is `dn`, in the order given (most general first, as DER lists
    /// it: `[(O, "Rookery"), (CN, "app-1")]` is `CN=app-1,O=Rookery` in RFC 2253), valid for
    /// `names`.
    pub fn leaf_with_subject(&self, dn: &[(DnType, &str)], names: &[&str], usage: Usage) -> Leaf {
        self.leaf_with("", names, usage, |p| {
            p.distinguished_name = DistinguishedName::new();
            for (kind, value) in dn {
                p.distinguished_name.push(kind.clone(), *value);
            }
        })
    }

    /// An expired leaf (valid for a day, ten years ago).
    pub fn expired_leaf(&self, cn: &str, names: &[&str], usage: Usage) -> Leaf {
        self.leaf_with(cn, names, usage, |p| {
            p.not_before = rcgen::date_time_ymd(2015, 1, 1);
            p.not_after = rcgen::date_time_ymd(2015, 1, 2);
        })
    }

    fn leaf_with(
        &self,
        cn: &str,
        names: &[&str],
        usage: Usage,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = match usage {
            Usage::Server => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        adjust(&mut p);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A self-signed leaf: trusted by nobody.
pub fn self_signed(cn: &str, names: &[&str]) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.self_signed(&key).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A rustls client configuration that trusts `ca_pem` and presents `leaf`: for tests that
/// speak TLS to a server themselves (rogue peers, raw handshakes).
pub fn client_config(ca_pem: &str, leaf: &Leaf) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap()
}
